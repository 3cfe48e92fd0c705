"""What the guard remembers between runs: pools it saw listed, and what each agent
incarnation was seen to hold.

The agent's caches cannot be read, so "held" and "removed" are conclusions drawn over
time; losing them would blind the guard to a pool deleted between two checks. These are
plain frozen records so the code that updates them (guard.record) stays pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PoolRecord:
    uuid: str
    type: str = ""
    name: str = ""
    url: str = ""
    first_listed: Optional[float] = None
    last_listed: Optional[float] = None
    last_state: str = ""
    removed_at: Optional[float] = None
    removed_via: str = ""
    maintenance_at: Optional[float] = None


@dataclass(frozen=True)
class Held:
    uuid: str
    since: float
    via: str


@dataclass(frozen=True)
class IncarnationRecord:
    pid: int
    start_time: float
    first_seen: float
    held: tuple[Held, ...] = ()
    dropped: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.pid}:{self.start_time:.2f}"

    def holds(self, uuid: str) -> Optional[Held]:
        return next((h for h in self.held if h.uuid == uuid), None)


@dataclass(frozen=True)
class RestartRecord:
    """One agent restart the guard asked for, and what became of it."""

    at: float
    reason: str
    old_pid: int
    pools: tuple[str, ...] = ()
    outcome: str = "requested"
    detail: str = ""
    new_pid: Optional[int] = None


@dataclass(frozen=True)
class History:
    pools: tuple[PoolRecord, ...] = ()
    incarnations: tuple[IncarnationRecord, ...] = ()
    restarts: tuple[RestartRecord, ...] = ()
    breaker_open_since: Optional[float] = None
    breaker_reason: str = ""

    def pool(self, uuid: str) -> Optional[PoolRecord]:
        return next((p for p in self.pools if p.uuid == uuid), None)

    def incarnation(self, key: str) -> Optional[IncarnationRecord]:
        return next((i for i in self.incarnations if i.key == key), None)

    def with_pool(self, record: PoolRecord) -> History:
        others = tuple(p for p in self.pools if p.uuid != record.uuid)
        return replace(self, pools=others + (record,))

    def with_incarnation(self, record: IncarnationRecord) -> History:
        others = tuple(i for i in self.incarnations if i.key != record.key)
        return replace(self, incarnations=others + (record,))


def to_json(history: History) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "restarts": [dict(vars(r), pools=list(r.pools)) for r in history.restarts],
        "breaker_open_since": history.breaker_open_since,
        "breaker_reason": history.breaker_reason,
        "pools": [vars(p) for p in sorted(history.pools, key=lambda p: p.uuid)],
        "incarnations": [
            {
                "pid": i.pid,
                "start_time": i.start_time,
                "first_seen": i.first_seen,
                "held": [vars(h) for h in i.held],
                "dropped": list(i.dropped),
            }
            for i in history.incarnations
        ],
    }


def from_json(data: Any) -> History:
    """Strict: any deviation raises ValueError, and the caller moves the file aside."""
    if not isinstance(data, dict) or data.get("version") != SCHEMA_VERSION:
        raise ValueError("not a cloudstack-guard history of a known version")
    try:
        pools = tuple(PoolRecord(**p) for p in data["pools"])
        incarnations = tuple(
            IncarnationRecord(
                pid=int(i["pid"]),
                start_time=float(i["start_time"]),
                first_seen=float(i["first_seen"]),
                held=tuple(Held(**h) for h in i["held"]),
                dropped=tuple(str(u) for u in i["dropped"]),
            )
            for i in data["incarnations"]
        )
        restarts = tuple(
            RestartRecord(**dict(r, pools=tuple(str(u) for u in r.get("pools", ()))))
            for r in data.get("restarts", ())
        )
        breaker = data.get("breaker_open_since")
        breaker = None if breaker is None else float(breaker)
        breaker_reason = str(data.get("breaker_reason", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed history: {exc}") from None
    for pool in pools:
        if not isinstance(pool.uuid, str):
            raise ValueError("malformed history: pool uuid is not a string")
    return History(pools, incarnations, restarts, breaker, breaker_reason)
