"""Every change to the history, in one place and pure: a snapshot folded in (`record`:
which pools the running agent holds, which were removed and when), a restart and its
outcome (`record_restart`), the judgement of the last restart and the circuit breaker
(`judge_last_restart`, `open_breaker`, `close_breaker`), and what to write when another
process saved meanwhile (`merge`). guard/store.py only loads and saves.

The rules (DESIGN.md, "The evidence model"):
- a pool is held by an incarnation if, after it started, the agent log shows it being
  added or used, or the management server listed it in this host's scope while the host
  was Up and the agent connected (the server re-sends every attached pool on connect);
- a pool is removed when the management server stops listing it, or the log shows the
  agent processing its deletion; the latter also means the agent dropped it.

Work is done on dicts and the frozen History is built once at the end: a busy agent log
names hundreds of pools, and rebuilding tuples per event made this quadratic.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional

from guard.drivers import canonical_type, driver_for
from guard.elapsed import Ages, age
from guard.history import Held, History, IncarnationRecord, PoolRecord, RestartRecord
from guard.model import CLOCK_SLACK_S, Finding, LogCursor, LogEvent, Snapshot

KEEP_INCARNATIONS = 10
KEEP_RESTARTS = 50
FORGET_REMOVED_AFTER_S = 30 * 86400

DETACHED_STATES = {"maintenance", "prepareformaintenance", "errorinmaintenance", "removed"}
"""Pool states in which the management server does not send the pool to a connecting
agent, so listing them proves nothing about what a new incarnation holds."""

SECONDARY_CAPABLE = {"NetworkFilesystem", "Filesystem"}
"""Types the agent also uses for secondary-storage and ISO mounts, named by uuid like
primary pools: absence from the primary pool listing proves nothing for them unless the
management server listed them as primary before."""

HOLD_KINDS = {"pool-add", "linstor-pool", "heartbeat-failure"}
RECONNECT_KINDS = {"agent-connected"}
"""Agent.reconnect() logs `Connected to the host`; a first connect does not (Agent.java):
each such line means the agent was cut off from the server just before."""
DROP_KINDS = {"pool-remove", "pool-delete-command"}
STORPOOL_LOG_NAME = "storpool-agent.log"
LISTING = "management server no longer lists it"
LEFT_SCOPE = "the management server has it outside this host's scope now"
FROM_LISTING = (LISTING, LEFT_SCOPE)
"""Removals seen in a listing: one listing is reported, a second confirms before acting."""


def detached(state: str) -> bool:
    return state.lower() in DETACHED_STATES


class _Work:
    """The mutable working copy of one record() call."""

    def __init__(self, history: History, snap: Snapshot) -> None:
        self.snap = snap
        self.pools: dict[str, PoolRecord] = {p.uuid: p for p in history.pools}
        self.incarnations = {i.key: i for i in history.incarnations}
        self.current: Optional[IncarnationRecord] = None
        self.held: dict[str, Held] = {}
        self.dropped: list[str] = []
        self.server_version = history.server_version
        self.heartbeats: set[str] = set()
        self.last_disconnected_at = history.last_disconnected_at
        if snap.agent is not None:
            inc = snap.agent.incarnation
            current = self.incarnations.get(inc.key) or self._before_ticks(inc.pid, inc.start_time)
            current = current or IncarnationRecord(inc.pid, inc.start_time, snap.now)
            self.incarnations.pop(current.key, None)
            self.current = replace(current, start_ticks=current.start_ticks or inc.start_ticks,
                                   agent_version=current.agent_version or snap.agent_version)
            self.held = {h.uuid: h for h in self.current.held}
            self.dropped = list(self.current.dropped)

    def _before_ticks(self, pid: int, start_time: float) -> Optional[IncarnationRecord]:
        """The same JVM recorded by a guard that did not know start ticks yet."""
        return next((i for i in self.incarnations.values() if not i.start_ticks and i.pid == pid
                     and abs(i.start_time - start_time) <= CLOCK_SLACK_S), None)

    def pool(self, uuid: str) -> PoolRecord:
        return self.pools.get(uuid) or PoolRecord(uuid=uuid)

    def identify(self, uuid: str, pool_type: str, name: str = "", url: str = "") -> PoolRecord:
        record = self.pool(uuid)
        record = replace(
            record,
            type=canonical_type(pool_type) if pool_type else record.type,
            name=name or record.name,
            url=url or record.url,
        )
        self.pools[uuid] = record
        return record

    def hold(self, uuid: str, since: float, via: str) -> None:
        if uuid in self.dropped:
            self.dropped.remove(uuid)
            self.held.pop(uuid, None)
        self.held.setdefault(uuid, Held(uuid, since, via))

    def disconnected(self, at: float) -> None:
        if self.last_disconnected_at is None or at > self.last_disconnected_at:
            self.last_disconnected_at = at

    def connected(self) -> bool:
        host = self.snap.management_host
        return (host is not None and host.state == "Up" and self.snap.agent is not None
                and self.snap.agent.connected is not False)


def _record_management(work: _Work) -> None:
    snap = work.snap
    if not snap.source_ok("management"):
        return
    if snap.management_host is not None and snap.management_host.server_version:
        work.server_version = snap.management_host.server_version
    connected = work.connected()
    if not connected:
        work.disconnected(snap.now)
    for pool in snap.management_pools:
        before = work.pools.get(pool.uuid)
        record = work.identify(pool.uuid, pool.type, pool.name, pool.url)
        maintenance_at = record.maintenance_at
        if not detached(pool.state):
            maintenance_at = None
        elif maintenance_at is None and connected and before is not None and \
                before.last_listed is not None and not detached(before.last_state):
            maintenance_at = snap.now
        work.pools[pool.uuid] = replace(
            record,
            first_listed=record.first_listed or snap.now,
            last_listed=snap.now,
            last_state=pool.state,
            removed_at=None,
            removed_via="",
            removed_while_connected=False,
            removed_server_version="",
            absence_confirmed=False,
            maintenance_at=maintenance_at,
        )
        if connected and work.current is not None and not detached(pool.state):
            work.hold(pool.uuid, snap.now, "management server listing (host Up)")


def _record_log(work: _Work) -> None:
    mine = {id(e) for e in work.snap.current_events()}
    for event in work.snap.log_events:
        if event.kind in RECONNECT_KINDS and event.ts is not None and id(event) in mine:
            work.disconnected(event.ts)
        if not event.pool_uuid:
            continue
        record = work.identify(event.pool_uuid, event.pool_type, url=event.url)
        if event.kind in DROP_KINDS and event.ts is not None and record.removed_at is None:
            work.pools[record.uuid] = replace(record, removed_at=event.ts, removed_via="agent log")
        if work.current is None or id(event) not in mine or event.ts is None:
            continue
        if event.kind == "heartbeat-failure":
            work.heartbeats.add(event.pool_uuid)
        if event.kind in HOLD_KINDS:
            work.hold(event.pool_uuid, event.ts, _told_by(event))
            record = work.pools[event.pool_uuid]
            if event.kind == "pool-add" and record.removed_at is not None and event.ts > record.removed_at:
                work.pools[record.uuid] = replace(record, removed_at=None, removed_via="")
        elif event.kind in DROP_KINDS and event.pool_uuid not in work.dropped:
            work.dropped.append(event.pool_uuid)


def _told_by(event: LogEvent) -> str:
    """Which log said so: StorPool's adaptor keeps its own (guard/sources/storpoollog.py)."""
    if event.kind == "pool-add" and event.adaptor and event.adaptor == driver_for(event.pool_type).adaptor:
        return f"{STORPOOL_LOG_NAME}: {event.detail}"
    return f"agent log ({event.kind})"


