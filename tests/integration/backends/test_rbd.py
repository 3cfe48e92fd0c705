"""The RBD probe against a real ceph-mon on loopback (tests/support/peers/ceph.py).

What an operator relies on: a live monitor reads "healthy" whichever way the pool URL
names it (default ports, :3300, :6789); a stopped, hung or foreign peer gets its own
status word with the monitor's host:port and what happened; the probe never takes longer
than its timeout; a pool is healthy only while a strict majority of its monitors
answers; and the cephx secret in the URL is never shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.backends import probe_bounded, rbd
from guard.config import Config
from guard.model import ProbeResult
from tests.support.peers.ceph import CephMonitor, free_loopback_host, missing_binaries
from tests.support.peers.decoys import free_port, hanging_listener, web_server
from tests.support.peers.process import PeerError
from tests.support.real_parts import real_part_unavailable

TIMEOUT = 1.0
# The deadline is a contract: the probe's own timeout plus scheduling slack, no more.
SLACK = 0.5
SECRET = "AQDz/k9lAAAAABAA+vQ2=="


def start_monitor(workdir: Path, msgr2: bool = True) -> CephMonitor:
    missing = missing_binaries()
    if missing:
        real_part_unavailable("ceph-mon", f"{', '.join(missing)} not installed")
    try:
        monitor = CephMonitor(workdir, free_loopback_host(), msgr2)
        monitor.start()
    except (PeerError, OSError) as exc:
        real_part_unavailable("ceph-mon", str(exc))
    return monitor


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephMonitor]:
    """One monitor for the tests that leave it running."""
    mon = start_monitor(tmp_path_factory.mktemp("ceph"))
    yield mon
    mon.stop()


@pytest.fixture
def own_monitor(tmp_path: Path) -> Iterator[CephMonitor]:
    """A monitor of the test's own, for tests that stop or freeze it (0.3 s to start)."""
    mon = start_monitor(tmp_path)
    yield mon
    mon.stop()


def run(url: str, timeout: float = TIMEOUT) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(rbd.probe(url, timeout))
    return result, time.monotonic() - started


def run_bounded(url: str, timeout: float = TIMEOUT) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(probe_bounded(rbd.BACKEND, url, Config(), timeout))
    return result, time.monotonic() - started


# -- healthy ---------------------------------------------------------------------------


def test_healthy_without_a_port_finds_msgr2(monitor):
    for result, _ in (run(monitor.url()), run_bounded(monitor.url())):
        assert result.status == "healthy", result
        assert result.backend == "rbd"
        assert result.target == f"rbd://{monitor.host}/rbdpool"
        assert result.detail == (f"1 of 1 monitors answer: {monitor.host}: msgr2 banner on port 3300 "
                                 "(features supported 0x1 required 0x0)")


def test_explicit_msgr1_port_counts(monitor):
    result, _ = run(monitor.url(6789))
    assert result.status == "healthy", result
    assert result.detail == (f"1 of 1 monitors answer: {monitor.host}:6789: msgr1 banner on port 6789 "
                             f"(monitor at {monitor.host}:6789)")


def test_explicit_msgr2_port_counts(monitor):
    result, _ = run_bounded(monitor.url(3300))
    assert result.status == "healthy", result
    assert f"{monitor.host}:3300: msgr2 banner on port 3300" in result.detail


def test_msgr1_only_monitor_counts_and_the_refused_msgr2_port_is_named(tmp_path):
    mon = start_monitor(tmp_path, msgr2=False)
    try:
        result, _ = run(mon.url())
    finally:
        mon.stop()
    assert result.status == "healthy", result
    assert result.detail == (f"1 of 1 monitors answer: {mon.host}: msgr1 banner on port 6789 "
                             f"(monitor at {mon.host}:6789), connection to {mon.host}:3300 refused")


# -- dead, hung, foreign ---------------------------------------------------------------


def test_stopped_monitor_is_refused(own_monitor):
    own_monitor.stop()
    result, _ = run(own_monitor.url())
    assert result.status == "refused", result
    assert result.detail == (f"0 of 1 monitors answer: {own_monitor.host}: connection to "
                             f"{own_monitor.host}:3300 refused, connection to {own_monitor.host}:6789 refused")
    assert run_bounded(own_monitor.url())[0].status == "refused"


