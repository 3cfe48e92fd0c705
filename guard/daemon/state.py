"""The daemon's picture of the host: each watcher keeps its source's latest reading
here, and `snapshot()` turns them into the Snapshot the judging loop judges (through
guard/snapshot.py, as `check` does). The history it is judged against lives here too:
the probes need it to know which controllers the agent still reaches."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import time
from dataclasses import replace
from typing import Optional

from guard.history import History
from guard.model import (
    AgentProcess,
    LogCursor,
    LogEvent,
    ManagementHost,
    Pool,
    ProbeResult,
    Snapshot,
    SourceStatus,
)
from guard.snapshot import Readings, build_snapshot
from guard.sources.agentconf import AgentProperties, heartbeat_retry_sleep_s
from guard.sources.agentlog.cursor import with_events

from .runtime import Runtime

MAX_EVENTS = 20000
CURSOR_SAVE_S = 30.0
"""How often a growing log's place is saved when nothing else is: each save writes the
events it stands for (up to a few thousand), so not on every line."""
INITIAL_SOURCES = {"agent-properties", "agent-process", "agent-log", "libvirt", "management"}


def started_by_this_clock(agent: AgentProcess, now: float) -> AgentProcess:
    """The agent with its start on the wall clock as it reads `now`. psutil adds the
    start ticks to a boot time it reads once per process, so in the daemon the start
    stays on the clock as it was before a step: after a step back, every line the agent
    logs would look older than the agent and be taken for its predecessor's. The ticks
    after boot and CLOCK_BOOTTIME are never stepped; a `check`, which reads the boot time
    afresh, gets the same start."""
    ticks = agent.incarnation.start_ticks
    if not ticks:
        return agent
    running = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    return replace(agent, incarnation=replace(agent.incarnation, start_time=now - running))


class State:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.hostname = socket.gethostname()
        self.history = History()
        self.base = History()
        """The history as last loaded or saved: what a save merges against."""
        self.props: Optional[AgentProperties] = None
        self.agent: Optional[AgentProcess] = None
        self.unit_state = ""
        self.statuses: dict[str, SourceStatus] = {}
        self.libvirt_pools: tuple[Pool, ...] = ()
        self.pool_reads = asyncio.Lock()
        """Pool events are read one at a time, in order (guard/daemon/libvirt_watch.py)."""
        self.events: collections.deque[LogEvent] = collections.deque(maxlen=MAX_EVENTS)
        self.log_place: Optional[LogCursor] = None
        """Where the follower's reading of the agent log stands, `events` being its
        events: the two always change together (guard/daemon/host_watch.py)."""
        self.storpool_events: tuple[LogEvent, ...] = ()
        self.management: tuple[Optional[ManagementHost], tuple[Pool, ...], tuple[str, ...]] = (None, (), ())
        self.listed_at: Optional[float] = None
        self.probes: dict[str, ProbeResult] = {}
        self.probes_ready = False

    def mark(self, name: str, status: SourceStatus) -> None:
        self.statuses[name] = status
        self.rt.dirty.set()

    def snapshot(self) -> Snapshot:
        host, pools, elsewhere = self.management
        now = time.time()
        readings = Readings(
            agent=started_by_this_clock(self.agent, now) if self.agent else None,
            agent_unit_state=self.unit_state,
            libvirt_pools=self.libvirt_pools,
            management_host=host,
            management_pools=pools,
            management_elsewhere=elsewhere,
            listed_at=self.listed_at,
            agent_log=tuple(self.events),
            storpool_log=self.storpool_events,
            probes=tuple(self.probes.items()),
            sources=tuple(self.statuses.values()),
            heartbeat_retry_s=heartbeat_retry_sleep_s(self.props),
        )
        return build_snapshot(self.rt.config, self.hostname, readings, now)

    def log_cursor(self) -> Optional[LogCursor]:
        """The place with the events it stands for, for the history (and `check`)."""
        if self.log_place is None:
            return None
        return with_events(self.log_place, self.events, self.log_place.since)

    def complete(self) -> bool:
        """Every source has answered once, and the probes ran with the management
        server's pool list in hand: only then is an evaluation a full one."""
        return self.statuses.keys() >= INITIAL_SOURCES and self.probes_ready
