"""Offline reading of agent logs from an incident: a timeline, and a judgement of the
last agent incarnation the logs show.

Logs from busy hosts run to gigabytes, so events stream through a bounded accumulator:
memory stays flat whatever the input size. Repeats (a heartbeat warning every minute)
fold into one timeline entry with a count.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any, Optional

from guard.drivers import adaptor_pool_type
from guard.failures import connection_lost, is_adaptor_backend_failure, is_stop_failure
from guard.model import Evidence, Finding, LogEvent, Severity

TIMELINE_KINDS = {
    "agent-start", "agent-stop", "agent-connected", "pool-add", "pool-remove",
    "pool-delete-command", "storage-failure", "heartbeat-failure", "linstor-foreign-path",
}
MAX_TIMELINE = 5000
MAX_KEPT_FAILURES = 50


def describe(event: LogEvent) -> str:
    if event.kind == "pool-add":
        url = f" controller {event.url}" if event.url else ""
        return f"pool {event.pool_uuid} ({event.pool_type or 'type not logged'}) added{url}"
    if event.kind in ("pool-remove", "pool-delete-command"):
        return f"pool {event.pool_uuid} ({event.pool_type or 'type not logged'}) deleted by the agent"
    if event.kind == "storage-failure":
        op = event.operation or "operation not in the excerpt"
        return f"{event.adaptor or 'storage'} failure during {op}: {event.exception}"
    if event.kind == "heartbeat-failure":
        return f"HA heartbeat for pool {event.pool_uuid} failed: {event.detail}"
    if event.kind == "agent-start":
        return "agent started"
    if event.kind == "agent-stop":
        return f"agent stopping: {event.detail}"
    if event.kind == "agent-connected":
        return f"agent connected: {event.detail}"
    if event.kind == "linstor-foreign-path":
        return f"LINSTOR adaptor asked about a foreign path {event.detail} (it holds a pool)"
    return event.detail or event.kind


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


class Analysis:
    """Feed events in log order; ask for the timeline and findings at the end."""

    def __init__(self) -> None:
        self.timeline: collections.deque = collections.deque(maxlen=MAX_TIMELINE)
        self.dropped_entries = 0
        self.events = 0
        self.incarnations = 0
        self._reset_incarnation()

    def _reset_incarnation(self) -> None:
        self.version = ""
        self.failures: collections.deque = collections.deque(maxlen=MAX_KEPT_FAILURES)
        self.failure_count: collections.Counter = collections.Counter()
        self.heartbeats: dict[str, LogEvent] = {}
        self.backend_failures: dict[str, list[LogEvent]] = {}
        self.pools_added: dict[str, LogEvent] = {}

    def _add_entry(self, event: LogEvent) -> None:
        key = (event.kind, event.pool_uuid, event.adaptor, event.exception, event.detail)
        if self.timeline and self.timeline[-1]["_key"] == key:
            last = self.timeline[-1]
            last["repeats"] += 1
            last["last_time"] = _iso(event.ts)
            return
        if len(self.timeline) == self.timeline.maxlen:
            self.dropped_entries += 1
        self.timeline.append({
            "_key": key, "time": _iso(event.ts), "last_time": None, "repeats": 1,
            "kind": event.kind, "file": event.file, "line": event.line,
            "pool_uuid": event.pool_uuid, "pool_type": event.pool_type, "adaptor": event.adaptor,
            "operation": event.operation, "text": describe(event),
        })

    def feed(self, event: LogEvent) -> None:
        self.events += 1
        if event.kind == "agent-start":
            self.incarnations += 1
            self._reset_incarnation()
        elif event.kind == "agent-version":
            self.version = event.detail
        elif is_stop_failure(event):
            self.failures.append(event)
            self.failure_count[event.adaptor] += 1
        elif is_adaptor_backend_failure(event):
            kept = self.backend_failures.setdefault(event.adaptor, [])
            kept[:] = (kept + [event])[-MAX_KEPT_FAILURES:]
        elif event.kind == "heartbeat-failure":
            self.heartbeats[event.pool_uuid] = event
        elif event.kind == "pool-add":
            self.pools_added[event.pool_uuid] = event
        elif event.kind in ("pool-remove", "pool-delete-command"):
            self.pools_added.pop(event.pool_uuid, None)
        if event.kind in TIMELINE_KINDS:
            self._add_entry(event)

    def feed_all(self, events: Iterable[LogEvent]) -> Analysis:
        for event in events:
            self.feed(event)
        return self

    def timeline_json(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in entry.items() if k != "_key"} for entry in self.timeline]

    def findings(self) -> list[Finding]:
        """Judge the last incarnation: what its log says the host was suffering from."""
        findings = []
        for adaptor, count in sorted(self.failure_count.items()):
            last = [e for e in self.failures if e.adaptor == adaptor][-1]
            evidence = [Evidence("agent-log", f"{count} failure(s) in {adaptor} during disk "
                                 f"cleanup (VM stop/migrate), last at {_iso(last.ts) or 'no timestamp'} "
                                 f"({last.file}:{last.line}): {last.exception}")]
            if last.detail:
                evidence.append(Evidence("agent-log", last.detail))
            findings.append(Finding(
                kind="stop-failure", severity=Severity.CRITICAL, evidence=tuple(evidence),
                action=("VM stops on this host fail inside the storage adaptor. Run "
                        "`cloudstack-guard check` on the host: if the adaptor still holds a "
                        "deleted pool, restarting cloudstack-agent clears it; if the pool is "
                        "live and its backend is down, fix the backend"),
                pool_type=adaptor_pool_type(adaptor), extra=(("adaptor", adaptor),),
            ))
        for adaptor, events in sorted(self.backend_failures.items()):
            findings.append(_backend_failure_finding(adaptor, events))
        for uuid, event in sorted(self.heartbeats.items()):
            stopping = "stopping cloudstack-agent" in event.detail
            findings.append(Finding(
                kind="backend-unreachable",
                severity=Severity.CRITICAL if stopping else Severity.WARNING,
                evidence=(Evidence("agent-log", f"HA heartbeat for pool {uuid} failing "
                                   f"({event.file}:{event.line}): {event.detail}"),),
                action=("the HA monitor cannot write its heartbeat to this pool; "
                        "check the pool's storage from this host"),
                pool_uuid=uuid, pool_type=event.pool_type,
            ))
        return sorted(findings, key=lambda f: -f.severity.rank)


def _backend_failure_finding(adaptor: str, events: list[LogEvent]) -> Finding:
    last = events[-1]
    lost = connection_lost(last)
    evidence = [Evidence("agent-log", f"{adaptor} could not talk to its backend "
                         f"({len(events)} time(s) in the last agent run, last at "
                         f"{_iso(last.ts) or 'no timestamp'}, {last.file}:{last.line}): {last.exception}")]
    if last.detail:
        evidence.append(Evidence("agent-log", last.detail))
    return Finding(
        kind="backend-unreachable",
        severity=Severity.CRITICAL if lost else Severity.WARNING,
        evidence=tuple(evidence),
        action=("while the backend refuses or times out, every VM stop on this host fails in "
                "this adaptor. Run `cloudstack-guard check` on the host: a deleted pool still "
                "held by the agent is cleared by restarting cloudstack-agent; a live pool's "
                "backend must be fixed" if lost else
                "the adaptor's calls to its backend fail (see the exception); check the "
                "backend's address, certificates and credentials"),
        pool_type=adaptor_pool_type(adaptor), extra=(("adaptor", adaptor),),
    )
