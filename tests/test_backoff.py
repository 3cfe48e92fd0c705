"""A source that keeps failing is retried with back-off and said once, not logged in a
loop: the guard runs on every host of a cloud, and one noisy guard is a thousand noisy
journals."""

from __future__ import annotations

import collections
import re
import time

import pytest

from guard.backoff import Backoff, Repeats
from tests.harness.daemon import RunningDaemon

BUDGET_BYTES = 64 * 1024


def test_back_off_doubles_within_jitter_up_to_the_cap_and_starts_over_on_success():
    low, high = Backoff(0.5, 30.0, rng=lambda: 0.0), Backoff(0.5, 30.0, rng=lambda: 0.999999)
    lows = [low.next() for _ in range(10)]
    highs = [high.next() for _ in range(10)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]
    assert all(abs(h - 2 * lo) < 1e-4 for h, lo in zip(highs, lows))
    low.reset()
    assert low.next() == 0.25
    assert Backoff(1.0, 60.0).next() >= 0.5, "never shorter than half the step"


def test_a_repeated_warning_is_said_once_then_with_its_count_when_it_changes_or_every_few_minutes():
    clock = [0.0]
    repeats = Repeats(every=300.0, clock=lambda: clock[0])
    assert repeats.say("libvirt", "refused") == 0
    for _ in range(99):
        clock[0] += 1.0
        assert repeats.say("libvirt", "refused") is None
    assert repeats.say("libvirt", "timed out") == 0, "a new text is said at once"
    clock[0] += 1.0
    assert repeats.say("libvirt", "timed out") is None
    clock[0] += 300.0
    assert repeats.say("libvirt", "timed out") == 1, "said again after a while, with the count"
    assert repeats.say("other", "timed out") == 0, "keys are independent"
    repeats.say("libvirt", "timed out")
    assert repeats.clear("libvirt") == 1 and repeats.say("libvirt", "timed out") == 0


def _with_libvirt_uri(host, uri: str) -> None:
    text = re.sub(r'(?m)^uri = ".*"$', f'uri = "{uri}"', host.config.read_text())
    host.write_config(text)


@pytest.mark.parametrize("uri,case", [
    ("test:///default", "a driver that refuses keepalive"),
    ("qemu+unix:///system?socket=/nonexistent/libvirt-sock", "libvirtd stopped"),
])
def test_a_libvirt_that_keeps_failing_costs_the_journal_little(host, tmp_path, uri, case):
    _with_libvirt_uri(host, uri)
    running = RunningDaemon(host.config, tmp_path)
    try:
        time.sleep(10)
        assert running.proc.poll() is None, f"the daemon died: {running.logs[-5:]}"
        events = collections.Counter(e.get("event") for e in running.logs)
        assert running.log_bytes < BUDGET_BYTES, f"{case}: {running.log_bytes} bytes in 10 s: {events.most_common(5)}"
    finally:
        running.stop()


def test_a_failing_management_server_is_asked_less_and_less_often_then_at_the_poll_again(host, tmp_path):
    """poll_interval is 1 s here: without back-off, eight polls in eight seconds."""
    running = RunningDaemon(host.config, tmp_path)
    try:
        running.wait_for(lambda: running.notified("READY=1"), what="READY=1")
        host.mgmt.fail(500)
        before = len(host.mgmt.requests)
        time.sleep(8.0)
        failed = [r for r in host.mgmt.requests[before:] if r.command == "listHosts"]
        assert 2 <= len(failed) <= 5, f"{len(failed)} polls of a failing server in 8 s"
        host.mgmt.normal()
        answered = len(host.mgmt.requests)
        running.wait_for(lambda: [r for r in host.mgmt.requests[answered:] if r.status == 200],
                         timeout=20, what="a poll once the server answers")
        settled = len(host.mgmt.requests)
        time.sleep(3.0)
        polls = [r for r in host.mgmt.requests[settled:] if r.command == "listHosts"]
        assert len(polls) >= 2, "the poll interval is back once the server answers"
        assert running.proc.poll() is None
    finally:
        running.stop()