def _record_libvirt(work: _Work) -> None:
    if work.current is None:
        return
    for pool in work.snap.libvirt_pools:
        work.hold(pool.uuid, work.snap.now, "defined in libvirt")


def _record_removals(work: _Work) -> None:
    """A pool the management server no longer lists has been removed (or left scope).
    Whether the host was connected is judged over the whole gap since the pool was last
    listed: a partition in between may have kept the delete command from it."""
    snap = work.snap
    if not snap.source_ok("management"):
        return
    listed = {p.uuid for p in snap.management_pools}
    connected = work.connected()
    seen = snap.listed_at if snap.listed_at is not None else snap.now
    for uuid in sorted((set(work.pools) | set(work.held)) - listed):
        record = work.pool(uuid)
        if record.removed_at is not None:
            # Another listing than the one that saw it go; not a later time, which a wall
            # clock stepped back would hold off for as long as the step.
            another = seen != record.removed_at and record.removed_via in FROM_LISTING
            if another and not record.absence_confirmed:
                work.pools[uuid] = replace(record, absence_confirmed=True)
            continue
        # Only primary pools are in the HA monitor: a heartbeat line rules out a secondary mount.
        if record.first_listed is None and uuid not in work.heartbeats and (
                not record.type or record.type in SECONDARY_CAPABLE):
            continue
        gap_clean = record.last_listed is not None and (
            work.last_disconnected_at is None or work.last_disconnected_at < record.last_listed)
        # A scope change sends the host nothing: only a deletion can have reached it.
        deleted = uuid not in snap.management_elsewhere
        work.pools[uuid] = replace(record, removed_at=seen, removed_via=LISTING if deleted else LEFT_SCOPE,
                                   removed_while_connected=connected and gap_clean and deleted,
                                   removed_server_version=work.server_version)


