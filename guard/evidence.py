"""Small pure helpers the judging modules share: how old a fact is, in words; a version
string as numbers; what a probe said, as evidence."""

from __future__ import annotations

from typing import Optional

from guard.model import Evidence, LogEvent, Snapshot

RECENT_S = 3600.0
"""A stop failure or heartbeat warning older than this, with no cause visible now, is
history for `analyze`, not an alarm for monitoring."""


def when(ts: Optional[float], now: float) -> str:
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


def probe_evidence(snap: Snapshot, uuid: str, url: str) -> list[Evidence]:
    probe = snap.probe_for(uuid)
    if probe is None:
        return [Evidence("probe", "where its storage answers is unknown, not probed")] if not url else []
    where = f" (from {probe.source})" if probe.source else ""
    return [Evidence(f"probe {probe.backend}", f"{probe.target}{where}: {probe.status} ({probe.detail})")]


def recent_heartbeat_failures(snap: Snapshot, uuid: str, since: float) -> list[LogEvent]:
    """The HA monitor's failed tries for one pool, logged by the running agent after
    `since` and within the last hour."""
    return [e for e in snap.current_events() if e.kind == "heartbeat-failure" and e.pool_uuid == uuid
            and e.ts is not None and e.ts > since and snap.now - e.ts < RECENT_S]
