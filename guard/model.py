"""Plain data shared by the sources, the evaluator and the reports.

Everything here is immutable so that the evaluator can stay a pure function: a snapshot
taken at one moment is never changed by the code that judges it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

CLOCK_SLACK_S = 2.0
"""log4j timestamps have millisecond precision and psutil's start time is rounded to
clock ticks; a line written in the agent's first instants must still count as its own."""


HEARTBEAT_RETRY_SLEEP_S = 10.0
"""AgentProperties.KVM_HEARTBEAT_UPDATE_RETRY_SLEEP's default (10000 ms): KVMHAMonitor
sleeps this long after each failed try of a pool's heartbeat, and reboots the host after
the last one (KVMHAMonitor.java, KVMHABase.java)."""


UNIT_NOT_FOUND = "not-found"
"""Snapshot.agent_unit_state when systemd has no unit of that name: not installed."""


class Severity(enum.IntEnum):
    """Nagios plugin states; the integer is the exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def rank(self) -> int:
        """Order for "worst wins": evidence of a problem outranks a blind spot."""
        return {Severity.OK: 0, Severity.UNKNOWN: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}[
            self
        ]


@dataclass(frozen=True)
class Pool:
    """A primary storage pool as one evidence source sees it.

    `type` uses CloudStack's StoragePoolType names (Linstor, NetworkFilesystem, RBD, ...)
    so that every source speaks the same vocabulary; libvirt's own pool types are mapped
    to them by the libvirt source.
    """

    uuid: str
    type: str
    origin: str
    name: str = ""
    state: str = ""
    source_hosts: tuple[str, ...] = ()
    target: str = ""
    url: str = ""
    scope: str = ""
    source_path: str = ""
    """Where on its backend the pool lives: the management server's `path` (NFS export,
    RBD pool, /IQN/LUN, Gluster volume), or libvirt's source dir path, source name (RBD
    pool, Gluster volume) or device path (iSCSI IQN)."""
    source_port: int = 0
    """The port libvirt's pool XML gives its first source host, 0 when it gives none."""


def pool_id(text: str) -> str:
    """One spelling of a pool id for every source. Uuids compare case-blind; a StorPool
    pool's id is `<template name>;<uuid>` (StorPoolPrimaryDataStoreLifeCycle) in the API,
    the agent and its log alike, and the template name keeps its case there."""
    template, sep, uuid = text.strip().rpartition(";")
    return f"{template}{sep}{uuid.lower()}"


def incarnation_key(pid: int, start_time: float, start_ticks: int) -> str:
    """The identity of one JVM: pid and start ticks when known, else pid and start time."""
    return f"{pid}@{start_ticks}" if start_ticks else f"{pid}:{start_time:.2f}"


@dataclass(frozen=True)
class Incarnation:
    """One life of the agent JVM: its caches are born and die with it. `start_ticks` is
    the kernel's start time in clock ticks after boot (0 when unknown): psutil's start
    time is derived from the wall clock and moves when the clock is stepped."""

    pid: int
    start_time: float
    start_ticks: int = 0

    @property
    def key(self) -> str:
        return incarnation_key(self.pid, self.start_time, self.start_ticks)


@dataclass(frozen=True)
class ChildProcess:
    pid: int
    name: str
    cmdline: str


@dataclass(frozen=True)
class AgentProcess:
    incarnation: Incarnation
    cmdline: str
    children: tuple[ChildProcess, ...] = ()
    connected: Optional[bool] = None
    connection: str = ""


@dataclass(frozen=True)
class LogEvent:
    """One thing the agent log says happened.

    kind is one of: agent-start, agent-version, agent-stop, agent-connected, pool-add,
    pool-remove, pool-delete-command, linstor-pool, linstor-foreign-path,
    heartbeat-failure, storage-failure. For storage-failure, `operation` is disk-cleanup,
    pool-create, pool-delete, or "" when the trace does not say.
    `ts` is seconds since the epoch in the host's local time zone, or None when the
    line carried no usable timestamp (fragments pasted from tickets).
    """

    kind: str
    ts: Optional[float]
    file: str
    line: int
    pool_uuid: str = ""
    pool_type: str = ""
    url: str = ""
    adaptor: str = ""
    exception: str = ""
    detail: str = ""
    operation: str = ""
    pid: Optional[int] = None


