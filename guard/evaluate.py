"""Snapshot + history -> findings. Pure: no I/O, no clock, no randomness.

Severity follows what the user will hit next: a stale LINSTOR pool whose controller is
gone makes the next VM stop on this host fail (CRITICAL); one whose controller still
answers fails only once it goes (WARNING). A live pool whose backend is down is an
outage that an agent restart cannot fix, and the finding says so, so nobody restarts
agents across a cluster in the middle of a storage incident.
"""

from __future__ import annotations

from typing import Optional

from guard.drivers import UNKNOWN, adaptor_pool_type, driver_for
from guard.failures import connection_lost, is_adaptor_backend_failure, is_stop_failure
from guard.history import History, IncarnationRecord, PoolRecord
from guard.model import CLOCK_SLACK_S, Evidence, Finding, LogEvent, Severity, Snapshot
from guard.record import detached

RECENT_S = 3600.0
"""A stop failure or heartbeat warning older than this, with no cause visible now, is
history for `analyze`, not an alarm for monitoring."""

RESTARTING_SUBSTATES = {"auto-restart", "start", "start-pre", "start-post", "reload"}

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
        evidence = [Evidence("agent-process", "no com.cloud.agent.AgentShell process runs")]
        if snap.agent_unit_state:
            evidence.append(Evidence("systemd", f"unit state {snap.agent_unit_state}"))
        restarting = snap.agent_unit_state.split("/")[-1] in RESTARTING_SUBSTATES
        return [Finding(
            kind="agent-down",
            severity=Severity.WARNING if restarting else Severity.CRITICAL,
            evidence=tuple(evidence),
            action="systemd is restarting it; wait, and read the agent log if it keeps failing"
            if restarting else "start it (systemctl start cloudstack-agent) and read its log; "
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


LINSTOR_DELETE_FIX = ((4, 19, 3), (4, 20, 1))
"""Management-server releases with apache/cloudstack#10561: deleting a LINSTOR pool sends
DeleteStoragePoolCommand to every host that had it (before, no agent was told)."""


def _has_delete_fix(version: str) -> bool:
    parsed = version_tuple(version)
    if not parsed:
        return False
    return parsed >= LINSTOR_DELETE_FIX[1] or LINSTOR_DELETE_FIX[0] <= parsed < (4, 20)


def _dropped_evidence(
    snap: Snapshot, record: PoolRecord, current: IncarnationRecord
) -> Optional[Evidence]:
    """Why the agent probably let go of a pool although its log (at INFO) cannot say."""
    if record.maintenance_at is not None and record.maintenance_at >= current.start_time:
        version = version_tuple(snap.agent_version)
        if version and version >= ADD_FALSE_HONOURED_FROM:
            return Evidence("management", f"pool entered maintenance while this host was Up and agent "
                            f"{snap.agent_version} drops a pool on ModifyStoragePoolCommand(add=false)")
    server = snap.management_host.server_version if snap.management_host else ""
    if record.removed_at is not None and record.removed_while_connected \
            and driver_for(record.type).probe == "linstor" and _has_delete_fix(server):
        foreign = [e for e in snap.current_events()
                   if e.kind == "linstor-foreign-path" and e.ts is not None and e.ts > record.removed_at]
        if not foreign:
            return Evidence("management", f"management server {server} sends "
                            "DeleteStoragePoolCommand on deletion and this host was Up and connected")
    return None


def _probe_evidence(snap: Snapshot, uuid: str, url: str) -> list[Evidence]:
    probe = snap.probe_for(uuid)
    if probe is None:
        return [Evidence("probe", "controller URL unknown, not probed")] if not url else []
    return [Evidence(f"probe {probe.backend}", f"{probe.target}: {probe.status} ({probe.detail})")]


def _failures(events: tuple[LogEvent, ...], kind: str, uuid: str = "") -> list[LogEvent]:
    return [e for e in events if e.kind == kind and (not uuid or e.pool_uuid == uuid)]


def _why_held(snap: Snapshot, record: PoolRecord, held_via: str, held_since: float) -> list[Evidence]:
    evidence = [Evidence("history", f"held by agent pid {snap.agent.incarnation.pid} since "
                         f"{_when(held_since, snap.now)} ({held_via})")]
    if record.removed_at is not None:
        evidence.append(Evidence("history", f"removed {_when(record.removed_at, snap.now)}: "
                                 f"{record.removed_via}"))
    else:
        version = snap.agent_version or "(version unknown)"
        evidence.append(Evidence("management", f"listed {record.last_state}: the server does not "
                                 f"send it to a restarting agent, and agent {version} ignores "
                                 "ModifyStoragePoolCommand(add=false), so it stays cached"))
    return evidence


def _stale_finding(
    snap: Snapshot, record: PoolRecord, held_via: str, held_since: float, in_libvirt: bool
) -> Finding:
    driver = driver_for(record.type)
    evidence = _why_held(snap, record, held_via, held_since) + _probe_evidence(snap, record.uuid, record.url)
    probe = snap.probe_for(record.uuid)
    since = record.removed_at if record.removed_at is not None else held_since
    heartbeats = [e for e in _failures(snap.current_events(), "heartbeat-failure", record.uuid)
                  if e.ts is not None and e.ts > since and snap.now - e.ts < RECENT_S]
    for event in heartbeats[-1:]:
        evidence.append(Evidence("agent-log", f"HA heartbeat failing for this pool "
                                 f"{_when(event.ts, snap.now)}: {event.detail}"))
    restart_helps = True
    if driver.disconnect_reaches_backend and probe is not None and probe.down:
        severity = Severity.CRITICAL
        action = ("restart cloudstack-agent to clear the stale pool (the guard does this in "
                  "remediate mode); until then every VM stop on this host fails")
    elif driver.disconnect_reaches_backend:
        severity = Severity.WARNING
        action = ("restart cloudstack-agent at a quiet moment: VM stops on this host will fail as "
                  "soon as this pool's controller stops answering")
        if probe is not None and not probe.reachable:
            action += (f"; the controller rejects the guard's probe ({probe.status}): check "
                       "[linstor] auth_json and TLS settings")
    else:
        severity, restart_helps = Severity.WARNING, False
        action = (f"no VM stop depends on it ({driver.adaptor} does not reach {driver.backend} for "
                  "other pools' disks); it clears at the next agent restart")
    if heartbeats and (driver.heartbeat_outlives_removal or (not in_libvirt and driver is UNKNOWN)):
        severity, restart_helps = Severity.CRITICAL, True
        action = ("restart cloudstack-agent: the HA monitor still heartbeats this removed pool "
                  f"{('with ' + driver.ha_heartbeat_tool) if driver.ha_heartbeat_tool else ''} and can "
                  "reboot the host when the heartbeat keeps failing")
    return Finding(
        kind="stale-pool", severity=severity, evidence=tuple(evidence), action=action,
        pool_uuid=record.uuid, pool_type=record.type, backend=record.url,
        restart_helps=restart_helps,
    )


def _detached_held(record: PoolRecord) -> bool:
    return record.removed_at is None and record.last_listed is not None and detached(record.last_state)


def _stale_pools(snap: Snapshot, history: History, current: IncarnationRecord) -> list[Finding]:
    """A removed libvirt-backed pool still defined in libvirt is reported once, as an
    orphan: its stale cache entry harms nothing the orphan advice does not cover. A pool
    put into maintenance is as good as removed for a restarting agent."""
    in_libvirt = {p.uuid for p in snap.libvirt_pools}
    findings = []
    for held in current.held:
        record = history.pool(held.uuid)
        if held.uuid in current.dropped or record is None:
            continue
        if record.removed_at is None and not _detached_held(record):
            continue
        if record.removed_at is not None and record.removed_at < current.start_time - CLOCK_SLACK_S:
            continue
        if held.uuid in in_libvirt and (held.via == "defined in libvirt"
                                        or driver_for(record.type).libvirt_backed):
            continue
        if not driver_for(record.type).caches_pools or _dropped_evidence(snap, record, current):
            continue
        findings.append(_stale_finding(snap, record, held.via, held.since, held.uuid in in_libvirt))
    return findings


def _live_pools(
    snap: Snapshot, history: History, current: Optional[IncarnationRecord]
) -> dict[str, PoolRecord]:
    """Pools this host should be able to use now: listed in its scope, or held and not
    known to be removed or detached."""
    live = {}
    for pool in snap.management_pools:
        if not detached(pool.state):
            live[pool.uuid] = history.pool(pool.uuid) or PoolRecord(pool.uuid, pool.type, url=pool.url)
    if current is not None:
        for held in current.held:
            record = history.pool(held.uuid)
            if held.uuid not in current.dropped and record and record.removed_at is None \
                    and not _detached_held(record):
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
        elif not probe.down:
            severity = Severity.WARNING
            action = (f"the controller answers but rejects the guard's probe ({probe.status}): "
                      "check [linstor] auth_json and TLS settings; the agent's own calls may still work")
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


def _cause_for(failure: LogEvent, causes: list[Finding], history: History) -> Optional[Finding]:
    """The finding that explains a logged failure: same pool type, and the failure came
    after the cause began. A removal is seen only at the next poll, so it began after the
    pool was last listed; an outage is judged by recency instead."""
    pool_type = adaptor_pool_type(failure.adaptor)
    for cause in causes:
        if cause.pool_type != pool_type or failure.ts is None:
            continue
        record = history.pool(cause.pool_uuid)
        began = None
        if record is not None and record.removed_at is not None:
            began = record.last_listed if record.last_listed is not None else record.removed_at
        if began is not None and failure.ts >= began - CLOCK_SLACK_S:
            return cause
        if began is None and cause.kind != "stale-pool":
            return cause
    return None


def _log_failure_findings(snap: Snapshot, history: History, causes: list[Finding]) -> list[Finding]:
    """Failures the running agent logged, judged against what the guard sees now.

    A stop failure with a visible cause takes that cause's severity and says whether a
    restart helps. Without one, the log is the only witness of a recent refusal or
    timeout: CRITICAL, unless the probes show the backend answering again.
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
            cause = _cause_for(last, causes, history)
            recent = last.ts is not None and snap.now - last.ts < RECENT_S
            if cause is not None:
                if kind != "stop-failure":
                    continue
                evidence.append(Evidence("guard", f"cause: {cause.kind} {cause.pool_uuid}"))
                severity = cause.severity
                restart_helps = cause.kind == "stale-pool"
                action = ("caused by a stale pool: " + cause.action if restart_helps else
                          "caused by a storage outage: fix the backend; an agent restart will not help")
            elif recent:
                answering = [p for uuid, p in snap.probes if p.reachable
                             and (history.pool(uuid) or PoolRecord(uuid)).type == pool_type]
                restart_helps = False
                if answering:
                    severity = Severity.WARNING
                    action = (f"the backend answers again ({answering[0].target}); "
                              "read the agent log around the failure")
                else:
                    severity = Severity.CRITICAL if connection_lost(last) else Severity.WARNING
                    action = "read the agent log around the failure"
                    if not snap.source_ok("management"):
                        action += ("; configure [management] so the guard can tell a deleted pool "
                                   "from an outage")
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
    findings += _log_failure_findings(snap, history, stale + backend)
    return sorted(findings, key=lambda f: -f.severity.rank)


def overall(findings: list[Finding]) -> Severity:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)
