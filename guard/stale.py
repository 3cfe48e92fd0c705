"""Which pools the running agent still holds after their removal, and what each risks.

Pure. A stale entry matters in two ways (drivers.py names the CloudStack files):
LinstorStorageAdaptor asks a cached pool's controller on every VM stop, so a stale
LINSTOR entry whose controller is gone fails every stop on the host; and the KVM HA
monitor keeps heartbeating LINSTOR, StorPool (and NFS pools libvirt still has), so a
stale entry whose heartbeat fails gets the host rebooted. A restart clears both, unless
a live pool behind the same adaptor is in an outage: then the same failures go on
through the live pool, and the restart only disconnects the host in the middle of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from guard.drivers import UNKNOWN, Driver, driver_for, has_release
from guard.evidence import probe_evidence, recent_heartbeat_failures, version_tuple, when
from guard.failures import connection_lost
from guard.history import Held, History, IncarnationRecord, PoolRecord
from guard.javamap import hashmap_order, surely_before
from guard.model import CLOCK_SLACK_S, Evidence, Finding, LogEvent, Severity, Snapshot
from guard.record import FROM_LISTING, detached

RECONNECT_DELETES_FROM = (4, 21)
"""StoragePoolMonitor (apache/cloudstack#10381): from 4.21 the server sends
DeleteStoragePoolCommand on connect for pools linked to the host but no longer expected,
Maintenance pools included."""

HA_DELETE_ALL_TYPES_BEFORE = (4, 21)
"""KVMStoragePoolManager.deleteStoragePool: up to 4.20 it drops every type's pool from
the KVM HA monitor; from 4.21 only NFS pools."""


_TRY = re.compile(r"^try (\d+) of (\d+)")


def reboot_countdown(last: LogEvent, now: float, retry_s: float) -> str:
    """How long the host has, from the monitor's last logged try and the retry sleep the
    agent read (kvm.heartbeat.update.retry.sleep): the operator is told before the
    reboot, whether or not a gate lets the guard restart the agent."""
    if last.detail.startswith("stopping cloudstack-agent"):
        return f"the HA monitor gave up {when(last.ts, now)}: the host is being rebooted"
    match = _TRY.match(last.detail)
    if match is None or last.ts is None:
        return "after its last try the host is rebooted"
    done, tries = int(match.group(1)), int(match.group(2))
    due = last.ts + (tries - done + 1) * retry_s
    return (f"{tries - done} of {tries} tries are left, {retry_s:g}s apart "
            f"(kvm.heartbeat.update.retry.sleep): the host is rebooted in about {max(0.0, due - now):.0f}s")


LIVE_HEARTBEAT_WINDOW_S = 300.0
"""A live pool's heartbeat failing within this long (five rounds at the default
kvm.heartbeat.update.frequency of 60 s) counts as trouble a restart leaves behind."""


def adaptor_failed_since(snap: Snapshot, adaptor: str, since: float) -> Optional[LogEvent]:
    """A later sign that the adaptor still reaches a cached pool: a foreign-path line
    (DEBUG), or a connection failure out of it."""
    return next((e for e in snap.current_events() if e.ts is not None and e.ts > since and (
        (e.kind == "linstor-foreign-path" and adaptor == "LinstorStorageAdaptor")
        or (e.kind == "storage-failure" and e.adaptor == adaptor and connection_lost(e)))), None)


def _server_version(snap: Snapshot, history: History, record: PoolRecord) -> str:
    host = snap.management_host
    return record.removed_server_version or history.server_version or (host.server_version if host else "")


def cleared(
    snap: Snapshot, history: History, record: PoolRecord, current: IncarnationRecord
) -> tuple[Optional[Evidence], bool]:
    """(why the pool's adaptor entry is gone although the log at INFO cannot say it,
    whether the HA monitor still has the pool)."""
    driver = driver_for(record.type)
    agent = version_tuple(current.agent_version or snap.agent_version)
    server_text = _server_version(snap, history, record)
    server = version_tuple(server_text)
    ha_kept = bool(driver.ha_heartbeat_tool) and (not agent or agent >= driver.ha_from)
    ha_after_delete = ha_kept and agent >= HA_DELETE_ALL_TYPES_BEFORE
    if record.maintenance_at is not None and record.maintenance_at >= current.start_time:
        if driver.maintenance_drops_from is not None and agent and agent >= driver.maintenance_drops_from:
            return Evidence("management", f"pool entered maintenance while this host was Up and agent "
                            f"{'.'.join(map(str, agent))} drops a {record.type} pool on "
                            "ModifyStoragePoolCommand(add=false)"), False
        reconnected = (history.last_disconnected_at is not None
                       and history.last_disconnected_at > record.maintenance_at)
        if reconnected and server >= RECONNECT_DELETES_FROM and has_release(server, driver.delete_sent_from):
            return Evidence("management", f"the agent reconnected while the pool was in maintenance, and "
                            f"management server {server_text} then sends DeleteStoragePoolCommand"), \
                ha_after_delete
    if (record.removed_at is not None and record.removed_while_connected and not driver.libvirt_backed
            and server and has_release(server, driver.delete_sent_from)
            and adaptor_failed_since(snap, driver.adaptor, record.removed_at) is None):
        return Evidence("management", f"management server {server_text} sends DeleteStoragePoolCommand "
                        "on deletion, and this host was Up and connected from the pool's last listing "
                        "to its removal"), ha_after_delete
    return None, ha_kept


def _why_held(snap: Snapshot, record: PoolRecord, held_via: str, held_since: float,
              driver: Driver) -> list[Evidence]:
    evidence = [Evidence("history", f"held by agent pid {snap.agent.incarnation.pid if snap.agent else '?'} "
                         f"since {when(held_since, snap.now)} ({held_via})")]
    if record.removed_at is not None:
        unconfirmed = "" if record.absence_confirmed or record.removed_via not in FROM_LISTING else \
            " (one listing so far; the next confirms it before any restart)"
        evidence.append(Evidence("history", f"removed {when(record.removed_at, snap.now)}: "
                                 f"{record.removed_via}{unconfirmed}"))
    else:
        version = snap.agent_version or "(version unknown)"
        evidence.append(Evidence("management", f"listed {record.last_state}: the server does not "
                                 f"send it to a restarting agent, and on agent {version} "
                                 f"{driver.adaptor} keeps it on ModifyStoragePoolCommand(add=false)"))
    return evidence


def live_trouble(snap: Snapshot, live: dict[str, PoolRecord], pool_type: str) -> Optional[str]:
    """A live pool of this type whose backend is down or whose heartbeat fails: what a
    restart would leave failing the same way."""
    for uuid, record in sorted(live.items()):
        if record.type != pool_type:
            continue
        probe = snap.probe_for(uuid)
        if probe is not None and probe.down:
            return f"live pool {uuid} of the same adaptor is {probe.status} at {probe.target}"
        if recent_heartbeat_failures(snap, uuid, snap.now - LIVE_HEARTBEAT_WINDOW_S):
            return f"live pool {uuid} of the same adaptor fails its HA heartbeat"
    return None


@dataclass(frozen=True)
class _Look:
    """What every stale pool of one evaluation is judged against."""

    snap: Snapshot
    current: IncarnationRecord
    live: dict[str, PoolRecord]
    asked: tuple[str, ...]
    """The entries of the adaptor whose disconnect reaches its backend (LINSTOR's map), in
    the order the guard saw them added."""
    asked_most: int


def _asked_first(look: _Look, uuid: str) -> tuple[Optional[str], Optional[str]]:
    """(the pool VM stops ask first by the map's order, a pool that surely comes before
    `uuid` and whose controller answers): only that one lets stops pass meanwhile."""
    if uuid not in look.asked:
        return None, None
    first = hashmap_order(look.asked, look.asked_most)[0]
    shield = next((other for other in look.asked if other != uuid
                   and (probe := look.snap.probe_for(other)) is not None and probe.reachable
                   and surely_before(other, uuid, look.asked_most)), None)
    return first, shield


def _stale_finding(
    look: _Look, record: PoolRecord, held: Held, ha_kept: bool, adaptor_kept: bool = True,
) -> Optional[Finding]:
    snap = look.snap
    driver = driver_for(record.type)
    evidence = _why_held(snap, record, held.via, held.since, driver) + probe_evidence(
        snap, record.uuid, record.url)
    probe = snap.probe_for(record.uuid)
    since = _left_at(record, look.current)
    heartbeats = recent_heartbeat_failures(snap, record.uuid, since) if (
        ha_kept or driver is UNKNOWN) else []
    for event in heartbeats[-1:]:
        evidence.append(Evidence("agent-log", f"HA heartbeat failing for this pool "
                                 f"{when(event.ts, snap.now)}: {event.detail}"))
    restart_helps = True
    stops = driver.disconnect_reaches_backend and adaptor_kept
    first, shield = _asked_first(look, record.uuid) if stops else (None, None)
    if first is not None:
        evidence.append(Evidence("guard", "VM stops ask this pool first" if first == record.uuid else
                                 f"VM stops ask pool {first} first (HashMap order of the cached uuids)"))
    if heartbeats:
        severity = Severity.CRITICAL
        tool = f" ({driver.ha_heartbeat_tool})" if driver.ha_heartbeat_tool else ""
        action = ("restart cloudstack-agent: the HA monitor still heartbeats this removed pool"
                  f"{tool}, and {reboot_countdown(heartbeats[-1], snap.now, snap.heartbeat_retry_s)}")
    elif stops and probe is not None and probe.down and shield is not None:
        severity = Severity.WARNING
        action = (f"restart cloudstack-agent at a quiet moment: VM stops ask pool {shield} first "
                  f"({driver.adaptor} takes the first of its HashMap), whose controller answers, so "
                  "they still pass; they fail through this entry once that pool leaves the map")
    elif stops and probe is not None and probe.down:
        severity = Severity.CRITICAL
        action = ("restart cloudstack-agent to clear the stale pool (the guard does this in "
                  "remediate mode); until then every VM stop on this host fails")
    elif stops:
        severity = Severity.WARNING
        action = ("restart cloudstack-agent at a quiet moment: VM stops on this host will fail as "
                  "soon as this pool's controller stops answering")
        if probe is not None and not probe.reachable:
            action += (f"; the controller rejects the guard's probe ({probe.status}): check "
                       "[linstor] auth_json and TLS settings")
    elif ha_kept and driver.heartbeat_outlives_removal and driver.heartbeat_asks_backend \
            and probe is not None and not probe.reachable:
        severity = Severity.CRITICAL
        action = (f"restart cloudstack-agent: VM stops are not affected, but the HA monitor still "
                  f"heartbeats this removed pool ({driver.ha_heartbeat_tool}), and what that heartbeat "
                  f"checks fails now ({probe.status}); after its tries the host is rebooted")
    elif ha_kept and driver.heartbeat_outlives_removal:
        severity = Severity.WARNING
        action = (f"restart cloudstack-agent at a quiet moment: VM stops are not affected, but the HA "
                  f"monitor still heartbeats this removed pool ({driver.ha_heartbeat_tool}) and reboots "
                  "the host once that fails")
    elif not adaptor_kept:
        return None
    else:
        severity, restart_helps = Severity.WARNING, False
        action = (f"no VM stop depends on it ({driver.adaptor} does not reach {driver.backend} for "
                  "other pools' disks); it clears at the next agent restart")
    trouble = live_trouble(snap, look.live, record.type) if restart_helps else None
    if trouble:
        restart_helps = False
        evidence.append(Evidence("guard", trouble))
        action = (f"storage outage behind the same adaptor ({trouble}): a restart would clear this "
                  "entry but the same failures go on through the live pool; fix the backend first, "
                  "then restart cloudstack-agent")
    return Finding(
        kind="stale-pool", severity=severity, evidence=tuple(evidence), action=action,
        pool_uuid=record.uuid, pool_type=record.type, backend=record.url,
        restart_helps=restart_helps,
    )


def _left_at(record: PoolRecord, current: IncarnationRecord) -> float:
    """Since when the pool is no longer one a restarted agent would get back: heartbeat
    failures after it are a stale entry's. A removed pool was last listed before it went;
    a pool in maintenance went when it entered it (or, not seen, before this agent)."""
    known = record.last_listed if record.removed_at is not None else record.maintenance_at
    return known if known is not None else current.start_time - CLOCK_SLACK_S


def detached_held(record: PoolRecord) -> bool:
    return record.removed_at is None and record.last_listed is not None and detached(record.last_state)


def _asked_entries(
    snap: Snapshot, history: History, current: IncarnationRecord
) -> tuple[tuple[str, ...], int]:
    """The cached pools of the adaptor whose disconnect reaches its backend, minus those
    an inference says it dropped; and how many it ever held (the map never shrinks)."""
    entries, ever = [], 0
    for held in current.held:
        record = history.pool(held.uuid)
        if record is None or not driver_for(record.type).disconnect_reaches_backend:
            continue
        ever += 1
        if held.uuid in current.dropped:
            continue
        gone = record.removed_at is not None or detached_held(record)
        if gone and cleared(snap, history, record, current)[0] is not None:
            continue
        entries.append(held.uuid)
    return tuple(entries), ever


def stale_pools(
    snap: Snapshot, history: History, current: IncarnationRecord, live: dict[str, PoolRecord]
) -> list[Finding]:
    """A removed libvirt-backed pool still defined in libvirt is reported as an orphan;
    it is also stale here only while the HA monitor fails its heartbeat (KVMHAMonitor
    heartbeats NFS pools libvirt still has). A pool put into maintenance is as good as
    removed for a restarting agent."""
    in_libvirt = {p.uuid for p in snap.libvirt_pools}
    look = _Look(snap, current, live, *_asked_entries(snap, history, current))
    findings = []
    for held in current.held:
        record = history.pool(held.uuid)
        if held.uuid in current.dropped or record is None:
            continue
        if record.removed_at is None and not detached_held(record):
            continue
        if record.removed_at is not None and record.removed_at < current.start_time - CLOCK_SLACK_S:
            continue
        driver = driver_for(record.type)
        if not driver.caches_pools:
            continue
        why, ha_kept = cleared(snap, history, record, current)
        orphan = held.uuid in in_libvirt and (held.via == "defined in libvirt" or driver.libvirt_backed)
        if orphan and not (ha_kept and recent_heartbeat_failures(snap, held.uuid, _left_at(record, current))):
            continue
        if why is not None and not ha_kept:
            continue
        finding = _stale_finding(look, record, held, ha_kept, adaptor_kept=why is None)
        if finding is not None:
            findings.append(finding)
    return findings
