"""Snapshot + history -> findings. Pure: no I/O, no clock, no randomness.

Severity follows what the user will hit next: a stale LINSTOR pool whose controller is
gone makes the next VM stop on this host fail (CRITICAL); one whose controller still
answers fails only once it goes (WARNING). A live pool whose backend is down is an
outage that an agent restart cannot fix, and the finding says so, so nobody restarts
agents across a cluster in the middle of a storage incident.
"""

from __future__ import annotations

from typing import Optional

from guard.drivers import adaptor_pool_type, driver_for
from guard.failures import connection_lost, is_adaptor_backend_failure, is_stop_failure
from guard.history import History, IncarnationRecord, PoolRecord
from guard.model import CLOCK_SLACK_S, Evidence, Finding, LogEvent, Severity, Snapshot
from guard.record import DETACHED_STATES

RECENT_S = 3600.0
"""A stop failure or heartbeat warning older than this, with no cause visible now, is
history for `analyze`, not an alarm for monitoring."""

CONNECT_GRACE_S = 120.0
"""A freshly started agent needs a moment to reach the management server."""

ADD_FALSE_HONOURED_FROM = (4, 21)
"""First agent release whose ModifyStoragePoolCommand(add=false) handler, sent when a
pool enters maintenance, removes the pool from the agent's caches. The 4.19 branch's
KVMStoragePoolManager has no such path; main has it; the release is inferred (4.21.0.0)
and erring late only keeps a finding that a newer agent would not need."""

SOURCE_FIXES = {
    "libvirt": "check that libvirtd is running and [libvirt] uri is right",
    "agent-process": "run the guard as root so it can see the agent's process",
    "agent-properties": "check [agent] properties in guard.toml",
    "agent-log": "check [agent] log in guard.toml and that the guard can read it",
    "management": "check the management server and [management] in guard.toml",
    "history": "check that state_dir is writable by the guard",
}


def _when(ts: Optional[float], now: float) -> str:
    if ts is None:
        return "at an unknown time"
    age = max(0.0, now - ts)
    if age < 90:
        return f"{age:.0f}s ago"
    if age < 5400:
        return f"{age / 60:.0f} min ago"
    if age < 172800:
        return f"{age / 3600:.1f} h ago"
    return f"{age / 86400:.0f} days ago"


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _source_findings(snap: Snapshot) -> list[Finding]:
    return [
        Finding(
            kind="source-unavailable",
            severity=Severity.UNKNOWN,
            evidence=(Evidence(s.name, s.detail or "could not be read"),),
            action=SOURCE_FIXES.get(s.name, "check this evidence source"),
            extra=(("source", s.name),),
        )
        for s in snap.sources
        if s.configured and not s.ok
    ]


def _agent_findings(snap: Snapshot) -> list[Finding]:
    if snap.agent is None:
        if not snap.source_ok("agent-process"):
            return []
        return [Finding(
            kind="agent-down",
            severity=Severity.CRITICAL,
            evidence=(Evidence("agent-process", "no com.cloud.agent.AgentShell process runs"),),
            action="start it (systemctl start cloudstack-agent) and read its log; "
                   "the guard never starts a stopped agent",
        )]
    agent = snap.agent
    host = snap.management_host
    evidence = []
    if agent.connected is False:
        evidence.append(Evidence("agent-process", agent.connection or "no connection to the "
                                 "management server"))
    if host is not None and host.state not in ("Up", ""):
        evidence.append(Evidence("management", f"the management server has this host {host.state}"))
    if not evidence:
        return []
    age = snap.now - agent.incarnation.start_time
    young = age < CONNECT_GRACE_S
    if young:
        evidence.append(Evidence("agent-process", f"the agent started {age:.0f}s ago"))
    return [Finding(
        kind="agent-disconnected",
        severity=Severity.WARNING if young or agent.connected is not False else Severity.CRITICAL,
        evidence=tuple(evidence),
        action="wait for the agent to connect" if young else
        "check the network path to the management server and the agent log",
    )]


def _maintenance_dropped(
    record: PoolRecord, current: IncarnationRecord, agent_version: str
) -> Optional[Evidence]:
    if record.maintenance_at is None or record.maintenance_at < current.start_time:
        return None
    version = version_tuple(agent_version)
    if not version or version < ADD_FALSE_HONOURED_FROM:
        return None
    return Evidence(
        "management",
        f"pool entered maintenance while this host was Up and agent {agent_version} "
        "drops a pool on ModifyStoragePoolCommand(add=false)",
    )


def _probe_evidence(snap: Snapshot, uuid: str, url: str) -> list[Evidence]:
    probe = snap.probe_for(uuid)
    if probe is None:
        return [Evidence("probe", "controller URL unknown, not probed")] if not url else []
    return [Evidence(f"probe {probe.backend}", f"{probe.target}: {probe.status} ({probe.detail})")]


