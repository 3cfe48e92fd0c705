"""What the guard remembers between runs: pools it saw listed, and what each agent
incarnation was seen to hold.

The agent's caches cannot be read, so "held" and "removed" are conclusions drawn over
time; losing them would blind the guard to a pool deleted between two checks. These are
plain frozen records so the code that updates them (guard.record) stays pure.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Optional

from guard.model import LogCursor, LogEvent, incarnation_key

SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
"""Versions 2 to 4 only added fields with defaults: an older file reads as it is."""


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
    removed_while_connected: bool = False
    """The host was Up and its agent connected when the pool was last listed, when it was
    seen gone, and at every look in between (no disconnect in the gap, none in the agent
    log): a management server that sends DeleteStoragePoolCommand on deletion reached it."""
    removed_server_version: str = ""
    """The management server's version when the removal was recorded: the inference that
    it sent DeleteStoragePoolCommand rests on it, so it is kept with the record instead of
    being read again (a failed listCapabilities must not change the verdict)."""
    absence_confirmed: bool = False
    """A later listing missed the pool too. One short answer from the server is reported
    but not acted on: a restart needs the absence confirmed."""
    maintenance_at: Optional[float] = None
    backend_down_at: Optional[float] = None
    """The last time a probe of this pool's backend found it down: a logged connection
    failure near it may be this pool's outage rather than a stale entry's."""


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
    agent_version: str = ""
    """The version this JVM runs, learned once: a later failed read must not change it."""
    start_ticks: int = 0
    """Clock ticks after boot when the JVM started (/proc/PID/stat): unlike the start
    time, it does not move when the wall clock is stepped."""

    @property
    def key(self) -> str:
        return incarnation_key(self.pid, self.start_time, self.start_ticks)

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
    boot_id: str = ""
    """The kernel's boot id when the restart was asked for, and the boot clock then
    (seconds since boot, suspend included): while the host runs on, how long ago the
    restart was is read from them, whatever the wall clock was set to since and whichever
    process asks (guard/elapsed.py)."""
    boot_s: Optional[float] = None


@dataclass(frozen=True)
class History:
    pools: tuple[PoolRecord, ...] = ()
    incarnations: tuple[IncarnationRecord, ...] = ()
    restarts: tuple[RestartRecord, ...] = ()
    breaker_open_since: Optional[float] = None
    breaker_reason: str = ""
    server_version: str = ""
    """The management server's version as last read successfully."""
    last_disconnected_at: Optional[float] = None
    """The last moment the host was seen not Up, the agent not connected, or the agent
    log showed a reconnect or a restart: inferences about what the server reached this
    agent with hold only over gaps after it."""
    log_cursor: Optional[LogCursor] = None
    """Where the agent log was last read to, by `check` or the daemon."""

    def pool(self, uuid: str) -> Optional[PoolRecord]:
        return next((p for p in self.pools if p.uuid == uuid), None)

    def incarnation(self, key: str) -> Optional[IncarnationRecord]:
        return next((i for i in self.incarnations if i.key == key), None)


def to_json(history: History) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "restarts": [dict(vars(r), pools=list(r.pools)) for r in history.restarts],
        "breaker_open_since": history.breaker_open_since,
        "breaker_reason": history.breaker_reason,
        "server_version": history.server_version,
        "last_disconnected_at": history.last_disconnected_at,
        "pools": [vars(p) for p in sorted(history.pools, key=lambda p: p.uuid)],
        "log_cursor": None if history.log_cursor is None else dict(
            vars(history.log_cursor), events=[vars(e) for e in history.log_cursor.events]),
        "incarnations": [
            {
                "pid": i.pid,
                "start_time": i.start_time,
                "first_seen": i.first_seen,
                "held": [vars(h) for h in i.held],
                "dropped": list(i.dropped),
                "agent_version": i.agent_version,
                "start_ticks": i.start_ticks,
            }
            for i in history.incarnations
        ],
    }


def _number(value: Any, where: str) -> float:
    # bool is an int to Python, never a time to us
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"malformed history: {where} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"malformed history: {where} is out of range") from None


def _check(annotation: str, value: Any, where: str) -> Any:
    """One field's value, checked against its annotation (a string, as written in the
    dataclass: `from __future__ import annotations`)."""
    if annotation.startswith("Optional[") and annotation.endswith("]"):
        return None if value is None else _check(annotation[len("Optional["):-1], value, where)
    if annotation == "str":
        if not isinstance(value, str):
            raise ValueError(f"malformed history: {where} is not a string")
        return value
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"malformed history: {where} is not true or false")
        return value
    if annotation == "float":
        return _number(value, where)
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"malformed history: {where} is not an integer")
        return value
    if annotation.startswith("tuple[") and annotation.endswith(", ...]"):
        if not isinstance(value, list):
            raise ValueError(f"malformed history: {where} is not a list")
        item = annotation[len("tuple["):-len(", ...]")]
        return tuple(_check(item, v, f"{where}[{n}]") for n, v in enumerate(value))
    record = _RECORDS.get(annotation)
    if record is None:  # a field type this reader does not know: a bug here, not in the file
        raise TypeError(f"history field {where} has unsupported type {annotation}")
    return _record(record, value, where)


def _record(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"malformed history: {where} is not an object")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"malformed history: {where} has unknown field {unknown[0]!r}")
    kwargs = {}
    for name, field in known.items():
        if name in value:
            kwargs[name] = _check(str(field.type), value[name], f"{where}.{name}")
        elif field.default is MISSING and field.default_factory is MISSING:
            raise ValueError(f"malformed history: {where} has no {name}")
    return cls(**kwargs)


_RECORDS: dict[str, type] = {
    cls.__name__: cls for cls in (PoolRecord, Held, IncarnationRecord, RestartRecord, LogCursor, LogEvent)
}


def _records(cls: type, value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ValueError(f"malformed history: {where} is not a list")
    return tuple(_record(cls, v, f"{where}[{n}]") for n, v in enumerate(value))


def from_json(data: Any) -> History:
    """Strict: any deviation, a missing or unknown field or one of the wrong type, raises
    ValueError, and the caller moves the file aside."""
    if not isinstance(data, dict) or data.get("version") not in READABLE_VERSIONS:
        raise ValueError("not a cloudstack-guard history of a known version")
    for required in ("pools", "incarnations"):
        if required not in data:
            raise ValueError(f"malformed history: no {required}")
    pools = _records(PoolRecord, data["pools"], "pools")
    incarnations = _records(IncarnationRecord, data["incarnations"], "incarnations")
    restarts = _records(RestartRecord, data.get("restarts", []), "restarts")
    breaker = _check("Optional[float]", data.get("breaker_open_since"), "breaker_open_since")
    breaker_reason = _check("str", data.get("breaker_reason", ""), "breaker_reason")
    return History(
        pools, incarnations, restarts, breaker, breaker_reason,
        server_version=_check("str", data.get("server_version", ""), "server_version"),
        last_disconnected_at=_check("Optional[float]", data.get("last_disconnected_at"),
                                    "last_disconnected_at"),
        log_cursor=_check("Optional[LogCursor]", data.get("log_cursor"), "log_cursor"),
    )
