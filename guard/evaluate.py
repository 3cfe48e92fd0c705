"""Snapshot + history -> findings. Pure: no I/O, no clock, no randomness.

Severity follows what the user will hit next: a stale LINSTOR pool whose controller is
gone makes the next VM stop on this host fail (CRITICAL); one whose controller still
answers fails only once it goes (WARNING). A live pool whose backend is down is an
outage that an agent restart cannot fix, and the finding says so, so nobody restarts
agents across a cluster in the middle of a storage incident.
"""

from __future__ import annotations

from typing import Optional

from guard.drivers import adaptor_pool_type, driver_for, fails_next
from guard.evidence import RECENT_S, probe_evidence, when
from guard.failures import connection_lost, is_adaptor_backend_failure, is_stop_failure
from guard.history import History, IncarnationRecord, PoolRecord
from guard.model import CLOCK_SLACK_S, UNIT_NOT_FOUND, Evidence, Finding, LogEvent, Severity, Snapshot
from guard.record import detached
from guard.stale import detached_held, stale_pools

RESTARTING_SUBSTATES = {"auto-restart", "start", "start-pre", "start-post", "reload"}

CONNECT_GRACE_S = 120.0
"""A freshly started agent needs a moment to reach the management server."""

SOURCE_FIXES = {
    "libvirt": "check that libvirtd is running and [libvirt] uri is right",
    "agent-process": "run the guard as root so it can see the agent's process",
    "agent-properties": "check [agent] properties in guard.toml",
    "agent-log": "check [agent] log in guard.toml and that the guard can read it",
    "management": "check the management server and [management] in guard.toml",
    "history": "check that state_dir is writable by the guard",
}


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
        if snap.agent_unit_state == UNIT_NOT_FOUND:
            evidence.append(Evidence("systemd", "the agent's unit is not installed (LoadState not-found)"))
            return [Finding(
                kind="agent-down", severity=Severity.CRITICAL, evidence=tuple(evidence),
                action="cloudstack-agent is not installed on this host: install it, or set [agent] "
                       "unit to the unit it runs as; the guard never installs or starts an agent",
            )]
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
                    and not detached_held(record):
                live.setdefault(held.uuid, record)
    return live


