"""Prometheus metrics: the text exposition format, a node_exporter textfile written
atomically, and a small HTTP /metrics listener on the daemon's loop.

Written with the standard library (the format is a few lines of text) so hosts need no
extra package. Names follow Prometheus conventions: a cloudstack_guard_ prefix, units in
the name, _total for counters, one label set per series.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Optional

from guard.atomic import write_atomic
from guard.evaluate import overall
from guard.history import History
from guard.model import Finding, Snapshot

PREFIX = "cloudstack_guard_"


@dataclass
class Counters:
    """Counts since the daemon started; Prometheus handles the reset of a restart."""

    evaluations: int = 0
    restarts: collections.Counter = field(default_factory=collections.Counter)
    refusals: collections.Counter = field(default_factory=collections.Counter)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, str], float]]) -> None:
        self.lines.append(f"# HELP {PREFIX}{name} {help_text}")
        self.lines.append(f"# TYPE {PREFIX}{name} {kind}")
        for labels, value in samples:
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{PREFIX}{name}{'{' + rendered + '}' if rendered else ''} {value:g}")


def exposition(findings: list[Finding], snap: Snapshot, history: History, counters: Counters,
               evaluated_at: float) -> str:
    text = _Text()
    text.metric("status", "gauge", "Overall state as the check reports it: 0 OK, 1 WARNING, "
                "2 CRITICAL, 3 UNKNOWN.", [({}, int(overall(findings)))])
    by_kind = collections.Counter((f.kind, f.severity.name) for f in findings)
    text.metric("findings", "gauge", "Current findings by kind and severity.",
                [({"kind": k, "severity": s}, n) for (k, s), n in sorted(by_kind.items())])
    probes = sorted(snap.probes)
    text.metric("probe_up", "gauge", "1 when the pool's storage control plane answered healthy.",
                [({"backend": p.backend, "pool": uuid}, 1 if p.reachable else 0) for uuid, p in probes])
    text.metric("probe_result", "gauge", "The probe's classification, one series set to 1.",
                [({"backend": p.backend, "pool": uuid, "result": p.status}, 1) for uuid, p in probes])
    text.metric("probe_duration_seconds", "gauge", "How long the last probe took.",
                [({"backend": p.backend, "pool": uuid}, round(p.latency_s, 6)) for uuid, p in probes])
    agent = snap.agent
    text.metric("agent_up", "gauge", "1 when a cloudstack-agent process runs.", [({}, 1 if agent else 0)])
    if agent is not None:
        text.metric("agent_start_time_seconds", "gauge", "Start of the running agent incarnation, "
                    "seconds since the epoch.", [({}, round(agent.incarnation.start_time, 3))])
        text.metric("agent_connected", "gauge", "1 connected to its management server, 0 not, "
                    "-1 unknown.", [({}, {True: 1, False: 0, None: -1}[agent.connected])])
    text.metric("restarts_total", "counter", "Agent restarts the guard carried out, by outcome.",
                [({"outcome": o}, n) for o, n in sorted(counters.restarts.items())])
    text.metric("restart_refusals_total", "counter", "Restart decisions refused, by the first "
                "gate that refused (counted when the decision changes).",
                [({"gate": g}, n) for g, n in sorted(counters.refusals.items())])
    text.metric("circuit_breaker_open", "gauge", "1 while automatic restarts are stopped.",
                [({}, 1 if history.breaker_open_since is not None else 0)])
    text.metric("source_up", "gauge", "1 when the evidence source could be read.",
                [({"source": s.name}, 1 if s.ok else 0) for s in snap.sources if s.configured])
    text.metric("last_evaluation_timestamp_seconds", "gauge", "When the daemon last evaluated.",
                [({}, round(evaluated_at, 3))])
    text.metric("evaluations_total", "counter", "Evaluations since the daemon started.",
                [({}, counters.evaluations)])
    return "\n".join(text.lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Readers (node_exporter) never see half a file (guard/atomic.py)."""
    write_atomic(path, text, mode=0o644)


class MetricsServer:
    """GET /metrics on the daemon's own loop; anything else is 404."""

    def __init__(self) -> None:
        self.text = ""
        self.server: Optional[asyncio.AbstractServer] = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            ok = len(line) >= 2 and line[0] in ("GET", "HEAD") and line[1].split("?")[0] == "/metrics"
            body = self.text.encode() if ok else b"not found\n"
            status = "200 OK" if ok else "404 Not Found"
            head = (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            writer.write(head + (body if line and line[0] != "HEAD" else b""))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
