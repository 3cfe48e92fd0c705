"""Model-based tests: random sequences of what clouds do, fed to the ground-truth agent
model (tests/support/emulators/agent_model.py) and, through the snapshots its sources would read,
to the guard's record / evaluate / decide. The invariants are the guard's promises.

CI runs a fixed budget with a derandomized search (the same sequences every run; a
failure prints the shrunk sequence and a @reproduce_failure blob). GUARD_MODEL_EXAMPLES
raises the budget and GUARD_MODEL_RANDOM=1 searches with fresh randomness (`make bench`
runs the longer search).
"""

from __future__ import annotations

import os
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from guard.evaluate import evaluate
from guard.model import Severity
from guard.record import record
from tests.support.emulators.agent_model import LINSTOR, NFS, POWERFLEX, RBD, STORPOOL, AgentModel
from tests.support.model_world import World

EXAMPLES = int(os.environ.get("GUARD_MODEL_EXAMPLES", "40"))
VERSIONS = [(4, 19, 1, 2), (4, 19, 3, 0), (4, 20, 0, 0), (4, 20, 1, 0), (4, 21, 0, 0)]
TYPES = [LINSTOR, LINSTOR, NFS, STORPOOL, POWERFLEX, RBD]
BACKENDS = ["ctl-a", "ctl-b", "ctl-c"]
UUIDS = [f"{n:08x}-1111-2222-3333-444455556666" for n in range(1, 7)]


def _verdict(findings):
    return sorted((f.kind, f.pool_uuid, f.severity.name, f.restart_helps) for f in findings)


