"""What the daemon's journal says about libvirt across an outage: the lost line, the
say-once warning of the attempts that fail meanwhile, the back line. The connection
itself is tested against a real libvirtd (tests/integration/daemon/test_libvirt_faults.py);
here the clock is the test's, so the few minutes between repeats pass at once."""

from __future__ import annotations

import asyncio
from typing import Any

from guard.backoff import Repeats
from guard.config import Config
from guard.daemon.libvirt_watch import CONNECTED, DROPPED, UNREACHABLE, LibvirtLink
from guard.daemon.runtime import Runtime
from guard.daemon.state import State

URI = "qemu:///system"
REFUSED = "Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused"


def _link() -> tuple[LibvirtLink, State, list[tuple[str, dict[str, Any]]], list[float]]:
    async def made() -> tuple[Runtime, State]:
        rt = Runtime(None, Config())
        return rt, State(rt)

    rt, state = asyncio.run(made())
    clock = [0.0]
    rt.repeats = Repeats(every=300.0, clock=lambda: clock[0])
    said: list[tuple[str, dict[str, Any]]] = []
    rt.emit = lambda event, **fields: said.append((event, fields))
    return LibvirtLink(rt, state, URI), state, said, clock


def test_an_outage_is_one_line_lost_one_back_and_between_only_the_count_every_few_minutes():
    link, state, said, clock = _link()
    link.back()
    link.failed("connection closed on an error")
    for _ in range(20):
        clock[0] += 14.0
        link.failed(REFUSED)
    assert [event for event, _ in said] == [CONNECTED, DROPPED]
    assert said[1][1]["error"] == f"{URI}: connection closed on an error" and said[1][1]["uri"] == URI
    assert state.statuses["libvirt"].ok is False and REFUSED in state.statuses["libvirt"].detail
    clock[0] += 30.0
    link.failed(REFUSED)
    assert said[2] == (UNREACHABLE, {"uri": URI, "error": f"{URI}: {REFUSED}", "repeated": 20,
                                     "level": "warning"})
    link.failed(REFUSED)
    link.back()
    assert [event for event, _ in said] == [CONNECTED, DROPPED, UNREACHABLE, CONNECTED]
    assert said[3][1]["unsaid_warnings"] == 1 and "down_s" in said[3][1]


def test_libvirt_down_at_start_is_said_unreachable_once_and_a_second_outage_is_said_again():
    link, _, said, clock = _link()
    for _ in range(3):
        clock[0] += 1.0
        link.failed(REFUSED)
    link.back()
    link.back()
    link.failed("connection closed by libvirtd")
    link.failed(REFUSED)
    link.back()
    assert [event for event, _ in said] == [UNREACHABLE, CONNECTED, DROPPED, CONNECTED]
    assert said[1][1]["unsaid_warnings"] == 2
    assert said[3][1]["unsaid_warnings"] == 1