def _backend_findings(snap: Snapshot, live: dict[str, PoolRecord]) -> list[Finding]:
    findings = []
    blind = not snap.source_ok("management")
    for uuid, record in sorted(live.items()):
        probe = snap.probe_for(uuid)
        # Only LINSTOR's answer carries this node as the controller sees it; the other
        # backends' probes fold this host's client (StorPool, the PowerFlex SDC) into status.
        node_trouble = probe is not None and probe.reachable and probe.backend == "linstor" \
            and probe.node_status not in ("ONLINE", "")
        if probe is None or (probe.reachable and not node_trouble):
            continue
        evidence = probe_evidence(snap, uuid, record.url)
        driver = driver_for(record.type)
        if probe.reachable:
            severity = Severity.WARNING
            action = (f"the controller answers but sees node {snap.linstor_node} as "
                      f"{probe.node_status}: check the LINSTOR satellite on this host")
        elif not probe.down:
            severity = Severity.WARNING
            action = (f"{driver.backend} answers but rejects the guard's probe ({probe.status}): "
                      "check the guard's credentials and TLS settings for it; the agent's own calls "
                      "may still work")
        elif probe.local_ok and not driver.agent_uses_control_plane:
            severity = Severity.WARNING
            action = (f"the control plane does not answer ({probe.status}), but this host's own "
                      "client is up, so running VMs keep their disks: new volumes cannot be created, "
                      "attached or detached through the management server until it answers; a "
                      "restart of the agent will not help")
            if probe.status == "tls":
                action += "; if the gateway's certificate is self-signed, set [powerflex] ca"
        else:
            severity = Severity.CRITICAL
            action = (f"storage outage of {driver.backend}: {fails_next(driver)}. Fix the backend; "
                      "restarting the agent will not help and only disconnects the host")
            if blind and driver.disconnect_reaches_backend:
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
                          Evidence("history", f"removed {when(record.removed_at, snap.now)}: "
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


def _cause_for(
    snap: Snapshot, failure: LogEvent, causes: list[Finding], history: History
) -> Optional[Finding]:
    """The finding that explains a logged failure: same pool type, and the failure came
    after the cause began. A removal is seen only at the next poll, so it began after the
    pool was last listed; an outage is judged by recency instead."""
    pool_type = adaptor_pool_type(failure.adaptor)
    for cause in causes:
        if cause.pool_type != pool_type or failure.ts is None:
            continue
        probe = snap.probe_for(cause.pool_uuid)
        if connection_lost(failure) and probe is not None and probe.reachable:
            continue  # a controller that answers did not refuse this call
        record = history.pool(cause.pool_uuid)
        began = None
        if record is not None and record.removed_at is not None:
            began = record.last_listed if record.last_listed is not None else record.removed_at
        if began is not None and failure.ts >= began - CLOCK_SLACK_S:
            return cause
        if began is None and cause.kind != "stale-pool":
            return cause
    return None


FAILURE_NEAR_OUTAGE_S = 120.0
"""A logged connection failure this close after a probe found a live pool's backend down
may be that outage's, not a stale entry's."""


def _from_a_stale_entry(
    snap: Snapshot, failure: LogEvent, live: dict[str, PoolRecord], pool_type: str
) -> bool:
    """A refused or timed-out call out of an adaptor that reaches its backend only through
    the pools it caches (LinstorStorageAdaptor), while every live pool of that type was
    probed healthy, and none was seen down around the failure: the pool it asked is one
    the server no longer lists."""
    if not (driver_for(pool_type).disconnect_reaches_backend and connection_lost(failure)
            and snap.source_ok("management") and failure.ts is not None):
        return False
    for uuid, record in live.items():
        if record.type != pool_type:
            continue
        probe = snap.probe_for(uuid)
        if probe is None or not probe.reachable:
            return False
        down_at = record.backend_down_at
        if down_at is not None and down_at >= failure.ts - FAILURE_NEAR_OUTAGE_S:
            return False
    return True


def _log_failure_findings(
    snap: Snapshot, history: History, causes: list[Finding], live: dict[str, PoolRecord]
) -> list[Finding]:
    """Failures the running agent logged, judged against what the guard sees now.

    A stop failure with a visible cause takes that cause's severity and says whether a
    restart helps. Without one, the log is the only witness of a recent refusal or
    timeout: CRITICAL; from a stale entry when every live pool of the adaptor answers,
    else unexplained.
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
                                 f"started, last {when(last.ts, snap.now)} ({last.file}:{last.line}): "
                                 f"{last.exception}")]
            cause = _cause_for(snap, last, causes, history)
            recent = last.ts is not None and snap.now - last.ts < RECENT_S
            if cause is not None:
                if kind != "stop-failure":
                    continue
                evidence.append(Evidence("guard", f"cause: {cause.kind} {cause.pool_uuid}"))
                severity = cause.severity
                restart_helps = cause.kind == "stale-pool"
                action = ("caused by a stale pool: " + cause.action if restart_helps else
                          "caused by a storage outage: fix the backend; an agent restart will not help")
            elif recent and kind == "stop-failure" and _from_a_stale_entry(snap, last, live, pool_type):
                severity, restart_helps = Severity.CRITICAL, True
                action = (f"{adaptor} reaches a controller only through a pool it caches, and every "
                          f"{pool_type} pool the server lists answers: a pool removed before the guard "
                          "saw it is still cached. Restart cloudstack-agent to clear it (the guard does "
                          "this in remediate mode)")
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
    live = _live_pools(snap, history, current)
    stale = stale_pools(snap, history, current, live) if current else []
    backend = _backend_findings(snap, live)
    findings += stale + backend + _libvirt_findings(snap, history, live)
    findings += _log_failure_findings(snap, history, stale + backend, live)
    return sorted(findings, key=lambda f: -f.severity.rank)


def overall(findings: list[Finding]) -> Severity:
    return max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)
