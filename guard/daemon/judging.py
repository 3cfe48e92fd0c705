"""The judging loop: every change marks the picture dirty; it is then judged with the
same pure functions `check` uses (guard/judge.py), findings are logged once when they
appear and once when they clear, the history and the metrics are written, and a restart
decision (guard.policy.decide on the gates read by guard/gates.py) is carried out by
guard/remediate.py."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

from guard import notify
from guard import store as history_store
from guard.backoff import Backoff
from guard.elapsed import RestartClock, boot_clock
from guard.evaluate import overall
from guard.gates import read_gates
from guard.history import History
from guard.judge import judge
from guard.metrics import Counters, MetricsServer, exposition, write_textfile
from guard.model import HEARTBEAT_RETRY_SLEEP_S, Finding, LogCursor, Snapshot, SourceStatus
from guard.policy import Decision, decide, unconfirmed
from guard.remediate import carry_out

from .runtime import Runtime
from .state import CURSOR_SAVE_S, State

COALESCE_S = 0.005
"""Changes arriving together (a pool event and the listing it triggers) are judged once."""
RETRY_REFUSED_S = 2.0
RETRY_REFUSED_FLOOR_S = 1.0
"""A refusal is looked at again no slower than the HA monitor's retry sleep (the agent's
kvm.heartbeat.update.retry.sleep, Snapshot.heartbeat_retry_s): work in flight that ends
while a heartbeat fails must leave time to restart before its last try. Never faster
than this, jitter included, whatever the setting: each look reads the gates (libvirt's
domain jobs, the management server's cluster listing)."""


@dataclass(frozen=True)
class LastDecision:
    """The restart decision last logged: the same refusal read again is not logged again."""

    act: bool
    refused_gate: str
    refusal: str
    pools: tuple[str, ...]


def _where(cursor: LogCursor) -> tuple[int, int, int]:
    return (cursor.device, cursor.inode, cursor.offset)


def finding_key(finding: Finding) -> tuple[str, ...]:
    return (finding.kind, finding.pool_uuid, finding.pool_type, dict(finding.extra).get("source", ""),
            dict(finding.extra).get("adaptor", ""))


class Judging:
    def __init__(self, rt: Runtime, state: State) -> None:
        self.rt = rt
        self.state = state
        self.findings: dict[tuple[str, ...], Finding] = {}
        self.last_decision: Optional[LastDecision] = None
        self.restarting = False
        self.last_status = ""
        self.last_evaluation = 0.0
        self.counters = Counters()
        self.metrics_server = MetricsServer()
        self.textfile_problem = ""
        self.refused_backoff = Backoff(RETRY_REFUSED_S, HEARTBEAT_RETRY_SLEEP_S)
        self.clock = RestartClock()
        self.cursor_saved: tuple[int, int, int] = (0, 0, -1)
        self.cursor_saved_at = -math.inf

    async def loop(self, first_full: Callable[[], None]) -> None:
        rt = self.rt
        while not rt.stopping.is_set():
            await rt.dirty.wait()
            await asyncio.sleep(COALESCE_S)
            rt.dirty.clear()
            complete = self.state.complete()
            await self.evaluate_once()
            if complete:
                first_full()

    async def evaluate_once(self) -> None:
        rt, state = self.rt, self.state
        snap = state.snapshot()
        steady = time.monotonic()
        self._say_step(snap.now, steady)
        findings, history = judge(snap, state.history, rt.config.remediation.settle,
                                  self.clock.ages(state.history, snap.now, steady, boot_clock()))
        self._say_breaker(state.history, history)
        self.counters.evaluations += 1
        self.last_evaluation = time.monotonic()
        self._log_changes(findings)
        await self.save(history)
        await self._publish_metrics(findings, snap)
        status_line = self.status_line(findings)
        if status_line != self.last_status:
            self.last_status = status_line
            notify.notify(f"STATUS={status_line}")
        helps = [f for f in findings if f.restart_helps]
        actionable = [f for f in helps if not unconfirmed(f, history)]
        if len(actionable) < len(helps):
            rt.confirm_now.set()  # a second listing confirms the absence before any restart
        fixable = tuple(sorted({f.pool_uuid for f in actionable if f.pool_uuid}))
        decided = self.last_decision is not None and self.last_decision.pools == fixable
        if actionable and not self.restarting and not (rt.config.mode == "observe" and decided):
            # In observe mode the same refusal is read once, not with API calls every pass.
            await self.consider_restart(snap, findings)

    def _log_changes(self, findings: list[Finding]) -> None:
        current = {finding_key(f): f for f in findings}
        for key, finding in current.items():
            previous = self.findings.get(key)
            if previous is None or previous.severity != finding.severity:
                self.rt.emit("finding", kind=finding.kind, severity=finding.severity.name,
                             pool=finding.pool_uuid, pool_type=finding.pool_type, backend=finding.backend,
                             evidence="; ".join(str(e) for e in finding.evidence), action=finding.action,
                             level="warning" if finding.severity.rank >= 2 else "info")
        for key, finding in self.findings.items():
            if key not in current:
                self.rt.emit("finding-cleared", kind=finding.kind, pool=finding.pool_uuid)
        self.findings = current

    async def _publish_metrics(self, findings: list[Finding], snap: Snapshot) -> None:
        text = exposition(findings, snap, self.state.history, self.counters, time.time())
        self.metrics_server.text = text
        path = self.rt.config.metrics.textfile
        if not path:
            return
        try:
            await self.rt.in_thread(write_textfile, path, text)
            problem = ""
        except OSError as exc:
            problem = f"{path}: {exc.strerror}"
        if problem != self.textfile_problem:
            self.textfile_problem = problem
            self.rt.emit("metrics-textfile", ok=not problem, detail=problem or path,
                         level="error" if problem else "info")

    def status_line(self, findings: list[Finding]) -> str:
        mode = self.rt.config.mode
        if not findings:
            agent = self.state.agent
            name = f"agent pid {agent.incarnation.pid}" if agent else "no agent"
            return f"OK: {name}, {len(self.state.probes)} probe(s), mode {mode}"
        worst = findings[0]
        return (f"{overall(findings).name}: {worst.kind} {worst.pool_uuid or worst.pool_type}".strip()
                + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else "") + f", mode {mode}")

    async def _persist(self, history: History) -> None:
        await self.save(history, force=True)

    async def save(self, history: History, force: bool = False) -> None:
        """Merged with what `check` or an operator's `restart-agent` saved meanwhile.
        The agent log's cursor goes with every save, and on its own every CURSOR_SAVE_S
        while the log grows, so a `check` reads only what the daemon has not."""
        state = self.state
        failing = state.statuses.get("history")
        unsaved = failing is not None and not failing.ok
        place = state.log_place
        moved = place is not None and _where(place) != self.cursor_saved
        due = moved and time.monotonic() - self.cursor_saved_at >= CURSOR_SAVE_S
        if history == state.history and not force and not unsaved and not due:
            return
        if moved:
            history = replace(history, log_cursor=state.log_cursor())
        try:
            merged = await self.rt.in_thread(history_store.save_merged, self.rt.config.state_dir,
                                             history, state.base)
        except OSError as exc:
            state.history = history
            status = SourceStatus("history", False, f"cannot save history: {exc.strerror}")
            if state.statuses.get("history") != status:
                state.mark("history", status)  # once: an unchanged failure must not spin the loop
            return
        state.history = state.base = merged
        if place is not None:
            self.cursor_saved, self.cursor_saved_at = _where(place), time.monotonic()
        if unsaved:
            # A full, read-only or deleted state_dir that works again: say so.
            state.mark("history", SourceStatus("history", True, f"saved to {self.rt.config.state_dir}"))

    async def consider_restart(self, snap: Snapshot, findings: list[Finding]) -> None:
        """Every gate is read fresh: the agent's children (a copy started a moment ago),
        the cluster's hosts (a peer that just went down), the history (an operator's
        restart)."""
        rt, state = self.rt, self.state
        await self.save(state.history, force=True)
        gates = await rt.in_thread(read_gates, rt.config, state.agent, snap.management_host, state.props)
        if gates.agent_gone:
            # The JVM this was judged on is gone, and its caches with it: the agent watcher
            # sees the one that runs now within a second and has it judged, not restarted
            # for the old one's caches.
            return
        state.agent = gates.agent
        now = time.time()
        decision = decide(findings, rt.config.mode, rt.config.remediation, state.history, now,
                          gates.in_flight, gates.cluster, cluster_problem=gates.cluster_problem,
                          ages=self.clock.ages(state.history, now, time.monotonic(), boot_clock()))
        if self._log_decision(decision):
            self.refused_backoff.reset()
        if decision.act:
            self.restarting = True
            rt.own(self.restart(decision))
            return
        # A refusal that names when it can turn is looked at then; one that does not (work
        # in flight, the cluster unreadable) is looked at again less and less often.
        if decision.wait_until is not None:
            retry = max(0.05, decision.wait_until - time.time())
        else:
            self.refused_backoff.cap = max(RETRY_REFUSED_FLOOR_S, snap.heartbeat_retry_s)
            retry = max(RETRY_REFUSED_FLOOR_S, self.refused_backoff.next())
        if decision.refused_by and decision.refused_by.gate in ("in-flight", "cluster", "window"):
            asyncio.get_running_loop().call_later(retry, rt.dirty.set)

    def _log_decision(self, decision: Decision) -> bool:
        """Logged when it changes, not on every re-check of the same refusal; True then."""
        refused = decision.refused_by
        key = LastDecision(decision.act, refused.gate if refused else "", refused.key if refused else "",
                           decision.pools)
        if key == self.last_decision:
            return False
        self.last_decision = key
        if refused:
            self.counters.refusals[refused.gate] += 1
        self.rt.emit("restart-decision", act=decision.act, pools=",".join(decision.pools),
                     refused_by=refused.gate if refused else "",
                     gates="; ".join(f"{r.gate}={'pass' if r.passed else 'REFUSE'} ({r.reading})"
                                     for r in decision.readings),
                     level="warning" if decision.act else "info")
        return True

    def _say_step(self, wall: float, steady: float) -> None:
        """Once a step: log times (the agent's, the history's) on either side of it do not
        compare, and the operator should know why findings read odd meanwhile."""
        stepped = self.clock.step(wall, steady)
        if stepped is not None:
            self.rt.emit("clock-step", seconds=round(stepped),
                         detail=f"the wall clock moved {stepped:+.0f}s against the monotonic clock; "
                         "restart cooldowns and windows go on counting real time", level="warning")

    def _say_breaker(self, before: History, after: History) -> None:
        """Opened by a restart that did not help or failed to verify, or closed: said once."""
        if after.breaker_open_since != before.breaker_open_since:
            self.rt.emit("circuit-breaker", open=after.breaker_open_since is not None,
                         reason=after.breaker_reason, level="warning")

    async def restart(self, decision: Decision) -> None:
        rt = self.rt
        started, now = time.monotonic(), time.time()
        self.clock.started(now, started)
        try:
            history, result = await carry_out(rt.config, decision, self.state.agent, self.state.history,
                                               rt.emit, now, self._persist)
            self.counters.restarts["verified" if result.ok else "failed"] += 1
            rt.emit("restart-result", ok=result.ok, detail=result.detail,
                    verify_s=round(result.seconds, 2), total_s=round(time.monotonic() - started, 2),
                    level="warning" if result.ok else "error")
            self._say_breaker(self.state.history, history)
            await self.save(history)
        finally:
            self.restarting = False
            self.last_decision = None
            rt.dirty.set()
