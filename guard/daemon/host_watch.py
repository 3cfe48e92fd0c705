"""Watchers of what is on the host itself: the agent process, its log as it grows, and
StorPool's adaptor log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from dataclasses import replace
from typing import Optional

from guard.collect import LOG_LOOKBACK_WITHOUT_AGENT_S
from guard.follow import Follower
from guard.inotify import DirWatch, open_watch
from guard.model import CLOCK_SLACK_S, AgentProcess, LogCursor, LogEvent, SourceStatus
from guard.record import HOLD_KINDS
from guard.sources.agent import find_agent, inspect_agent, status_of, unit_state
from guard.sources.agentconf import read_agent_properties
from guard.sources.agentlog import IncrementalParser, LogRead, read_log
from guard.sources.agentlog.cursor import place
from guard.sources.storpoollog import SOURCE_NAME as STORPOOL_LOG
from guard.sources.storpoollog import StorPoolLog

from .runtime import Runtime
from .state import CURSOR_SAVE_S, State

AGENT_CHECK_S = 1.0
AGENT_RESCAN_S = 30.0
AGENT_DETAIL_S = 30.0
"""Reading the agent's sockets costs milliseconds of /proc/net parsing; a restart
decision reads them fresh anyway, so this only refreshes agent-disconnected."""
LOG_POLL_S = 0.05
"""Without inotify: how often the log is looked at."""
LOG_QUIET_FLUSH_S = 0.05
"""A trace that ends the log is judged this long after the last write: a JVM writes a
whole trace at once, and the follower wakes on every write (inotify)."""
LOG_WATCHED_LOOK_S = 2.0
"""With inotify: a look this often all the same, for changes a filesystem does not report
(a log on NFS), and to watch a directory that did not exist yet."""
STORPOOL_LOG_POLL_S = 1.0
AGENT_FIRST_LOOK_S = 5.0


def same_process(agent: AgentProcess) -> bool:
    """Still the same incarnation: the pid alive with the same start time."""
    import psutil

    try:
        return bool(psutil.Process(agent.incarnation.pid).create_time() == agent.incarnation.start_time)
    except psutil.Error:
        return False


async def watch_agent(rt: Runtime, state: State) -> None:
    """Cheap checks of the known pid every second, its children and sockets every few
    seconds, and a scan of every process only when it is gone (or now and then, in case
    another copy took over the unit)."""
    last_scan = last_detail = float("-inf")
    while not rt.stopping.is_set():
        now = time.monotonic()
        known = state.agent
        status: Optional[SourceStatus] = None
        if (known is None or now - last_scan > AGENT_RESCAN_S
                or not await rt.in_thread(same_process, known)):
            state.props, props_status = await rt.in_thread(read_agent_properties, rt.config.agent.properties)
            state.mark("agent-properties", props_status)
            agent, status = await rt.in_thread(find_agent, state.props, rt.config.agent.unit)
            state.unit_state = "" if agent else (await rt.in_thread(unit_state, rt.config.agent.unit))[1]
            last_scan = last_detail = now
        elif now - last_detail > AGENT_DETAIL_S:
            agent = await rt.in_thread(inspect_agent, known.incarnation, state.props) or known
            status = status_of(agent)
            last_detail = now
        else:
            agent = known
        if agent != known:
            if (agent and agent.incarnation) != (known and known.incarnation):
                rt.emit("agent-incarnation", pid=agent.incarnation.pid if agent else None,
                        previous_pid=known.incarnation.pid if known else None)
            state.agent = agent
            rt.dirty.set()
        if status is not None and state.statuses.get("agent-process") != status:
            state.mark("agent-process", status)
        await rt.sleep(AGENT_CHECK_S)


async def _agent_looked_at(rt: Runtime, state: State) -> None:
    """The log is read from the running agent's start: wait (briefly) for the agent
    watcher's first look, or a long-running agent's older lines would be cut off."""
    deadline = time.monotonic() + AGENT_FIRST_LOOK_S
    while "agent-process" not in state.statuses and time.monotonic() < deadline:
        await rt.sleep(0.02)


async def follow_log(rt: Runtime, state: State) -> None:
    """The log since the agent started, read on from the history's cursor (only what
    was written since the last reader, the daemon or `check`), then the live file as it
    grows; parsing runs in a worker thread, so a big backlog never stalls the loop (or
    the watchdog). After every read the place is kept in the state, whole with the
    events, for the next save to hand on."""
    path = rt.config.agent.log
    await _agent_looked_at(rt, state)
    since = (state.agent.incarnation.start_time - CLOCK_SLACK_S if state.agent
             else time.time() - LOG_LOOKBACK_WITHOUT_AGENT_S)
    incarnation = state.agent.incarnation.key if state.agent else ""
    caught = await rt.in_thread(read_log, path, since, state.history.log_cursor, incarnation)
    follower, parser, resumed = _going_on(path, caught)
    state.events.extend(caught.events[:len(caught.events) - caught.tail] if resumed else caught.events)
    if caught.cursor is not None:
        state.log_place = replace(caught.cursor, events=())
    quiet_since = time.monotonic()
    shared_at = time.monotonic()
    wake = _LogWake(rt, path)

    def read() -> tuple[list[LogEvent], bool, Optional[LogCursor]]:
        """In a worker thread; the place it returns is the state's only once its events
        are (the loop thread does both), so a save never pairs one with the other's."""
        lines, new_file = follower.poll()
        events = parser.feed(lines) if lines else []
        left = None
        if new_file:
            events += parser.flush()
            if follower.left is not None:
                gone = follower.left
                left = place(path, gone.identity, gone.offset, parser.line, gone.head,
                             parser.state(), since, incarnation)
            events += parser.restart(path)
        return events, bool(lines), left

    flush_due = False
    try:
        while not rt.stopping.is_set():
            wake.arm()
            left = None
            if follower.quiet():
                events, got_lines = [], False
            else:
                events, got_lines, left = await rt.in_thread(read)
            if got_lines:
                quiet_since, flush_due = time.monotonic(), True
            elif flush_due and time.monotonic() - quiet_since > LOG_QUIET_FLUSH_S:
                events += parser.flush()
                flush_due = False
            state.events.extend(events)
            if left is not None:
                state.log_place = left
            here = follower.place()
            if (got_lines or events) and here is not None and here.offset > 0:
                state.log_place = place(path, here.identity, here.offset, parser.line, here.head,
                                        parser.state(), since, incarnation)
            if any(e.kind in HOLD_KINDS for e in events):
                rt.probe_now.set()  # a pool the agent took may have a backend to ask
            status = SourceStatus("agent-log", not follower.problem, follower.problem or f"{path}: following")
            if state.statuses.get("agent-log") != status:
                state.mark("agent-log", status)
            if events or (got_lines and time.monotonic() - shared_at >= CURSOR_SAVE_S):
                shared_at = time.monotonic()
                rt.dirty.set()  # judged, and saved with the place (judging.CURSOR_SAVE_S)
            # A backlog read in slices goes on at once; nothing written wakes it.
            await wake.wait(0.0 if not follower.caught_up else LOG_QUIET_FLUSH_S if flush_due else None)
    finally:
        wake.close()
        follower.close()