@dataclass(frozen=True)
class LogCursor:
    """How far the agent log has been read, and what had been learned by then: the next
    reader (`check` or the daemon, whichever runs next) reads only what was written
    since, so a check costs the same on a log of a megabyte or of gigabytes.

    The position is a pair that must stay whole: `events` are exactly the events of the
    lines before `offset` (kept from `since` on), and `scanner` is the reader's state
    between those lines and the next (a stack trace half read). guard/sources/agentlog/
    cursor.py makes and follows it.
    """

    path: str
    device: int
    inode: int
    offset: int
    """Bytes of the file read, always at the end of a line."""
    line: int
    """Lines read: the next line's number is line + 1."""
    head: str
    """sha256 of the file's first bytes (up to 4 KiB, never past offset): a file
    truncated and written again past offset, or a rotated copy, is told by it."""
    scanner: str
    since: float
    """Events from this time on are kept: a reader that needs older ones reads again."""
    incarnation: str = ""
    """The agent the events were kept for, for whoever reads the history; a reader goes
    by `since`, which moves with the agent's start."""
    events: tuple[LogEvent, ...] = ()


@dataclass(frozen=True)
class ProbeResult:
    """How a backend's control plane answered.

    status is one of: healthy, refused, timeout, dns, tls, http-error, bad-answer, auth
    (the peer is alive and asks for credentials the probe does not send).
    """

    backend: str
    target: str
    status: str
    detail: str = ""
    latency_s: float = 0.0
    http_status: Optional[int] = None
    version: str = ""
    node_status: str = ""
    source: str = ""
    """Where the probed endpoint came from (guard.backends.base.Endpoint.source)."""
    local_ok: Optional[bool] = None
    """For a probe that also asks this host's own client of the backend (StorPool's
    client, PowerFlex's SDC): whether that part is up; None when the probe has none."""

    @property
    def reachable(self) -> bool:
        return self.status == "healthy"

    @property
    def down(self) -> bool:
        """Unreachable the way that breaks the adaptor: it catches API errors (an HTTP
        error answer) but not a refused, hung, unresolvable or untrusted connection."""
        return self.status in ("refused", "timeout", "dns", "tls")


@dataclass(frozen=True)
class SourceStatus:
    """Whether an evidence source could be read; `configured` False means not asked for."""

    name: str
    ok: bool
    detail: str = ""
    configured: bool = True


@dataclass(frozen=True)
class ManagementHost:
    id: str
    name: str
    state: str
    cluster_id: str = ""
    zone_id: str = ""
    server_version: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything gathered in one pass; the evaluator sees nothing else."""

    now: float
    linstor_node: str
    """This host's name as LINSTOR knows it (`[linstor] node`, else the host name)."""
    agent: Optional[AgentProcess]
    agent_version: str = ""
    libvirt_pools: tuple[Pool, ...] = ()
    management_host: Optional[ManagementHost] = None
    management_pools: tuple[Pool, ...] = ()
    management_elsewhere: tuple[str, ...] = ()
    """Uuids the server still has outside this host's scope (moved to another cluster)."""
    agent_unit_state: str = ""
    log_events: tuple[LogEvent, ...] = ()
    probes: tuple[tuple[str, ProbeResult], ...] = ()
    sources: tuple[SourceStatus, ...] = ()
    listed_at: Optional[float] = None
    """When the management listing was read, if earlier than `now` (the daemon judges a
    cached listing many times): only a new listing confirms an absence."""
    log_cursor: Optional[LogCursor] = None
    """Where this reading of the agent log stopped, for the next reader (the history
    keeps it); None when the log was not read to its end."""
    heartbeat_retry_s: float = HEARTBEAT_RETRY_SLEEP_S
    """kvm.heartbeat.update.retry.sleep as the agent read it from agent.properties (at
    its start: KVMHABase reads it once)."""

    def source(self, name: str) -> Optional[SourceStatus]:
        return next((s for s in self.sources if s.name == name), None)

    def source_ok(self, name: str) -> bool:
        status = self.source(name)
        return bool(status and status.configured and status.ok)

    def current_events(self) -> tuple[LogEvent, ...]:
        """Log events written by the running agent incarnation.

        Lines without a timestamp cannot be placed and are left out; the log's clock is
        the host's, the same one psutil reports the process start time in. The previous
        incarnation's own "Stopping the agent" line is a sharper boundary than clocks: a
        failure logged just before a restart belongs to the agent that died.
        """
        if self.agent is None:
            return ()
        start = self.agent.incarnation.start_time
        events = self.log_events
        for index in range(len(events) - 1, -1, -1):
            stop = events[index]
            if stop.kind == "agent-stop" and stop.ts is not None and stop.ts <= start + CLOCK_SLACK_S:
                events = events[index + 1:]
                break
        return tuple(e for e in events if e.ts is not None and e.ts >= start - CLOCK_SLACK_S)

    def probe_for(self, pool_uuid: str) -> Optional[ProbeResult]:
        return next((p for uuid, p in self.probes if uuid == pool_uuid), None)


@dataclass(frozen=True)
class Evidence:
    source: str
    fact: str

    def __str__(self) -> str:
        return f"{self.fact} [{self.source}]"


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: Severity
    evidence: tuple[Evidence, ...]
    action: str
    pool_uuid: str = ""
    pool_type: str = ""
    backend: str = ""
    restart_helps: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())
