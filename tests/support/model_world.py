"""The ground-truth agent model and the guard's pure core side by side.

`World` holds an AgentModel (what the agent really holds) and the guard's history, and
turns the model into the Snapshot the guard's sources would read at each check: the
management server's listing and version, libvirt's pools, the agent's INFO log lines, and
the probes of the LINSTOR controllers the guard would ask. `check()` runs record ->
evaluate -> judge -> decide as the daemon does, and carries out a decided restart on the
model. The model-based tests (tests/unit/test_decision_model.py) and the herd benchmark drive
it; what the guard may be expected to know is tracked here too (`knowable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from guard.collect import probe_targets
from guard.config import RemediationConfig
from guard.elapsed import BootClock, RestartClock
from guard.evaluate import overall
from guard.evidence import RECENT_S
from guard.history import History, RestartRecord
from guard.judge import judge
from guard.model import (
    AgentProcess,
    Finding,
    Incarnation,
    LogEvent,
    ManagementHost,
    Pool,
    ProbeResult,
    Severity,
    Snapshot,
    SourceStatus,
)
from guard.policy import (
    ClusterView,
    Decision,
    InFlight,
    decide,
)
from guard.record import record, record_restart
from tests.support.emulators.agent_model import ADAPTOR, LINSTOR, STORPOOL, AgentModel

T0 = 1_700_000_000.0
STORPOOL_LOG = "/var/log/cloudstack/agent/storpool-agent.log"
MODEL_BOOT = "00000000-model-boot-0000"
PROBE_STATUS = {"up": "healthy", "down": "refused", "hung": "timeout"}
EXCEPTION = {"down": "javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused",
             "hung": "javax.ws.rs.ProcessingException: java.net.SocketTimeoutException: Read timed out"}


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version)


def url_of(backend: str) -> str:
    return f"http://{backend}:3370"


@dataclass
class World:
    model: AgentModel = field(default_factory=AgentModel)
    history: History = field(default_factory=History)
    now: float = T0
    api_failing: bool = False
    mode: str = "remediate"
    remediation: RemediationConfig = field(default_factory=lambda: RemediationConfig(
        max_restarts=3, window=3600.0, cooldown=120.0, settle=60.0, stagger_slot=30.0))
    host_id: str = "host-1"
    log: list[LogEvent] = field(default_factory=list)
    agent_started: dict[int, float] = field(default_factory=dict)
    seen_held: set[str] = field(default_factory=set)
    """Pools a check saw listed while the running incarnation held them (history intact)."""
    seen_gone: dict[str, int] = field(default_factory=dict)
    """How many checks saw a seen-held pool no longer listed."""
    last_findings: list[Finding] = field(default_factory=list)
    last_decision: Optional[Decision] = None
    restarts: list[float] = field(default_factory=list)
    cluster: Optional[ClusterView] = None
    clock_offset: float = 0.0
    offset_at_start: dict[int, float] = field(default_factory=dict)
    restart_clock: RestartClock = field(default_factory=RestartClock)
    """The daemon's timing of restarts on the monotonic clock (guard/elapsed.py)."""
    timed_restarts: list[float] = field(default_factory=list)
    """Real times of the restarts the guard decided in this boot, the history still
    holding them."""
    boot_number: int = 0
    booted_at: float = 0.0
    """The model's real time when the host last booted: the boot clock counts from it."""

    def __post_init__(self) -> None:
        self.agent_started[self.model.agent.incarnation] = self.now

    # --------------------------------------------------------------- the agent's log

    def _line(self, kind: str, **fields: object) -> None:
        self.now += 0.5  # lines are written in order; a look after them sees them as earlier
        self.log.append(LogEvent(kind, self.now, "agent.log", len(self.log) + 1, **fields))  # type: ignore[arg-type]

    def logged_adds(self, before: set[str]) -> None:
        """LibvirtStorageAdaptor logs `Attempting to create storage pool` at INFO;
        LINSTOR's createStoragePool line is DEBUG, so nothing at the default level."""
        for uuid in sorted(self.model.libvirt - before):
            self._line("pool-add", pool_uuid=uuid, pool_type=self.model.pools[uuid].type)
        for uuid in sorted(before - self.model.libvirt):
            self._line("pool-remove", pool_uuid=uuid, pool_type=self.model.pools[uuid].type)

    def logged_storpool(self, before: set[str]) -> None:
        """StorPoolStorageAdaptor.SP_LOG writes createStoragePool to its own file, and the
        pool enters the HA monitor with it (guard/sources/storpoollog.py)."""
        for uuid in sorted(self.model.agent.ha - before):
            if self.model.pools[uuid].type == STORPOOL:
                self.now += 0.5
                self.log.append(LogEvent("pool-add", self.now, STORPOOL_LOG, len(self.log) + 1, pool_uuid=uuid,
                                         pool_type=STORPOOL, adaptor="StorPoolStorageAdaptor",
                                         detail="StorPoolStorageAdaptor.createStoragePool"))

    def apply(self, event: str, *args: object) -> None:
        """One model event, with the INFO lines the agent writes for it."""
        before = set(self.model.libvirt)
        before_ha = set(self.model.agent.ha)
        incarnation = self.model.agent.incarnation
        if event == "restart_agent":
            self._line("agent-stop", detail="Stopping the agent: Reason = restart")
        getattr(self.model, event)(*args)
        if self.model.agent.incarnation != incarnation:
            self.now += 1.0
            self.agent_started[self.model.agent.incarnation] = self.now
            self.offset_at_start[self.model.agent.incarnation] = self.clock_offset
            self.seen_held = set()
            self.seen_gone = {}
            before_ha = set()
        self.logged_adds(before)
        self.logged_storpool(before_ha)

    def vm_stop(self) -> bool:
        """A VM stop on this host; a failure is the agent's WARN `Caught:` trace."""
        outcome = self.model.next_stop()
        if outcome.fails:
            self._line("storage-failure", adaptor=ADAPTOR[LINSTOR], operation="disk-cleanup",
                       exception=EXCEPTION[outcome.backend_state], pool_type=LINSTOR)
        return not outcome.fails

    def heartbeats(self) -> None:
        """One round of KVMHAMonitor: a WARN line per failing pool."""
        for uuid in sorted(self.model.reboot_risk()):
            self._line("heartbeat-failure", pool_uuid=uuid, pool_type=self.model.pools[uuid].type,
                       detail="try: 1 of 5")

    # --------------------------------------------------------------- the guard's view

    def incarnation(self) -> Incarnation:
        """As psutil and /proc report it: the start time moves with every wall-clock step
        since the JVM started (psutil derives it from a wall-clock boot time); the start
        ticks after boot do not."""
        number = self.model.agent.incarnation
        shifted = self.agent_started[number] + self.clock_offset - self.offset_at_start.get(number, 0.0)
        return Incarnation(1000 + number, shifted, start_ticks=100 * number + 7)

    def lose_history(self) -> None:
        """What the guard remembered is gone; what it may be expected to know goes too."""
        self.history = History()
        self.seen_held = set()
        self.seen_gone = {}
        self.timed_restarts = []

    def guard_restarted(self) -> None:
        """The daemon started again: what it kept only in memory is gone, its monotonic
        timing of restarts with it. The restarts it made keep their boot clock readings
        in the history, so the host's boot goes on timing them: the limits still hold in
        real time for them (timed_restarts stays)."""
        self.last_decision = None
        self.last_findings = []
        self.restart_clock = RestartClock()

    def boot(self) -> BootClock:
        return BootClock(f"{MODEL_BOOT}-{self.boot_number}", self.real_time() - self.booted_at)

    def host_rebooted(self) -> None:
        """The host boots again: a new boot id and boot clock, a new guard, the agent
        started afresh. The restarts of the earlier boot are timed on the wall clock
        from now on (nothing else spans a reboot), so the limits are asserted in real
        time only for the restarts of this boot."""
        self.boot_number += 1
        self.booted_at = self.real_time()
        self.guard_restarted()
        self.timed_restarts = []
        self.apply("restart_agent")

    def real_time(self) -> float:
        """What the monotonic clock reads: the wall clock without its steps."""
        return self.now - self.clock_offset

    def clock_step(self, seconds: float) -> None:
        """The wall clock is set forward or back (NTP step, an operator's `date -s`)."""
        self.now += seconds
        self.clock_offset += seconds

    def snapshot(self) -> Snapshot:
        model = self.model
        sources = [SourceStatus("agent-process", True), SourceStatus("libvirt", True),
                   SourceStatus("agent-log", True)]
        host = None
        pools: tuple[Pool, ...] = ()
        elsewhere: tuple[str, ...] = ()
        if self.api_failing:
            sources.append(SourceStatus("management", False, "HTTP 500"))
        else:
            sources.append(SourceStatus("management", True))
            host = ManagementHost(self.host_id, "kvm1", "Up" if model.connected else "Disconnected",
                                  "c1", "z1", version_text(model.server_version))
            pools = tuple(
                Pool(p.uuid, p.type, "management", state=p.state,
                     url=url_of(p.backend) if p.type == LINSTOR else "", scope="ZONE")
                for p in sorted(model.pools.values(), key=lambda p: p.uuid) if p.exists and p.in_scope)
            elsewhere = tuple(sorted(p.uuid for p in model.pools.values() if p.exists and not p.in_scope))
        libvirt_pools = tuple(Pool(u, model.pools[u].type, "libvirt", state="running")
                              for u in sorted(model.libvirt))
        agent = AgentProcess(self.incarnation(), "java com.cloud.agent.AgentShell", (),
                             model.connected, "127.0.0.1:8250")
        snap = Snapshot(now=self.now, linstor_node="kvm1", agent=agent,
                        agent_version=version_text(model.agent_version), libvirt_pools=libvirt_pools,
                        management_host=host, management_pools=pools, management_elsewhere=elsewhere,
                        log_events=tuple(self.log),
                        sources=tuple(sources))
        probes = []
        for uuid, kind, url, _ in probe_targets(record(self.history, snap), snap):
            if kind == "storpool":
                # One API per host, and the heartbeat's check: `storpool -j service list`
                # answers and this host's client runs (StorPoolStoragePool.java).
                state = model.backends.get(model.pools[uuid].backend, "down") if uuid in model.pools else "down"
                if state == "up" and model.storpool_client_down:
                    state = "down"
            else:
                state = model.backends.get(url.split("//", 1)[1].rsplit(":", 1)[0], "down")
            probes.append((uuid, ProbeResult(kind, url, PROBE_STATUS[state], state, 0.01,
                                             node_status="ONLINE" if state == "up" else "")))
        return replace(snap, probes=tuple(probes))

    def _observe(self, snap: Snapshot) -> None:
        if self.api_failing:
            return
        listed = {p.uuid for p in snap.management_pools}
        held = self.model.held()
        for uuid in listed & held:
            if self.model.connected:
                self.seen_held.add(uuid)
        for uuid in self.seen_held - listed:
            self.seen_gone[uuid] = self.seen_gone.get(uuid, 0) + 1

    def knowable(self, uuid: str) -> bool:
        """The guard saw the pool held and then, twice, not listed; or the agent logged
        what the entry does (a stop failure, a failing heartbeat) in this incarnation."""
        if self.seen_gone.get(uuid, 0) >= 2:
            return True
        if self.api_failing:
            return False  # without the listing, a failing heartbeat may be a live pool's outage
        return any(e.pool_uuid == uuid and e.kind == "heartbeat-failure" for e in self._recent_lines())

    def stop_failure_logged(self) -> bool:
        return any(e.kind == "storage-failure" for e in self._recent_lines())

    def _recent_lines(self) -> list[LogEvent]:
        """Lines of the running incarnation (by the start the guard is told) of the last
        hour by the wall clock, as a monitoring check would judge them."""
        start = self.incarnation().start_time
        return [e for e in self.log if e.ts is not None and e.ts >= start and 0 <= self.now - e.ts < RECENT_S]

    def check(self) -> list[Finding]:
        """One guard evaluation (daemon cycle or `check`), and the restart it decides."""
        self.now += 0.5
        snap = self.snapshot()
        self._observe(snap)
        findings, history = judge(snap, self.history, self.remediation.settle,
                                  self.restart_clock.ages(self.history, self.now, self.real_time(), self.boot()))
        self.history = history
        self.last_findings = findings
        self.last_decision = None
        if any(f.restart_helps for f in findings):
            # As in the daemon: with [management] configured, the cluster view comes from
            # the same API, and a failing API refuses the cluster gate.
            problem = "HTTP 500" if self.api_failing else ""
            decision = decide(findings, self.mode, self.remediation, history, self.now, InFlight(),
                              self.cluster, cluster_problem=problem,
                              ages=self.restart_clock.ages(history, self.now, self.real_time(), self.boot()))
            self.last_decision = decision
            if decision.act:
                self._restart(decision)
        return findings

    def _restart(self, decision: Decision) -> None:
        old = self.incarnation()
        self.restart_clock.started(self.now, self.real_time())
        self.timed_restarts.append(self.real_time())
        boot = self.boot()
        asked = RestartRecord(at=self.now, reason="model", old_pid=old.pid, pools=decision.pools,
                              boot_id=boot.boot_id, boot_s=boot.seconds)
        self.history = record_restart(self.history, asked)
        self.apply("restart_agent")
        self.restarts.append(self.now)
        new = self.incarnation()
        self.history = record_restart(self.history, replace(asked, outcome="verified", new_pid=new.pid))

    def status(self) -> Severity:
        return overall(self.last_findings)
