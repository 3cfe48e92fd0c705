"""The NFS probe against a real nfs-ganesha on loopback.

What an operator relies on: a live NFS server reads "healthy" with the version and the
host:port that answered; a stopped one "refused"; a hung one (SIGSTOP: the kernel still
accepts) "timeout" within the probe's own deadline; a web server on the port
"bad-answer". NFSv3-only servers are found as a v3 mount finds them, through rpcbind,
which runs with ganesha in a private network namespace (rpcbind always binds
0.0.0.0:111).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.backends import nfs, probe_bounded
from guard.config import Config
from guard.model import ProbeResult
from tests.support.peers import ganesha as ganesha_peer
from tests.support.peers.decoys import free_port, hanging_listener, web_server
from tests.support.peers.ganesha import Ganesha, PrivateNet, Rpcbind
from tests.support.peers.process import PeerError
from tests.support.real_parts import real_part_unavailable

TIMEOUT = 1.0
DEADLINE = TIMEOUT + 0.5


def probe(url: str, timeout: float = 3.0) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(nfs.BACKEND.probe(url, Config(), timeout))
    return result, time.monotonic() - started


def bounded(url: str, timeout: float = 3.0) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(probe_bounded(nfs.BACKEND, url, Config(), timeout))
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def v4_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ganesha]:
    reason = ganesha_peer.missing()
    if reason:
        real_part_unavailable("nfs-ganesha", reason)
    server = Ganesha(tmp_path_factory.mktemp("ganesha"), free_port())
    try:
        server.start()
    except (PeerError, OSError) as exc:
        real_part_unavailable("nfs-ganesha", str(exc))
    yield server
    server.stop()


@pytest.fixture
def ganesha(v4_server: Ganesha) -> Iterator[Ganesha]:
    """The module's ganesha, running and not paused whatever the test before it did."""
    if not v4_server.running:
        v4_server.start()
    yield v4_server
    if v4_server.running:
        v4_server.resume()


def test_a_live_nfsv4_server_is_healthy(ganesha: Ganesha) -> None:
    url = f"nfs://127.0.0.1:{ganesha.port}/export"
    for run in (probe, bounded):
        result, _ = run(url)
        assert (result.backend, result.status, result.target) == ("nfs", "healthy", url)
        assert result.detail == f"NFSv4 answers on 127.0.0.1:{ganesha.port}"


def test_a_secret_in_the_url_is_never_shown(ganesha: Ganesha) -> None:
    result, _ = bounded(f"nfs://admin:s3cret@127.0.0.1:{ganesha.port}/export")
    assert result.status == "healthy"
    assert result.target == f"nfs://127.0.0.1:{ganesha.port}/export"
    assert "s3cret" not in result.detail


def test_a_stopped_server_is_refused(ganesha: Ganesha) -> None:
    ganesha.stop()
    for run in (probe, bounded):
        result, _ = run(f"nfs://127.0.0.1:{ganesha.port}/export")
        assert result.status == "refused"
        assert result.detail == f"connection to 127.0.0.1:{ganesha.port} refused"


def test_a_paused_server_times_out_within_the_deadline(ganesha: Ganesha) -> None:
    ganesha.pause()
    for run in (probe, bounded):
        result, elapsed = run(f"nfs://127.0.0.1:{ganesha.port}/export", TIMEOUT)
        assert result.status == "timeout"
        assert result.detail == f"no answer from 127.0.0.1:{ganesha.port} to an NFSv4 NULL call within 1s"
        assert elapsed < DEADLINE


def test_a_web_server_on_the_port_is_a_bad_answer() -> None:
    with web_server() as port:
        for run in (probe, bounded):
            result, elapsed = run(f"nfs://127.0.0.1:{port}/export")
            assert result.status == "bad-answer"
            assert f"127.0.0.1:{port}" in result.detail
            assert "starting 'HTTP'" in result.detail and "not an ONC-RPC reply" in result.detail
            assert elapsed < DEADLINE


def test_a_listener_that_never_answers_times_out() -> None:
    with hanging_listener() as port:
        for run in (probe, bounded):
            result, elapsed = run(f"nfs://127.0.0.1:{port}/export", TIMEOUT)
            assert result.status == "timeout"
            assert f"127.0.0.1:{port}" in result.detail and "NFSv4 NULL" in result.detail
            assert elapsed < DEADLINE


# -- NFSv3 through rpcbind, in a private network namespace -------------------------------


class V3Setup:
    def __init__(self, root: Path, net: PrivateNet) -> None:
        self.root = root
        self.net = net
        self.rpcbind = Rpcbind(root, net)
        self.ganesha = Ganesha(root / "v3", 2049, protocols="3", net=net)


@pytest.fixture(scope="module")
def v3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V3Setup]:
    reason = ganesha_peer.missing_for_v3()
    if reason:
        real_part_unavailable("rpcbind + nfs-ganesha in a network namespace", reason)
    root = tmp_path_factory.mktemp("nfsv3")
    with PrivateNet(root / "ns") as net:
        setup = V3Setup(root, net)
        try:
            setup.rpcbind.start()
            setup.ganesha.start()
        except (PeerError, OSError) as exc:
            setup.ganesha.stop()
            setup.rpcbind.stop()
            real_part_unavailable("rpcbind + nfs-ganesha in a network namespace", str(exc))
        yield setup
        setup.ganesha.stop()
        setup.rpcbind.stop()


def test_a_v3_only_server_is_found_through_rpcbind_and_healthy(v3: V3Setup) -> None:
    if not v3.ganesha.running:
        v3.ganesha.start()
    result, _ = v3.net.probe("nfs://127.0.0.1/export", 3.0)
    assert result["status"] == "healthy"
    assert result["detail"] == ("NFSv3 answers on 127.0.0.1:2049, the port rpcbind on 127.0.0.1:111 "
                                "gives (127.0.0.1:2049 offers NFS versions 3-3, not 4)")
    # With the port in the URL, the server is asked for v3 where it is, without rpcbind.
    result, _ = v3.net.probe("nfs://127.0.0.1:2049/export", 3.0)
    assert result["status"] == "healthy"
    assert result["detail"] == "NFSv3 answers on 127.0.0.1:2049 (127.0.0.1:2049 offers NFS versions 3-3, not 4)"


def test_rpcbind_without_nfs_is_refused_and_a_port_it_gives_is_the_one_asked(v3: V3Setup) -> None:
    v3.ganesha.stop()
    result, _ = v3.net.probe("nfs://127.0.0.1/export", 3.0)
    assert result["status"] == "refused"
    assert result["detail"] == ("connection to 127.0.0.1:2049 refused; NFS not registered with rpcbind "
                                "on 127.0.0.1:111")
    elsewhere = Ganesha(v3.root / "elsewhere", 20049, protocols="3", net=v3.net)
    elsewhere.start()
    try:
        result, _ = v3.net.probe("nfs://127.0.0.1/export", 3.0)
    finally:
        elsewhere.stop()
    assert result["status"] == "healthy"
    assert result["detail"] == ("NFSv3 answers on 127.0.0.1:20049, the port rpcbind on 127.0.0.1:111 "
                                "gives (connection to 127.0.0.1:2049 refused)")