def _record_probes(work: _Work) -> None:
    for uuid, probe in work.snap.probes:
        if probe.down and uuid in work.pools:
            work.pools[uuid] = replace(work.pools[uuid], backend_down_at=work.snap.now)


def _keep(pool: PoolRecord, held_now: set[str], now: float) -> bool:
    """Pools only the log ever named (the agent mounts secondary storage and ISOs as
    uuid-named NFS pools, hundreds over months) are kept only while the running agent
    holds them; the log names them again if it matters."""
    if pool.uuid in held_now:
        return True
    if pool.removed_at is not None:
        return now - pool.removed_at < FORGET_REMOVED_AFTER_S and pool.first_listed is not None
    return pool.first_listed is not None


def record(history: History, snap: Snapshot) -> History:
    """The history after `snap`; calling it twice with the same snapshot changes nothing."""
    work = _Work(history, snap)
    _record_management(work)
    _record_log(work)
    _record_libvirt(work)
    _record_removals(work)
    _record_probes(work)
    incarnations = dict(work.incarnations)
    if work.current is not None:
        current = replace(work.current, held=tuple(work.held.values()), dropped=tuple(work.dropped))
        incarnations[current.key] = current
    kept_incarnations = sorted(incarnations.values(), key=lambda i: i.first_seen)[-KEEP_INCARNATIONS:]
    held_now = set(work.held) if work.current is not None else set()
    pools = tuple(sorted((p for p in work.pools.values() if _keep(p, held_now, snap.now)),
                         key=lambda p: p.uuid))
    cursor = snap.log_cursor if snap.log_cursor is not None else history.log_cursor
    return replace(history, pools=pools, incarnations=tuple(kept_incarnations),
                   server_version=work.server_version, last_disconnected_at=work.last_disconnected_at,
                   log_cursor=cursor)


# ------------------------------------------------------- restarts, the breaker, writers

def record_restart(history: History, record: RestartRecord) -> History:
    restarts = (tuple(r for r in history.restarts if r.at != record.at) + (record,))[-KEEP_RESTARTS:]
    return replace(history, restarts=restarts)


def open_breaker(history: History, now: float, reason: str) -> History:
    return replace(history, breaker_open_since=now, breaker_reason=reason)


def close_breaker(history: History) -> History:
    return replace(history, breaker_open_since=None, breaker_reason="")


def judge_last_restart(
    history: History, findings: list[Finding], now: float, settle: float, ages: Optional[Ages] = None
) -> History:
    """A verified restart that left the same trouble behind did not help: open the breaker
    so the guard stops restarting an agent it cannot fix. Close it once the condition is
    gone, since then the next trouble is a new one. `ages` times the settle in real time
    (guard/elapsed.py)."""
    verified = [r for r in history.restarts if r.outcome == "verified"]
    if verified and age(verified[-1], now, ages) >= settle:
        last = verified[-1]
        left = [f for f in findings if f.kind in ("stale-pool", "stop-failure")
                and (f.pool_uuid in last.pools or f.kind == "stop-failure")]
        if left:
            reason = ("restart at " + time.strftime("%H:%M:%S", time.localtime(last.at)) +
                      f" did not clear {left[0].kind} {left[0].pool_uuid or left[0].pool_type}")
            history = record_restart(history, replace(last, outcome="did-not-help", detail=reason))
            return open_breaker(history, now, reason)
        history = record_restart(history, replace(last, outcome="helped"))
    if history.breaker_open_since is not None and not any(
            f.restart_helps or f.kind == "stop-failure" for f in findings):
        history = close_breaker(history)
    return history


def merge(disk: History, mine: History, base: History) -> History:
    """What to write when another process (the daemon, `check`, an operator's
    `restart-agent`) may have saved since we loaded `base`: our observations, but every
    restart anyone recorded (rate limits must never forget one), and the breaker as the
    other writer left it if it changed it."""
    restarts = {r.at: r for r in disk.restarts}
    restarts.update({r.at: r for r in mine.restarts})
    breaker = mine
    if (disk.breaker_open_since, disk.breaker_reason) != (base.breaker_open_since, base.breaker_reason):
        breaker = disk
    return replace(
        mine,
        restarts=tuple(sorted(restarts.values(), key=lambda r: r.at)),
        breaker_open_since=breaker.breaker_open_since,
        breaker_reason=breaker.breaker_reason,
        log_cursor=further(disk.log_cursor, mine.log_cursor),
    )


def further(disk: Optional[LogCursor], mine: Optional[LogCursor]) -> Optional[LogCursor]:
    """The agent log cursor that has read more of the same file; either is whole and
    right (its events are exactly its lines'), so the choice only saves the next reader
    some lines."""
    if mine is None:
        return disk
    if disk is None or (disk.device, disk.inode, disk.path) != (mine.device, mine.inode, mine.path):
        return mine
    return disk if disk.offset > mine.offset else mine