def _going_on(path: str, caught: LogRead) -> tuple[Follower, IncrementalParser, bool]:
    """The live file from where the catch-up stopped in it; from its start when the
    catch-up's place is in a rotated file (the live one was empty) or nowhere."""
    cursor = caught.cursor
    if cursor is None:
        return Follower(path), IncrementalParser(path), False
    identity = (cursor.device, cursor.inode)
    follower = Follower(path, at=(identity, cursor.offset))
    here = follower.place()
    if here is None or here.identity != identity:
        return follower, IncrementalParser(path), False  # another file now: from its start
    with contextlib.suppress(ValueError):
        return follower, IncrementalParser.resumed(path, json.loads(cursor.scanner), cursor.line), True
    follower.close()
    return Follower(path), IncrementalParser(path), False


class _LogWake:
    """Sleeps until the log's directory changes (inotify), or polls every LOG_POLL_S
    where it cannot be watched, saying once why."""

    def __init__(self, rt: Runtime, path: str) -> None:
        self.rt = rt
        self.directory = os.path.dirname(os.path.abspath(path))
        base = os.path.basename(path)
        self.wanted = lambda name: name.startswith(base)
        self.changed = asyncio.Event()
        self.watch: Optional[DirWatch] = None
        self.tried_at = -math.inf

    def _open(self) -> None:
        if self.watch is not None or time.monotonic() - self.tried_at < LOG_WATCHED_LOOK_S:
            return
        self.tried_at = time.monotonic()
        watch, why = open_watch(self.directory, self.wanted)
        if watch is None:
            self.rt.say_once("agent-log-watch", "agent-log-polled",
                             f"following the agent log by polling: {why}", reason=why)
            return
        self.watch = watch
        asyncio.get_running_loop().add_reader(watch.fileno(), self._readable)

    def _readable(self) -> None:
        if self.watch is not None and self.watch.drain():
            self.changed.set()

    def arm(self) -> None:
        """Before each look: a change from here on wakes the next wait."""
        self._open()
        self.changed.clear()

    async def wait(self, at_most: Optional[float]) -> None:
        if at_most == 0.0:
            await asyncio.sleep(0)
        elif self.watch is None:
            await asyncio.sleep(LOG_POLL_S)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), at_most or LOG_WATCHED_LOOK_S)

    def close(self) -> None:
        if self.watch is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.watch.fileno())
            self.watch.close()
            self.watch = None


async def watch_storpool_log(rt: Runtime, state: State) -> None:
    """StorPool's adaptor log, read on from where the last read stopped, for the agent
    that runs now (no agent, no pools it holds)."""
    reader = StorPoolLog(rt.config.agent.storpool_log)
    while not rt.stopping.is_set():
        if state.agent is not None:
            since = state.agent.incarnation.start_time - CLOCK_SLACK_S
            events, status = await rt.in_thread(reader.read, since)
            if tuple(events) != state.storpool_events:
                state.storpool_events = tuple(events)
                rt.dirty.set()
                rt.probe_now.set()
            if state.statuses.get(STORPOOL_LOG) != status:
                state.mark(STORPOOL_LOG, status)
        await rt.sleep(STORPOOL_LOG_POLL_S)
