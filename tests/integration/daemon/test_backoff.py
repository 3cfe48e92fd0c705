"""The running daemon under sources that keep failing: libvirt that cannot be kept alive
or is gone, a management server that refuses: the journal stays small and is asked less often."""

from __future__ import annotations

import collections
import re
import time

import pytest

from tests.support.daemon import RunningDaemon

BUDGET_BYTES = 64 * 1024


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