def test_frozen_monitor_times_out_within_the_deadline(own_monitor):
    own_monitor.pause()
    try:
        for result, elapsed in (run(own_monitor.url()), run_bounded(own_monitor.url())):
            assert result.status == "timeout", result
            assert elapsed < TIMEOUT + SLACK
            assert f"{own_monitor.host}:3300 accepted but sent no Ceph banner within 1s" in result.detail
            assert f"{own_monitor.host}:6789 accepted but sent no Ceph banner within 1s" in result.detail
    finally:
        own_monitor.resume()
    assert run(own_monitor.url())[0].status == "healthy"


def test_web_server_on_the_port_is_a_bad_answer():
    with web_server() as port:
        for result, _ in (run(f"rbd://127.0.0.1:{port}/rbdpool"),
                          run_bounded(f"rbd://127.0.0.1:{port}/rbdpool")):
            assert result.status == "bad-answer", result
            assert f"127.0.0.1:{port} sent 'HTTP/1.1', not a Ceph banner" in result.detail


def test_listener_that_never_answers_times_out():
    with hanging_listener() as port:
        for result, elapsed in (run(f"rbd://127.0.0.1:{port}/rbdpool"),
                                run_bounded(f"rbd://127.0.0.1:{port}/rbdpool")):
            assert result.status == "timeout", result
            assert elapsed < TIMEOUT + SLACK
            assert f"127.0.0.1:{port} accepted but sent no Ceph banner within 1s" in result.detail


# -- majority --------------------------------------------------------------------------
# The real monitor counts twice, once per port: two answering monitors out of three.


def test_two_of_three_answering_is_healthy(monitor):
    dead = free_port()
    result, _ = run(f"rbd://{monitor.host}:3300,{monitor.host}:6789,127.0.0.1:{dead}/rbdpool")
    assert result.status == "healthy", result
    assert result.detail.startswith("2 of 3 monitors answer: ")
    assert f"127.0.0.1:{dead}: connection to 127.0.0.1:{dead} refused" in result.detail


def test_a_majority_does_not_wait_for_a_hung_monitor(monitor):
    with hanging_listener() as hung:
        result, elapsed = run(f"rbd://{monitor.host}:3300,{monitor.host}:6789,127.0.0.1:{hung}/rbdpool",
                              timeout=3.0)
        # decoys._Listener closes its socket under its thread if left within a few ms
        time.sleep(0.1)
    assert result.status == "healthy", result
    assert elapsed < 1.0
    assert f"127.0.0.1:{hung} had not answered yet when a majority had" in result.detail


def test_one_of_three_answering_is_not_healthy(monitor):
    dead = free_port()
    with hanging_listener() as hung:
        result, elapsed = run(f"rbd://{monitor.host}:3300,127.0.0.1:{dead},127.0.0.1:{hung}/rbdpool")
    # the hung monitor is the most telling failure: it blocks every client that picks it
    assert result.status == "timeout", result
    assert elapsed < TIMEOUT + SLACK
    assert result.detail.startswith("1 of 3 monitors answer: ")
    assert f"{monitor.host}:3300: msgr2 banner on port 3300" in result.detail
    assert f"connection to 127.0.0.1:{dead} refused" in result.detail
    assert f"127.0.0.1:{hung} accepted but sent no Ceph banner within 1s" in result.detail


def test_half_is_no_majority(monitor):
    dead = free_port()
    # the monitor without a port comes last, or the other's port would be its port too
    result, _ = run(f"rbd://127.0.0.1:{dead},{monitor.host}/rbdpool")
    assert result.status == "refused", result
    assert result.detail.startswith("1 of 2 monitors answer: ")
    assert f"{monitor.host}: msgr2 banner on port 3300" in result.detail


# -- the secret ------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, "AQDz_k9lAAAAABAA-vQ2==", "AQDz%2Fk9lAAAAABAA%2BvQ2%3D%3D"])
def test_secret_never_in_the_result(monitor, secret):
    dead = free_port()
    fragments = [f for f in secret.replace("%", "/").split("/") if len(f) > 3]
    for url in (monitor.url(userinfo=f"cloudstack:{secret}"),
                f"rbd://cloudstack:{secret}@127.0.0.1:{dead}/rbdpool",
                f"rbd://cloudstack:{secret}@127.0.0.1:{dead}"):
        for result, _ in (run(url), run_bounded(url)):
            shown = repr(result)
            assert not any(f in shown for f in fragments), shown
            assert "cloudstack:" not in shown
    assert run(monitor.url(userinfo=f"cloudstack:{secret}"))[0].status == "healthy"