def _failures(events: tuple[LogEvent, ...], kind: str, uuid: str = "") -> list[LogEvent]:
    return [e for e in events if e.kind == kind and (not uuid or e.pool_uuid == uuid)]


def _stale_finding(
    snap: Snapshot, record: PoolRecord, held_via: str, held_since: float
) -> Finding:
    driver = driver_for(record.type)
    evidence = [
        Evidence("history", f"held by agent pid {snap.agent.incarnation.pid} since "
                 f"{_when(held_since, snap.now)} ({held_via})"),
        Evidence("history", f"removed {_when(record.removed_at, snap.now)}: {record.removed_via}"),
    ]
    evidence += _probe_evidence(snap, record.uuid, record.url)
    probe = snap.probe_for(record.uuid)
    heartbeats = _failures(snap.current_events(), "heartbeat-failure", record.uuid)
    for event in heartbeats[-1:]:
        evidence.append(Evidence("agent-log", f"HA heartbeat failing for this pool "
                                 f"{_when(event.ts, snap.now)}: {event.detail}"))
    if driver.disconnect_reaches_backend:
        if probe is not None and not probe.reachable:
            severity = Severity.CRITICAL
            action = ("restart cloudstack-agent to clear the stale pool (the guard does this in "
                      "remediate mode); until then every VM stop on this host fails")
        else:
            severity = Severity.WARNING
            action = ("restart cloudstack-agent at a quiet moment: VM stops on this host will "
                      "fail as soon as this pool's controller stops answering")
        restart_helps = True
    else:
        severity = Severity.WARNING
        action = (f"no VM stop depends on it ({driver.adaptor} does not reach its backend for "
                  "other pools' disks); it clears at the next agent restart")
        restart_helps = False
    if heartbeats and driver.ha_heartbeat_tool:
        severity = Severity.CRITICAL
        restart_helps = True
        action = ("restart cloudstack-agent: the HA monitor still heartbeats this removed pool "
                  "and can reboot the host when the heartbeat keeps failing")
    return Finding(
        kind="stale-pool", severity=severity, evidence=tuple(evidence), action=action,
        pool_uuid=record.uuid, pool_type=record.type, backend=record.url,
        restart_helps=restart_helps,
    )


def _stale_pools(snap: Snapshot, history: History, current: IncarnationRecord) -> list[Finding]:
    """A removed libvirt-backed pool still defined in libvirt is reported once, as an
    orphan: its stale cache entry harms nothing the orphan advice does not cover."""
    in_libvirt = {p.uuid for p in snap.libvirt_pools}
    findings = []
    for held in current.held:
        record = history.pool(held.uuid)
        if held.uuid in current.dropped or record is None or record.removed_at is None:
            continue
        if record.removed_at < current.start_time - CLOCK_SLACK_S:
            continue
        if held.uuid in in_libvirt and (held.via == "defined in libvirt"
                                        or driver_for(record.type).libvirt_backed):
            continue
        if _maintenance_dropped(record, current, snap.agent_version):
            continue
        findings.append(_stale_finding(snap, record, held.via, held.since))
    return findings


def _live_pools(
    snap: Snapshot, history: History, current: Optional[IncarnationRecord]
) -> dict[str, PoolRecord]:
    """Pools this host should be able to use now: listed in its scope, or held and not
    known to be removed."""
    live = {}
    for pool in snap.management_pools:
        if pool.state.lower() not in DETACHED_STATES:
            live[pool.uuid] = history.pool(pool.uuid) or PoolRecord(pool.uuid, pool.type, url=pool.url)
    if current is not None:
        for held in current.held:
            record = history.pool(held.uuid)
            if held.uuid not in current.dropped and record and record.removed_at is None:
                live.setdefault(held.uuid, record)
    return live


def _backend_findings(snap: Snapshot, live: dict[str, PoolRecord]) -> list[Finding]:
    findings = []
    blind = not snap.source_ok("management")
    for uuid, record in sorted(live.items()):
        probe = snap.probe_for(uuid)
        if probe is None or (probe.reachable and probe.node_status in ("ONLINE", "")):
            continue
        evidence = _probe_evidence(snap, uuid, record.url)
        if probe.reachable:
            severity = Severity.WARNING
            action = (f"the controller answers but sees node {snap.hostname} as "
                      f"{probe.node_status}: check the LINSTOR satellite on this host")
        else:
            severity = Severity.CRITICAL
            action = ("storage outage: fix the backend; restarting the agent will not help "
                      "and only disconnects the host")
            if blind and driver_for(record.type).disconnect_reaches_backend:
                action += ("; without [management] the guard cannot tell a deleted pool from "
                           "an outage: if this pool was deleted, an agent restart clears it")
        findings.append(Finding(
            kind="backend-unreachable", severity=severity, evidence=tuple(evidence),
            action=action, pool_uuid=uuid, pool_type=record.type, backend=record.url,
        ))
    return findings


