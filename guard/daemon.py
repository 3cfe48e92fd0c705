"""`cloudstack-guard run`: one asyncio loop that watches, judges and (in remediate mode)
restarts the agent.

Each evidence source feeds a shared picture on its own schedule: libvirt pool events
(libvirtaio), the agent log as it grows, the agent process, management-API polls and
backend probes. Any change marks the picture dirty; the evaluator then runs the same pure
record/evaluate/decide functions `check` uses, logs findings once when they appear and
once when they clear, and hands a restart decision to guard.remediate. Blocking library
calls run in worker threads under their own timeouts, so a hung backend delays nothing
else, and the systemd watchdog is fed from the loop itself: if the loop stalls, systemd
notices.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import socket
import time
from typing import Any, Callable, Optional

from guard import logsetup, notify
from guard.backoff import Backoff, Repeats
from guard.collect import probe_targets
from guard.config import Config, ConfigError, load_config, parse_listen
from guard.evaluate import evaluate, overall
from guard.follow import Follower
from guard.history import History
from guard.metrics import Counters, MetricsServer, exposition, write_textfile
from guard.model import (
    CLOCK_SLACK_S,
    AgentProcess,
    Finding,
    LogEvent,
    Pool,
    ProbeResult,
    Snapshot,
    SourceStatus,
)
from guard.policy import (
    Decision,
    decide,
    judge_last_restart,
    unconfirmed,
)
from guard.probes import linstor
from guard.record import record
from guard.remediate import carry_out, cluster_reading, gather_in_flight
from guard.sources import history as history_store
from guard.sources.agent import find_agent, inspect_agent, status_of, unit_state
from guard.sources.agentconf import AgentProperties, read_agent_properties
from guard.sources.agentlog import IncrementalParser, iter_events, log_set
from guard.sources.libvirt import quiet_libvirt, read_libvirt_pools
from guard.sources.management import read_management
from guard.sources.storpoollog import SOURCE_NAME as STORPOOL_LOG
from guard.sources.storpoollog import StorPoolLog

EX_CONFIG = 78
LOG_POLL_S = 0.05
LOG_QUIET_FLUSH_S = 0.1
COALESCE_S = 0.005
"""Changes arriving together (a pool event and the listing it triggers) are judged once."""
AGENT_CHECK_S = 1.0
STORPOOL_LOG_POLL_S = 1.0
AGENT_RESCAN_S = 30.0
AGENT_DETAIL_S = 30.0
"""Reading the agent's sockets costs milliseconds of /proc/net parsing; a restart
decision reads them fresh anyway, so this only refreshes agent-disconnected."""
RETRY_REFUSED_S = 2.0
MAX_EVENTS = 20000
TASK_RETRY_FIRST_S = 1.0
TASK_RETRY_CAP_S = 60.0
MANAGEMENT_BACKOFF_CAP_S = 300.0
"""A failing management server is asked again sooner than a poll first, then less and
less often, never less than every five minutes."""
PROBE_BACKOFF_ROUNDS = 4
LIBVIRT_RETRY_FIRST_S = 0.5
LIBVIRT_RETRY_CAP_S = 30.0
LIBVIRT_STABLE_S = 30.0
"""A connection that lived this long was a working one: the next failure starts the
back-off over. One that drops sooner (a driver that closes at once) keeps backing off."""
STOP_GRACE_S = 4.0
DEFAULT_HEALTH_TICK_S = 10.0
INITIAL_SOURCES = {"agent-properties", "agent-process", "agent-log", "libvirt", "management"}


CONFIRM_AFTER_S = 5.0
"""A pool missing from one listing is looked for again this soon, not a poll later."""


def _jittered(interval: float) -> float:
    return interval * random.uniform(0.9, 1.1)  # noqa: S311 - spreading load, not security


def finding_key(finding: Finding) -> tuple[str, ...]:
    return (finding.kind, finding.pool_uuid, finding.pool_type, dict(finding.extra).get("source", ""),
            dict(finding.extra).get("adaptor", ""))


class Daemon:
    def __init__(self, config_path: Optional[str], config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.log = logsetup.get_logger()
        self.hostname = socket.gethostname()
        self.history = History()
        self.base = History()
        self.props: Optional[AgentProperties] = None
        self.agent: Optional[AgentProcess] = None
        self.statuses: dict[str, SourceStatus] = {}
        self.libvirt_pools: tuple[Pool, ...] = ()
        self.events: collections.deque = collections.deque(maxlen=MAX_EVENTS)
        self.storpool_events: tuple[LogEvent, ...] = ()
        self.version = ""
        self.unit_state = ""
        self.management: tuple[Any, tuple[Pool, ...], tuple[str, ...]] = (None, (), ())
        self.probes: dict[str, ProbeResult] = {}
        self.findings: dict[tuple[str, ...], Finding] = {}
        self.last_decision: Optional[tuple[Any, ...]] = None
        self.dirty = asyncio.Event()
        self.probe_now = asyncio.Event()
        self.confirm_now = asyncio.Event()
        self.listed_at: Optional[float] = None
        self.stopping = asyncio.Event()
        self.restarting = False
        self.probes_ready = False
        self.last_status = ""
        self.last_evaluation = 0.0
        self.tasks: list[asyncio.Task] = []
        self.counters = Counters()
        self.metrics_server = MetricsServer()
        self.textfile_problem = ""
        self.repeats = Repeats()

    # ----------------------------------------------------------------- plumbing

    def emit(self, event: str, **fields: Any) -> None:
        level = fields.pop("level", "info")
        getattr(self.log, level)(event, **fields)

    def warn_once(self, key: str, event: str, text: str, **fields: Any) -> None:
        """Said once; said again when `text` changes, or every few minutes with the count
        of the repeats that went unsaid (guard/backoff.py)."""
        unsaid = self.repeats.say(key, f"{event}: {text}")
        if unsaid is None:
            return
        fields.setdefault("level", "warning")
        self.emit(event, error=text, **({"repeated": unsaid} if unsaid else {}), **fields)

    def _after_failures(self, key: str) -> dict[str, int]:
        """The condition behind `key` ended: how many of its warnings went unsaid."""
        unsaid = self.repeats.clear(key)
        return {"unsaid_warnings": unsaid} if unsaid else {}

    def mark(self, name: str, status: SourceStatus) -> None:
        self.statuses[name] = status
        self.dirty.set()

    async def in_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, work, *args)

    def _spawn(self, name: str, factory: Callable[[], Any]) -> None:
        async def guarded() -> None:
            backoff = Backoff(TASK_RETRY_FIRST_S, TASK_RETRY_CAP_S)
            while not self.stopping.is_set():
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken source must not stop the daemon
                    self.warn_once(f"task-{name}", "task-failed", f"{type(exc).__name__}: {exc}",
                                   task=name, level="error")
                    await asyncio.sleep(backoff.next())

        self.tasks.append(asyncio.ensure_future(guarded()))

    # ------------------------------------------------------------------ sources

    async def watch_agent(self) -> None:
        """Cheap checks of the known pid every second, its children and sockets every
        few seconds, and a scan of every process only when it is gone (or now and then,
        in case another copy took over the unit)."""
        last_scan = last_detail = float("-inf")
        while not self.stopping.is_set():
            now = time.monotonic()
            known = self.agent
            status: Optional[SourceStatus] = None
            if (known is None or now - last_scan > AGENT_RESCAN_S
                    or not await self.in_thread(same_process, known)):
                self.props, props_status = await self.in_thread(
                    read_agent_properties, self.config.agent.properties)
                self.mark("agent-properties", props_status)
                agent, status = await self.in_thread(find_agent, self.props, self.config.agent.unit)
                self.unit_state = "" if agent else (
                    await self.in_thread(unit_state, self.config.agent.unit))[1]
                last_scan = last_detail = now
            elif now - last_detail > AGENT_DETAIL_S:
                agent = await self.in_thread(inspect_agent, known.incarnation, self.props) or known
                status = status_of(agent)
                last_detail = now
            else:
                agent = known
            if agent != known:
                if (agent and agent.incarnation) != (known and known.incarnation):
                    self.emit("agent-incarnation", pid=agent.incarnation.pid if agent else None,
                              previous_pid=known.incarnation.pid if known else None)
                self.agent = agent
                self.dirty.set()
            if status is not None and self.statuses.get("agent-process") != status:
                self.mark("agent-process", status)
            await self._sleep(AGENT_CHECK_S)

    async def follow_log(self) -> None:
        path = self.config.agent.log
        since = self.agent.incarnation.start_time - 2 if self.agent else time.time() - 3600
        rotated = [p for p in log_set(path)[:-1] if _mtime(p) >= since]
        for event in await self.in_thread(lambda: list(iter_events(rotated))):
            self._add_event(event)
        follower = Follower(path)
        parser = IncrementalParser(path)
        quiet_since = time.monotonic()

        def read() -> tuple[list[LogEvent], bool]:
            """In a worker thread: a big backlog must not stall the loop (or the watchdog)."""
            lines, new_file = follower.poll()
            events = parser.feed(lines) if lines else []
            if new_file:
                events += parser.restart(path)
            return events, bool(lines)

        try:
            while not self.stopping.is_set():
                if follower.quiet():
                    events, got_lines = [], False
                else:
                    events, got_lines = await self.in_thread(read)
                if got_lines:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > LOG_QUIET_FLUSH_S:
                    events += parser.flush()
                for event in events:
                    self._add_event(event)
                status = SourceStatus("agent-log", not follower.problem,
                                      follower.problem or f"{path}: following")
                if self.statuses.get("agent-log") != status:
                    self.mark("agent-log", status)
                if events:
                    self.dirty.set()
                await asyncio.sleep(LOG_POLL_S)
        finally:
            follower.close()

    async def watch_storpool_log(self) -> None:
        """StorPool's adaptor log, read on from where the last read stopped, for the agent
        that runs now (no agent, no pools it holds)."""
        reader = StorPoolLog(self.config.agent.storpool_log)
        while not self.stopping.is_set():
            if reader.path != self.config.agent.storpool_log:
                reader = StorPoolLog(self.config.agent.storpool_log)
            if self.agent is not None:
                since = self.agent.incarnation.start_time - CLOCK_SLACK_S
                events, status = await self.in_thread(reader.read, since)
                if tuple(events) != self.storpool_events:
                    self.storpool_events = tuple(events)
                    self.dirty.set()
                if self.statuses.get(STORPOOL_LOG) != status:
                    self.mark(STORPOOL_LOG, status)
            await self._sleep(STORPOOL_LOG_POLL_S)

    def _add_event(self, event: LogEvent) -> None:
        self.events.append(event)
        if event.kind == "agent-version":
            self.version = event.detail

    async def watch_libvirt(self) -> None:
        """Events first, then a full listing after every (re)connect, so nothing that
        happened while disconnected is missed. A connect that fails, or a connection that
        drops before it was stable, is retried with back-off, and said once."""
        import libvirt

        quiet_libvirt()
        backoff = Backoff(LIBVIRT_RETRY_FIRST_S, LIBVIRT_RETRY_CAP_S)
        while not self.stopping.is_set():
            uri = self.config.libvirt.uri
            try:
                conn = await self.in_thread(libvirt.openReadOnly, uri)
            except libvirt.libvirtError as exc:
                problem = f"{uri}: {str(exc).splitlines()[0]}"
                self.mark("libvirt", SourceStatus("libvirt", False, problem))
                self.warn_once("libvirt", "libvirt-unreachable", problem, uri=uri)
                await self._sleep(backoff.next())
                continue
            began = time.monotonic()
            await self._libvirt_session(libvirt, conn, uri)
            if self.stopping.is_set():
                return
            if time.monotonic() - began >= LIBVIRT_STABLE_S:
                backoff.reset()
            problem = f"{uri}: connection closed"
            self.mark("libvirt", SourceStatus("libvirt", False, problem))
            self.warn_once("libvirt", "libvirt-disconnected", problem, uri=uri)
            await self._sleep(backoff.next())

    async def _libvirt_session(self, libvirt: Any, conn: Any, uri: str) -> None:
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()

        def on_close(_conn: Any, _reason: int, _opaque: Any) -> None:
            loop.call_soon_threadsafe(closed.set)

        def on_pool(_conn: Any, pool: Any, event: int, _detail: int, _opaque: Any) -> None:
            loop.call_soon_threadsafe(self._pool_event, pool.name(), event)

        callback = None
        try:
            try:
                conn.setKeepAlive(5, 3)
            except libvirt.libvirtError as exc:
                # The test driver and local drivers refuse it: no keepalive, the close
                # callback still tells a dropped connection.
                self.warn_once("libvirt-keepalive", "libvirt-no-keepalive", str(exc).splitlines()[0],
                               uri=uri, level="info")
            conn.registerCloseCallback(on_close, None)
            callback = conn.storagePoolEventRegisterAny(
                None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, on_pool, None)
            self.emit("libvirt-connected", uri=uri, **self._after_failures("libvirt"))
            await self.refresh_pools()
            waits = {asyncio.ensure_future(self.stopping.wait()), asyncio.ensure_future(closed.wait())}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        except libvirt.libvirtError as exc:
            self.warn_once("libvirt", "libvirt-error", str(exc).splitlines()[0], uri=uri)
        finally:
            if callback is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.storagePoolEventDeregisterAny(callback)
            with contextlib.suppress(libvirt.libvirtError):
                conn.unregisterCloseCallback()
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def _pool_event(self, name: str, event: int) -> None:
        self.emit("libvirt-pool-event", pool=name, lifecycle=event, level="debug")
        asyncio.ensure_future(self.refresh_pools())

    async def refresh_pools(self) -> None:
        pools, status = await self.in_thread(read_libvirt_pools, self.config.libvirt.uri,
                                             self.config.probes.timeout)
        self.libvirt_pools = tuple(pools)
        self.mark("libvirt", status)

    async def poll_management(self) -> None:
        if self.config.management is None:
            self.mark("management", SourceStatus("management", True, "not configured", configured=False))
            return
        poll = self.config.management.poll_interval
        backoff = Backoff(poll, max(poll, MANAGEMENT_BACKOFF_CAP_S))
        while not self.stopping.is_set():
            if self.props is None:
                self.props, props_status = await self.in_thread(
                    read_agent_properties, self.config.agent.properties)
                self.mark("agent-properties", props_status)
            host, pools, elsewhere, status = await self.in_thread(
                read_management, self.config.management, self.hostname, self.props)
            if status.ok:
                self.management = (host, tuple(pools), elsewhere)
                self.listed_at = time.time()
                backoff.reset()
            self.mark("management", status)
            self.probe_now.set()
            interval = _jittered(self.config.management.poll_interval) if status.ok else backoff.next()
            soonest = min(CONFIRM_AFTER_S, interval)
            await self._sleep(soonest)
            self.confirm_now.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.confirm_now.wait(), interval - soonest)

    async def run_probes(self) -> None:
        """Every interval, and after every listing; a round in which a controller did not
        answer backs off, up to PROBE_BACKOFF_ROUNDS intervals (the finding keeps what the
        last round saw), and starts over once all answer."""
        interval = self.config.probes.interval
        backoff = Backoff(interval, interval * PROBE_BACKOFF_ROUNDS)
        while not self.stopping.is_set():
            snap = self.snapshot()
            targets = probe_targets(record(self.history, snap), snap)
            results = await linstor.probe_urls([u for _, u in targets], self.config.linstor,
                                               self.config.probes.timeout)
            probes = {uuid: results[url] for uuid, url in targets}
            if {k: v.status for k, v in probes.items()} != {k: v.status for k, v in self.probes.items()}:
                self.dirty.set()
            self.probes = probes
            if "management" in self.statuses and not self.probes_ready:
                self.probes_ready = True
                self.dirty.set()
            failing = not all(p.reachable for p in probes.values())
            if failing:
                wait = backoff.next()
            else:
                backoff.reset()
                wait = _jittered(interval)
            await self._until_probe_due(wait, {url for _, url in targets}, failing)

    async def _until_probe_due(self, wait: float, probed: set[str], failing: bool) -> None:
        """A new listing brings the next round forward, unless the last one failed and
        the listing names no new target: then the back-off holds."""
        loop = asyncio.get_running_loop()
        due = loop.time() + wait
        while not self.stopping.is_set() and loop.time() < due:
            self.probe_now.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.probe_now.wait(), due - loop.time())
            if not self.probe_now.is_set() or not failing:
                return
            snap = self.snapshot()
            wanted = {url for _, url in probe_targets(record(self.history, snap), snap)}
            if wanted - probed or ("management" in self.statuses and not self.probes_ready):
                return

    # ---------------------------------------------------------------- judgement

    def snapshot(self) -> Snapshot:
        host, pools, elsewhere = self.management
        return Snapshot(
            now=time.time(),
            hostname=self.config.linstor.node or self.hostname,
            agent=self.agent,
            agent_version=self.version,
            agent_unit_state=self.unit_state,
            libvirt_pools=self.libvirt_pools,
            management_host=host,
            management_pools=pools,
            management_elsewhere=elsewhere,
            listed_at=self.listed_at,
            log_events=tuple(self.events) + self.storpool_events,
            probes=tuple(self.probes.items()),
            sources=tuple(self.statuses.values()),
        )

    def _complete(self) -> bool:
        """Every source has answered once, and the probes ran with the management
        server's pool list in hand: only then is an evaluation a full one."""
        return self.statuses.keys() >= INITIAL_SOURCES and self.probes_ready

    async def evaluate_loop(self, first_full: Callable[[], None]) -> None:
        while not self.stopping.is_set():
            await self.dirty.wait()
            await asyncio.sleep(COALESCE_S)
            self.dirty.clear()
            complete = self._complete()
            await self.evaluate_once()
            if complete:
                first_full()

    async def evaluate_once(self) -> None:
        snap = self.snapshot()
        history = record(self.history, snap)
        findings = evaluate(snap, history)
        history = judge_last_restart(history, findings, snap.now, self.config.remediation.settle)
        if history.breaker_open_since != self.history.breaker_open_since:
            self.emit("circuit-breaker", open=history.breaker_open_since is not None,
                      reason=history.breaker_reason, level="warning")
        self.counters.evaluations += 1
        self.last_evaluation = time.monotonic()
        self._log_changes(findings)
        await self._save(history)
        await self._publish_metrics(findings, snap)
        status_line = self.status_line(findings)
        if status_line != self.last_status:
            self.last_status = status_line
            notify.notify(f"STATUS={status_line}")
        helps = [f for f in findings if f.restart_helps]
        actionable = [f for f in helps if not unconfirmed(f, history)]
        if len(actionable) < len(helps):
            self.confirm_now.set()  # a second listing confirms the absence before any restart
        fixable = tuple(sorted({f.pool_uuid for f in actionable if f.pool_uuid}))
        decided = self.last_decision is not None and self.last_decision[3] == fixable
        if actionable and not self.restarting and not (
                self.config.mode == "observe" and decided):
            # In observe mode the same refusal is read once, not with API calls every pass.
            await self.consider_restart(snap, findings)

    def _log_changes(self, findings: list[Finding]) -> None:
        current = {finding_key(f): f for f in findings}
        for key, finding in current.items():
            previous = self.findings.get(key)
            if previous is None or previous.severity != finding.severity:
                self.emit("finding", kind=finding.kind, severity=finding.severity.name,
                          pool=finding.pool_uuid, pool_type=finding.pool_type, backend=finding.backend,
                          evidence="; ".join(str(e) for e in finding.evidence), action=finding.action,
                          level="warning" if finding.severity.rank >= 2 else "info")
        for key, finding in self.findings.items():
            if key not in current:
                self.emit("finding-cleared", kind=finding.kind, pool=finding.pool_uuid)
        self.findings = current

    async def _publish_metrics(self, findings: list[Finding], snap: Snapshot) -> None:
        text = exposition(findings, snap, self.history, self.counters, time.time())
        self.metrics_server.text = text
        path = self.config.metrics.textfile
        if not path:
            return
        try:
            await self.in_thread(write_textfile, path, text)
            problem = ""
        except OSError as exc:
            problem = f"{path}: {exc.strerror}"
        if problem != self.textfile_problem:
            self.textfile_problem = problem
            self.emit("metrics-textfile", ok=not problem, detail=problem or path,
                      level="error" if problem else "info")

    def status_line(self, findings: list[Finding]) -> str:
        status = overall(findings)
        if not findings:
            agent = f"agent pid {self.agent.incarnation.pid}" if self.agent else "no agent"
            return f"OK: {agent}, {len(self.probes)} probe(s), mode {self.config.mode}"
        worst = findings[0]
        return (f"{status.name}: {worst.kind} {worst.pool_uuid or worst.pool_type}".strip()
                + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else "")
                + f", mode {self.config.mode}")

    async def _persist(self, history: History) -> None:
        await self._save(history, force=True)

    async def _save(self, history: History, force: bool = False) -> None:
        """Merged with what `check` or an operator's `restart-agent` saved meanwhile."""
        if history == self.history and not force:
            return
        try:
            merged = await self.in_thread(history_store.save_merged, self.config.state_dir,
                                          history, self.base)
        except OSError as exc:
            self.history = history
            self.mark("history", SourceStatus("history", False, f"cannot save history: {exc.strerror}"))
            return
        self.history = self.base = merged

    async def consider_restart(self, snap: Snapshot, findings: list[Finding]) -> None:
        """Every gate is read fresh: the agent's children (a copy started a moment ago),
        the cluster's hosts (a peer that just went down), the history (an operator's
        restart)."""
        await self._save(self.history, force=True)
        host = snap.management_host
        if self.agent is not None:
            fresh = await self.in_thread(inspect_agent, self.agent.incarnation, self.props)
            if fresh is None:
                # The JVM this was judged on is gone, and its caches with it: judging
                # again on the one that runs now, not restarting that one for them.
                self.dirty.set()
                return
            self.agent = fresh
        in_flight = await self.in_thread(gather_in_flight, self.agent, self.config.libvirt.uri,
                                         self.config.probes.timeout)
        cluster, problem = (None, "")
        if self.config.management is not None:
            if host is None:
                problem = "this host is not known to the management server yet"
            else:
                cluster, problem = await self.in_thread(cluster_reading, self.config, host.id,
                                                        host.cluster_id)
        decision = decide(findings, self.config.mode, self.config.remediation, self.history,
                          time.time(), in_flight, cluster, cluster_problem=problem)
        self._log_decision(decision)
        if decision.act:
            self.restarting = True
            asyncio.ensure_future(self.restart(decision))
            return
        retry = RETRY_REFUSED_S
        if decision.wait_until is not None:
            retry = max(0.05, decision.wait_until - time.time())
        if decision.refused_by and decision.refused_by.gate in ("in-flight", "cluster", "window"):
            asyncio.get_running_loop().call_later(retry, self.dirty.set)

    def _log_decision(self, decision: Decision) -> None:
        """Logged when it changes, not on every re-check of the same refusal."""
        refused = decision.refused_by
        key = (decision.act, refused.gate if refused else "",
               refused.reading.split(" in ")[0] if refused else "", decision.pools)
        if key == self.last_decision:
            return
        self.last_decision = key
        if refused:
            self.counters.refusals[refused.gate] += 1
        self.emit("restart-decision", act=decision.act, pools=",".join(decision.pools),
                  refused_by=refused.gate if refused else "",
                  gates="; ".join(f"{r.gate}={'pass' if r.passed else 'REFUSE'} ({r.reading})"
                                  for r in decision.readings),
                  level="warning" if decision.act else "info")

    async def restart(self, decision: Decision) -> None:
        started = time.monotonic()
        try:
            history, result = await carry_out(self.config, decision, self.agent, self.history,
                                               self.emit, time.time(), self._persist)
            self.counters.restarts["verified" if result.ok else "failed"] += 1
            self.emit("restart-result", ok=result.ok, detail=result.detail,
                      verify_s=round(result.seconds, 2), total_s=round(time.monotonic() - started, 2),
                      level="warning" if result.ok else "error")
            await self._save(history)
        finally:
            self.restarting = False
            self.last_decision = None
            self.dirty.set()

    # ---------------------------------------------------------------- lifecycle

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def health_tick(self) -> None:
        """The watchdog is fed from the loop itself, and only while evaluations keep up
        with changes: a wedged evaluator must get the guard restarted by systemd."""
        interval = notify.watchdog_interval() or DEFAULT_HEALTH_TICK_S
        while not self.stopping.is_set():
            stuck = self.dirty.is_set() and time.monotonic() - self.last_evaluation > 4 * interval
            if not stuck and notify.watchdog_interval():
                notify.notify("WATCHDOG=1")
            await self._sleep(interval)

    def reload(self) -> None:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.emit("reload-refused", error=str(exc), keeping=self.config.path, level="error")
            return
        self.emit("reloaded", config=config.path, mode=config.mode)
        if config.metrics.listen != self.config.metrics.listen:
            self.emit("reload-partial", detail="[metrics] listen changes take effect at the next "
                      "start of the guard", level="warning")
        self.config = config
        self._restart_sources()

    def _restart_sources(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks = []
        self._start_sources()

    def _start_sources(self) -> None:
        self._spawn("agent", self.watch_agent)
        self._spawn("agent-log", self.follow_log)
        self._spawn(STORPOOL_LOG, self.watch_storpool_log)
        self._spawn("libvirt", self.watch_libvirt)
        self._spawn("management", self.poll_management)
        self._spawn("probes", self.run_probes)

    async def main(self) -> int:
        import libvirtaio

        loop = asyncio.get_running_loop()
        libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        history, status = await self.in_thread(self._load_history)
        self.history = self.base = history
        self.mark("history", status)
        self.emit("starting", config=self.config.path, mode=self.config.mode, pid=os.getpid())
        await self._listen_for_metrics()

        ready = loop.create_future()

        def first_full() -> None:
            if not ready.done():
                ready.set_result(None)

        evaluator = asyncio.ensure_future(self.evaluate_loop(first_full))
        self._start_sources()
        props, props_status = await self.in_thread(read_agent_properties, self.config.agent.properties)
        self.props = props
        self.mark("agent-properties", props_status)
        await asyncio.wait({ready, asyncio.ensure_future(self.stopping.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        notify.notify("READY=1")
        self.emit("ready", evaluations=self.counters.evaluations)
        health = asyncio.ensure_future(self.health_tick())
        await self.stopping.wait()

        notify.notify("STOPPING=1")
        self.emit("stopping")
        self.metrics_server.close()
        for task in self.tasks + [evaluator, health]:
            task.cancel()
        await asyncio.wait(self.tasks + [evaluator, health], timeout=STOP_GRACE_S)
        return 0

    async def _listen_for_metrics(self) -> None:
        """A listener that cannot bind is logged, not fatal: the guard's job is the agent.
        Its address is read at start; a reload that changes it says a restart is needed."""
        if not self.config.metrics.listen:
            return
        host, port = parse_listen(self.config.metrics.listen)
        try:
            bound = await self.metrics_server.start(host, port)
        except OSError as exc:
            self.emit("metrics-listen-failed", listen=self.config.metrics.listen, error=exc.strerror,
                      level="error")
            return
        self.emit("metrics-listening", host=host, port=bound)

    def _load_history(self) -> tuple[History, SourceStatus]:
        with history_store.locked(self.config.state_dir):
            return history_store.load(self.config.state_dir)


def same_process(agent: AgentProcess) -> bool:
    """Still the same incarnation: the pid alive with the same start time."""
    import psutil

    try:
        return psutil.Process(agent.incarnation.pid).create_time() == agent.incarnation.start_time
    except psutil.Error:
        return False


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def run(config_path: Optional[str], log_format: str) -> int:
    logsetup.configure(log_format)
    log = logsetup.get_logger()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("config-refused", error=str(exc))
        return EX_CONFIG
    try:
        history_store.ensure_state_dir(config.state_dir)
    except OSError as exc:
        log.error("state-dir-unusable", state_dir=config.state_dir, error=exc.strerror)
        return EX_CONFIG
    daemon = Daemon(config_path, config)
    return asyncio.run(daemon.main())

