"""The one place a Snapshot is made from what the sources said.

`check` reads every source once (guard/collect.py); the daemon keeps the same readings
up to date from its watchers (guard/daemon/state.py). Both hand them here, so the
LINSTOR node name, the running agent's version and the log events are chosen by one
rule.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

from guard.backends import backend_named
from guard.config import Config
from guard.drivers import driver_for
from guard.model import (
    CLOCK_SLACK_S,
    HEARTBEAT_RETRY_SLEEP_S,
    AgentProcess,
    LogCursor,
    LogEvent,
    ManagementHost,
    Pool,
    ProbeResult,
    Snapshot,
    SourceStatus,
)


@dataclass(frozen=True)
class Readings:
    """What each source said, however it was read. `listed_at` is when the management
    listing was read, if it is older than the snapshot (the daemon judges one listing
    many times)."""

    agent: Optional[AgentProcess]
    agent_unit_state: str = ""
    libvirt_pools: tuple[Pool, ...] = ()
    management_host: Optional[ManagementHost] = None
    management_pools: tuple[Pool, ...] = ()
    management_elsewhere: tuple[str, ...] = ()
    listed_at: Optional[float] = None
    agent_log: tuple[LogEvent, ...] = ()
    storpool_log: tuple[LogEvent, ...] = ()
    log_cursor: Optional[LogCursor] = None
    probes: tuple[tuple[str, ProbeResult], ...] = ()
    sources: tuple[SourceStatus, ...] = ()
    heartbeat_retry_s: float = HEARTBEAT_RETRY_SLEEP_S


def running_version(events: Sequence[LogEvent], agent: Optional[AgentProcess]) -> str:
    """The version the running agent logged at its start (AgentShell's `Implementation
    Version is`): an older incarnation's line says nothing about this one."""
    if agent is None:
        return ""
    start = agent.incarnation.start_time - CLOCK_SLACK_S
    for event in reversed(events):
        if event.kind == "agent-version" and event.ts is not None and event.ts >= start:
            return event.detail
    return ""


def in_time_order(
    agent_log: tuple[LogEvent, ...], storpool_log: tuple[LogEvent, ...]
) -> tuple[LogEvent, ...]:
    """The two logs as one sequence by time, each keeping its own order: the history is
    folded event by event, and a drop in one log must not be undone by an older add in
    the other. A line without a time stays where its own log put it."""
    if not storpool_log:
        return agent_log
    return tuple(heapq.merge(agent_log, storpool_log, key=lambda e: -math.inf if e.ts is None else e.ts))


def build_snapshot(config: Config, hostname: str, readings: Readings, now: float) -> Snapshot:
    """`hostname` is this host's name; LINSTOR knows the host by `[linstor] node` when
    that is set."""
    return Snapshot(
        now=now,
        linstor_node=config.linstor.node or hostname,
        agent=readings.agent,
        agent_version=running_version(readings.agent_log, readings.agent),
        agent_unit_state=readings.agent_unit_state,
        libvirt_pools=readings.libvirt_pools,
        management_host=readings.management_host,
        management_pools=tuple(map(with_endpoint, readings.management_pools)),
        management_elsewhere=readings.management_elsewhere,
        listed_at=readings.listed_at,
        log_events=in_time_order(readings.agent_log, readings.storpool_log),
        log_cursor=readings.log_cursor,
        probes=readings.probes,
        sources=readings.sources,
        heartbeat_retry_s=readings.heartbeat_retry_s,
    )


def with_endpoint(pool: Pool) -> Pool:
    """The listing's pool with the URL its backend is probed at: the history keeps it, so
    a pool probed by its id (`cloudstack-guard probe <uuid>`), or held after its removal,
    is still found where it was."""
    backend = backend_named(driver_for(pool.type).probe)
    found = backend.endpoint(pool) if backend is not None and not pool.url else None
    return replace(pool, url=found.url) if found is not None else pool
