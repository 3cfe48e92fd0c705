"""The Gluster probe against a real glusterd on loopback.

What an operator relies on: a live glusterd reads "healthy" with what it serves, and the
detail says plainly that the pool's volume was not checked; a stopped glusterd is
"refused", a hung one (SIGSTOP) "timeout" within the probe's own deadline, and a web
server on the port "bad-answer".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from guard.backends import gluster, probe_bounded
from guard.config import Config
from guard.model import ProbeResult
from tests.support.peers import glusterd as glusterd_peer
from tests.support.peers.decoys import free_port, hanging_listener, web_server
from tests.support.peers.glusterd import Glusterd
from tests.support.peers.process import PeerError
from tests.support.real_parts import real_part_unavailable

TIMEOUT = 1.0
DEADLINE = TIMEOUT + 0.5


def probe(url: str, timeout: float = 3.0) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(gluster.BACKEND.probe(url, Config(), timeout))
    return result, time.monotonic() - started


def bounded(url: str, timeout: float = 3.0) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(probe_bounded(gluster.BACKEND, url, Config(), timeout))
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glusterd]:
    reason = glusterd_peer.missing()
    if reason:
        real_part_unavailable("glusterd", reason)
    server = Glusterd(tmp_path_factory.mktemp("glusterd"), free_port())
    try:
        server.start()
    except (PeerError, OSError) as exc:
        real_part_unavailable("glusterd", str(exc))
    yield server
    server.stop()


@pytest.fixture
def glusterd(daemon: Glusterd) -> Iterator[Glusterd]:
    """The module's glusterd, running and not paused whatever the test before it did."""
    if not daemon.running:
        daemon.start()
    yield daemon
    if daemon.running:
        daemon.resume()


def test_a_live_glusterd_is_healthy_and_the_volume_is_said_to_be_unchecked(glusterd: Glusterd) -> None:
    url = f"gluster://127.0.0.1:{glusterd.port}/vol0"
    for run in (probe, bounded):
        result, _ = run(url)
        assert (result.backend, result.status, result.target) == ("gluster", "healthy", url)
        assert result.detail.startswith(f"glusterd answers on 127.0.0.1:{glusterd.port} (")
        assert result.detail.endswith("); the volume vol0 is not checked")
        # glusterd's own management program is what tells it from any other GlusterFS service
        assert "GlusterD svc mgmt" in result.detail and "GF-DUMP" in result.detail


def test_a_secret_in_the_url_is_never_shown(glusterd: Glusterd) -> None:
    result, _ = bounded(f"gluster://admin:s3cret@127.0.0.1:{glusterd.port}/vol0")
    assert result.status == "healthy"
    assert result.target == f"gluster://127.0.0.1:{glusterd.port}/vol0"
    assert "s3cret" not in result.detail


def test_a_stopped_glusterd_is_refused(glusterd: Glusterd) -> None:
    glusterd.stop()
    for run in (probe, bounded):
        result, _ = run(f"gluster://127.0.0.1:{glusterd.port}/vol0")
        assert result.status == "refused"
        assert result.detail == f"connection to 127.0.0.1:{glusterd.port} refused"


def test_a_paused_glusterd_times_out_within_the_deadline(glusterd: Glusterd) -> None:
    glusterd.pause()
    for run in (probe, bounded):
        result, elapsed = run(f"gluster://127.0.0.1:{glusterd.port}/vol0", TIMEOUT)
        assert result.status == "timeout"
        assert result.detail == (f"no answer from 127.0.0.1:{glusterd.port} to a GlusterFS DUMP call "
                                 "within 1s")
        assert elapsed < DEADLINE


def test_a_web_server_on_the_port_is_a_bad_answer() -> None:
    with web_server() as port:
        for run in (probe, bounded):
            result, elapsed = run(f"gluster://127.0.0.1:{port}/vol0")
            assert result.status == "bad-answer"
            assert f"127.0.0.1:{port}" in result.detail and "not an ONC-RPC reply" in result.detail
            assert elapsed < DEADLINE


def test_a_listener_that_never_answers_times_out() -> None:
    with hanging_listener() as port:
        for run in (probe, bounded):
            result, elapsed = run(f"gluster://127.0.0.1:{port}/vol0", TIMEOUT)
            assert result.status == "timeout"
            assert f"127.0.0.1:{port}" in result.detail and "DUMP" in result.detail
            assert elapsed < DEADLINE