class DecisionMachine(RuleBasedStateMachine):
    """One host; every rule is a thing that happens to it, `check` is the guard's look."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.justified_before = False

    @initialize(agent=st.sampled_from(VERSIONS), server=st.sampled_from(VERSIONS))
    def versions(self, agent, server):
        self.world = World(model=AgentModel(agent_version=agent, server_version=max(agent, server)))

    # ------------------------------------------------------------ what the cloud does

    @precondition(lambda self: len(self.world.model.pools) < len(UUIDS))
    @rule(pool_type=st.sampled_from(TYPES), backend=st.sampled_from(BACKENDS))
    def create_pool(self, pool_type, backend):
        uuid = UUIDS[len(self.world.model.pools)]
        self.world.apply("create_pool", uuid, pool_type, backend)

    def _pools(self, predicate):
        return sorted(u for u, p in self.world.model.pools.items() if predicate(p))

    @rule(data=st.data())
    def maintenance_on(self, data):
        choices = self._pools(lambda p: p.exists and p.state == "Up")
        if choices:
            self.world.apply("maintenance", data.draw(st.sampled_from(choices)), True)

    @rule(data=st.data())
    def maintenance_off(self, data):
        choices = self._pools(lambda p: p.exists and p.state == "Maintenance")
        if choices:
            self.world.apply("maintenance", data.draw(st.sampled_from(choices)), False)

    @rule(data=st.data())
    def delete_pool(self, data):
        choices = self._pools(lambda p: p.exists and p.state == "Maintenance")
        if choices:
            self.world.apply("delete_pool", data.draw(st.sampled_from(choices)))

    @rule(data=st.data())
    def leave_scope(self, data):
        choices = self._pools(lambda p: p.exists and p.in_scope)
        if choices:
            self.world.apply("leave_scope", data.draw(st.sampled_from(choices)))

    @rule()
    def disconnect(self):
        self.world.apply("disconnect")

    @rule()
    def reconnect(self):
        self.world.apply("reconnect")

    @rule()
    def restart_by_a_person(self):
        self.world.apply("restart_agent")

    @rule(backend=st.sampled_from(BACKENDS), state=st.sampled_from(["up", "down", "hung"]))
    def backend(self, backend, state):
        self.world.apply("set_backend", backend, state)

    @rule()
    def drbd_breaks(self):
        self.world.model.drbd_failing = not self.world.model.drbd_failing

    @rule()
    def storpool_client(self):
        self.world.model.storpool_client_down = not self.world.model.storpool_client_down

    @rule()
    def api(self):
        self.world.api_failing = not self.world.api_failing

    @rule()
    def history_lost(self):
        """The history file moved aside as corrupt, or the guard installed afresh."""
        self.world.lose_history()

    @rule()
    def guard_restarted(self):
        """The daemon restarted: what it kept only in memory is gone, the history stays.
        The restarts it made keep their boot clock readings there (guard/elapsed.py), so
        a clock step before or after the new guard starts still cannot shorten a cooldown
        or empty the rate window: the limits are asserted across guard restarts."""
        self.world.guard_restarted()

    @rule()
    def host_rebooted(self):
        """A new boot: a new boot clock, guard and agent (guard/elapsed.py)."""
        self.world.host_rebooted()

    @rule()
    def vm_stop(self):
        self.world.vm_stop()

    @rule()
    def heartbeat_round(self):
        self.world.heartbeats()

    @rule(seconds=st.sampled_from([5.0, 30.0, 60.0, 300.0, 900.0]))
    def time_passes(self, seconds):
        self.world.now += seconds

    @rule(seconds=st.sampled_from([-3600.0, 86400.0]))
    def clock_step(self, seconds):
        self.world.clock_step(seconds)

    # ------------------------------------------------------------ the guard looks

    @rule()
    def check(self):
        model = self.world.model
        self.justified_before = model.restart_helps()
        harm_before = model.stale_harm()
        knowable = any(self.world.knowable(u) for u in harm_before) or (
            model.next_stop().fails and model.next_stop().pool in harm_before
            and self.world.stop_failure_logged())
        before = list(self.world.timed_restarts)
        self.world.check()
        decision = self.world.last_decision
        if decision is not None and decision.act:
            assert self.justified_before, (
                f"restart decided although it would not help: stale={sorted(model.stale())} "
                f"findings={_verdict(self.world.last_findings)}")
            self._limits_kept_in_real_time(before)
            return
        heartbeated = {u for u in model.stale() & model.agent.ha if model.pools[u].type == STORPOOL}
        if heartbeated and not self.world.api_failing:
            # StorPool's own log names every pool the HA monitor took in this incarnation.
            assert self.world.status() != Severity.OK, (
                f"OK while the HA monitor heartbeats stale StorPool {sorted(heartbeated)}: "
                f"{_verdict(self.world.last_findings)}")
        failing = {u for u in heartbeated if model.heartbeat_failing(u)}
        if failing and not self.world.api_failing:
            # The probe asks what the heartbeat asks, before the first failed try is logged.
            assert self.world.status() == Severity.CRITICAL, (
                f"{self.world.status().name} while the heartbeat of stale StorPool {sorted(failing)} "
                f"fails and will reboot the host: {_verdict(self.world.last_findings)}")
        harmless = [f for f in self.world.last_findings if f.kind == "stale-pool"
                    and f.pool_type in (POWERFLEX, RBD) and f.severity == Severity.CRITICAL]
        assert not harmless, f"CRITICAL for a stale entry whose adaptor never reaches its backend: {harmless}"
        if knowable:
            status = self.world.status()
            assert status == Severity.CRITICAL or (status == Severity.UNKNOWN and self.world.api_failing), (
                f"{status.name} while the next stop or heartbeat fails through stale "
                f"{sorted(harm_before)}: {_verdict(self.world.last_findings)}")
            if self.justified_before and not self.world.api_failing:
                assert decision is not None and (decision.act or decision.refused_by.gate == "rate" or (
                    decision.refused_by.gate == "finding" and "not confirmed" in decision.refused_by.reading)), (
                    f"no restart although it would clear {sorted(harm_before)}: "
                    f"{decision.readings if decision else 'no finding a restart fixes'}")

    def _limits_kept_in_real_time(self, before):
        """However the wall clock was stepped, a restart comes a cooldown of real time
        after the last one made since the history was last lost, whether or not the guard
        restarted in between, and within the rate window of real time
        there are no more than max_restarts."""
        limits, now = self.world.remediation, self.world.real_time()
        if before:
            assert now - before[-1] >= limits.cooldown, (
                f"restart {now - before[-1]:.0f} real seconds after the last (cooldown {limits.cooldown:g}s)")
        in_window = [t for t in before if now - t < limits.window]
        assert len(in_window) < limits.max_restarts, (
            f"{len(in_window) + 1} restarts in {limits.window:g} real seconds (at most {limits.max_restarts})")

    @invariant()
    def same_facts_same_verdict(self):
        """Judging the same facts again, a moment later or with the server's version
        unreadable this time, gives the same verdict."""
        world = self.world
        snap = world.snapshot()
        history = record(world.history, snap)
        first = _verdict(evaluate(snap, history))
        later = replace(snap, now=snap.now + 1.0)
        assert _verdict(evaluate(later, record(history, later))) == first
        if snap.management_host is not None:
            blind = replace(later, management_host=replace(snap.management_host, server_version=""))
            assert _verdict(evaluate(blind, record(history, blind))) == first


TestDecisionModel = DecisionMachine.TestCase
TestDecisionModel.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=30, deadline=None,
    derandomize=os.environ.get("GUARD_MODEL_RANDOM") != "1", print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _stale_linstor(world, uuid, backend):
    """A LINSTOR pool the agent took, deleted, its controller gone: the guard confirms
    the absence at its second look."""
    world.apply("create_pool", uuid, LINSTOR, backend)
    world.check()
    world.apply("maintenance", uuid, True)
    world.apply("delete_pool", uuid)
    world.apply("set_backend", backend, "down")
    world.check()
    world.check()


def test_model_a_day_forward_between_two_stale_pools_keeps_the_cooldown():
    """A restart that helped, the wall clock a day forward, a second pool stale a minute
    later: the wall clock says a day has passed, the cooldown (120 s of real time) still
    refuses, and lets the restart through once it has run out."""
    world = World()
    _stale_linstor(world, UUIDS[0], "ctl-a")
    assert len(world.restarts) == 1
    world.now += 70
    world.check()
    assert world.history.restarts[-1].outcome == "helped"
    world.clock_step(86400.0)
    _stale_linstor(world, UUIDS[1], "ctl-b")
    refused = world.last_decision.refused_by
    assert refused.gate == "rate" and refused.kind == "cooldown", world.last_decision.readings
    world.now += 60
    world.check()
    assert len(world.restarts) == 2
