"""Folds one snapshot into the history: which pools the running agent holds, which were
removed and when. Pure, so every rule of the evidence model can be tested without I/O.

The rules (DESIGN.md, "The evidence model"):
- a pool is held by an incarnation if, after it started, the agent log shows it being
  added or used, or the management server listed it in this host's scope while the host
  was Up and the agent connected (the server re-sends every attached pool on connect);
- a pool is removed when the management server stops listing it, or the log shows the
  agent processing its deletion; the latter also means the agent dropped it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from guard.drivers import canonical_type
from guard.history import Held, History, IncarnationRecord, PoolRecord
from guard.model import Snapshot

KEEP_INCARNATIONS = 10
FORGET_REMOVED_AFTER_S = 30 * 86400

DETACHED_STATES = {"maintenance", "prepareformaintenance", "errorinmaintenance", "removed"}
"""Pool states in which the management server does not send the pool to a connecting
agent, so listing them proves nothing about what a new incarnation holds."""

SECONDARY_CAPABLE = {"NetworkFilesystem", "Filesystem"}
"""Types the agent also uses for secondary-storage and ISO mounts, named by uuid like
primary pools: absence from the primary pool listing proves nothing for them unless the
management server listed them as primary before."""

HOLD_KINDS = {"pool-add", "linstor-pool", "heartbeat-failure"}
DROP_KINDS = {"pool-remove", "pool-delete-command"}


def _pool(history: History, uuid: str) -> PoolRecord:
    return history.pool(uuid) or PoolRecord(uuid=uuid)


def _merge_identity(record: PoolRecord, pool_type: str, name: str, url: str) -> PoolRecord:
    return replace(
        record,
        type=canonical_type(pool_type) if pool_type else record.type,
        name=name or record.name,
        url=url or record.url,
    )


def _hold(incarnation: IncarnationRecord, uuid: str, since: float, via: str) -> IncarnationRecord:
    if incarnation.holds(uuid):
        return incarnation
    return replace(incarnation, held=incarnation.held + (Held(uuid, since, via),))


def _current(history: History, snap: Snapshot) -> Optional[IncarnationRecord]:
    if snap.agent is None:
        return None
    inc = snap.agent.incarnation
    return history.incarnation(inc.key) or IncarnationRecord(inc.pid, inc.start_time, snap.now)


def _record_management(history: History, snap: Snapshot) -> History:
    if not snap.source_ok("management"):
        return history
    for pool in snap.management_pools:
        record = _merge_identity(_pool(history, pool.uuid), pool.type, pool.name, pool.url)
        record = replace(
            record,
            first_listed=record.first_listed or snap.now,
            last_listed=snap.now,
            last_state=pool.state,
            removed_at=None,
            removed_via="",
        )
        host_up = snap.management_host is not None and snap.management_host.state == "Up"
        if pool.state.lower() in DETACHED_STATES and host_up and snap.agent is not None:
            record = replace(record, maintenance_at=record.maintenance_at or snap.now)
        elif pool.state.lower() not in DETACHED_STATES:
            record = replace(record, maintenance_at=None)
        history = history.with_pool(record)
    return history


def _record_log(
    history: History, snap: Snapshot, current: Optional[IncarnationRecord]
) -> tuple[History, Optional[IncarnationRecord]]:
    mine = {id(e) for e in snap.current_events()}
    for event in snap.log_events:
        if not event.pool_uuid:
            continue
        record = _merge_identity(_pool(history, event.pool_uuid), event.pool_type, "", event.url)
        if event.kind in DROP_KINDS and event.ts is not None and record.removed_at is None:
            record = replace(record, removed_at=event.ts, removed_via="agent log")
        history = history.with_pool(record)
        if current is None or id(event) not in mine or event.ts is None:
            continue
        if event.kind in HOLD_KINDS:
            if event.pool_uuid in current.dropped:
                current = replace(
                    current,
                    dropped=tuple(u for u in current.dropped if u != event.pool_uuid),
                    held=tuple(h for h in current.held if h.uuid != event.pool_uuid),
                )
            current = _hold(current, event.pool_uuid, event.ts, f"agent log ({event.kind})")
            if record.removed_at is not None and event.ts > record.removed_at:
                history = history.with_pool(replace(record, removed_at=None, removed_via=""))
        elif event.kind in DROP_KINDS and event.pool_uuid not in current.dropped:
            current = replace(current, dropped=current.dropped + (event.pool_uuid,))
    return history, current


def _record_holds_from_listing(
    history: History, snap: Snapshot, current: IncarnationRecord
) -> IncarnationRecord:
    host = snap.management_host
    connected = snap.agent is not None and snap.agent.connected is not False
    if not snap.source_ok("management") or host is None or host.state != "Up" or not connected:
        return current
    for pool in snap.management_pools:
        if pool.state.lower() not in DETACHED_STATES:
            current = _hold(current, pool.uuid, snap.now, "management server listing (host Up)")
    return current


def _record_libvirt_holds(snap: Snapshot, current: IncarnationRecord) -> IncarnationRecord:
    for pool in snap.libvirt_pools:
        current = _hold(current, pool.uuid, snap.now, "defined in libvirt")
    return current


def _record_removals(history: History, snap: Snapshot, current: Optional[IncarnationRecord]) -> History:
    """A pool the management server no longer lists has been removed (or left scope)."""
    if not snap.source_ok("management"):
        return history
    listed = {p.uuid for p in snap.management_pools}
    candidates = {p.uuid for p in history.pools}
    if current is not None:
        candidates |= {h.uuid for h in current.held}
    for uuid in sorted(candidates - listed):
        record = _pool(history, uuid)
        if record.removed_at is not None:
            continue
        if record.first_listed is None and (not record.type or record.type in SECONDARY_CAPABLE):
            continue
        history = history.with_pool(
            replace(record, removed_at=snap.now, removed_via="management server no longer lists it")
        )
    return history


def _prune(history: History, snap: Snapshot, current: Optional[IncarnationRecord]) -> History:
    incarnations = sorted(history.incarnations, key=lambda i: i.first_seen)[-KEEP_INCARNATIONS:]
    held_now = {h.uuid for h in current.held} if current else set()

    def keep(pool: PoolRecord) -> bool:
        """Pools only the log ever named (the agent mounts secondary storage and ISOs as
        uuid-named NFS pools, hundreds over months) are kept only while the running
        agent holds them; the log names them again if it matters."""
        if pool.uuid in held_now:
            return True
        if pool.removed_at is not None:
            return snap.now - pool.removed_at < FORGET_REMOVED_AFTER_S
        return pool.first_listed is not None

    pools = tuple(p for p in history.pools if keep(p))
    return replace(history, pools=pools, incarnations=tuple(incarnations))


def record(history: History, snap: Snapshot) -> History:
    """The history after `snap`; calling it twice with the same snapshot changes nothing."""
    current = _current(history, snap)
    history = _record_management(history, snap)
    history, current = _record_log(history, snap, current)
    if current is not None:
        current = _record_holds_from_listing(history, snap, current)
        current = _record_libvirt_holds(snap, current)
        history = history.with_incarnation(current)
    history = _record_removals(history, snap, current)
    return _prune(history, snap, current)