def _libvirt_findings(snap: Snapshot, history: History, live: dict[str, PoolRecord]) -> list[Finding]:
    listed = {p.uuid: p for p in snap.management_pools}
    findings = []
    for pool in snap.libvirt_pools:
        record = history.pool(pool.uuid)
        if record and record.first_listed is not None and record.removed_at is not None:
            findings.append(Finding(
                kind="orphan-libvirt-pool", severity=Severity.WARNING,
                evidence=(Evidence("libvirt", f"pool {pool.uuid} ({pool.type}) still defined, "
                                   f"state {pool.state}"),
                          Evidence("history", f"removed {_when(record.removed_at, snap.now)}: "
                                   f"{record.removed_via}")),
                action=(f"once no VM uses it: virsh pool-destroy {pool.uuid}; virsh pool-undefine "
                        f"{pool.uuid} (the guard never deletes anything)"),
                pool_uuid=pool.uuid, pool_type=pool.type,
            ))
        elif pool.state != "running" and pool.uuid in live:
            confirmed = pool.uuid in listed
            findings.append(Finding(
                kind="pool-inactive",
                severity=Severity.CRITICAL if confirmed else Severity.WARNING,
                evidence=(Evidence("libvirt", f"pool {pool.uuid} ({pool.type}) is {pool.state}"),)
                + ((Evidence("management", f"the management server lists it "
                             f"{listed[pool.uuid].state}"),) if confirmed else ()),
                action=f"virsh pool-start {pool.uuid}, and read libvirtd's log if it fails",
                pool_uuid=pool.uuid, pool_type=pool.type,
            ))
    return findings


def _log_failure_findings(snap: Snapshot, causes: list[Finding]) -> list[Finding]:
    """Failures the running agent logged, judged against what the guard sees now.

    A stop failure with a visible cause takes that cause's severity and says whether a
    restart helps. Without a visible cause (no management API, no controller URL known)
    the log is the only witness: a recent refusal or timeout is still CRITICAL, since
    nothing shows the backend came back.
    """
    findings = []
    events = snap.current_events()
    for kind, select in (("stop-failure", is_stop_failure),
                         ("backend-unreachable", is_adaptor_backend_failure)):
        failures = [e for e in events if select(e)]
        for adaptor in sorted({e.adaptor for e in failures}):
            mine = [e for e in failures if e.adaptor == adaptor]
            last = mine[-1]
            pool_type = adaptor_pool_type(adaptor)
            what = "disk cleanup failure(s)" if kind == "stop-failure" else "backend call failure(s)"
            evidence = [Evidence("agent-log", f"{len(mine)} {what} in {adaptor} since the agent "
                                 f"started, last {_when(last.ts, snap.now)} ({last.file}:{last.line}): "
                                 f"{last.exception}")]
            cause = next((f for f in causes if f.pool_type == pool_type), None)
            recent = last.ts is not None and snap.now - last.ts < RECENT_S
            if cause is not None:
                if kind != "stop-failure":
                    continue
                evidence.append(Evidence("guard", f"cause: {cause.kind} {cause.pool_uuid}"))
                severity = Severity.CRITICAL
                restart_helps = cause.kind == "stale-pool"
                action = ("caused by a stale pool: " + cause.action if restart_helps else
                          "caused by a storage outage: fix the backend; an agent restart will not help")
            elif recent:
                severity = Severity.CRITICAL if connection_lost(last) else Severity.WARNING
                restart_helps = False
                action = ("no cause is visible now (configure [management] so the guard can tell a "
                          "deleted pool from an outage); read the agent log around the failure")
            else:
                continue
            findings.append(Finding(
                kind=kind, severity=severity, evidence=tuple(evidence), action=action,
                pool_type=pool_type, pool_uuid=cause.pool_uuid if cause else "",
                backend=cause.backend if cause else "", restart_helps=restart_helps,
                extra=(("adaptor", adaptor),),
            ))
    return findings


def evaluate(snap: Snapshot, history: History) -> list[Finding]:
    """Every finding about this host now, worst first."""
    findings = _source_findings(snap) + _agent_findings(snap)
    current = history.incarnation(snap.agent.incarnation.key) if snap.agent else None
    stale = _stale_pools(snap, history, current) if current else []
    live = _live_pools(snap, history, current)
    backend = _backend_findings(snap, live)
    findings += stale + backend + _libvirt_findings(snap, history, live)
    findings += _log_failure_findings(snap, stale + backend)
    return sorted(findings, key=lambda f: -f.severity.rank)


def overall(findings: list[Finding]) -> Severity:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)
