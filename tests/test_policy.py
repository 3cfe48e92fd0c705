"""The restart gates, in order, each with a reading (guard.policy is pure)."""

from __future__ import annotations

import time

from guard.config import RemediationConfig
from guard.history import History, PoolRecord, RestartRecord
from guard.model import ChildProcess, Evidence, Finding, ManagementHost, Severity
from guard.policy import (
    ClusterView,
    InFlight,
    anchor_for,
    decide,
    judge_last_restart,
    stagger_delay,
)

NOW = 1_700_000_000.0
POOL = "11111111-2222-3333-4444-555555555555"
STALE = Finding("stale-pool", Severity.CRITICAL, (Evidence("probe", "refused"),), "restart",
                pool_uuid=POOL, pool_type="Linstor", restart_helps=True)
OUTAGE = Finding("backend-unreachable", Severity.CRITICAL, (), "fix the backend", pool_uuid=POOL)
CONFIG = RemediationConfig(max_restarts=2, window=3600, cooldown=600, stagger_slot=30)
IDLE = InFlight()
EMPTY = History()


def host(host_id, state="Up"):
    return ManagementHost(host_id, f"kvm-{host_id}", state, "c1", "z1")


def gates(decision):
    return {r.gate: r.passed for r in decision.readings}


def run(findings=(STALE,), mode="remediate", history=EMPTY, in_flight=IDLE, cluster=None,
        anchor=NOW - 3600, now=NOW, force=False, config=CONFIG, problem=""):
    return decide(list(findings), mode, config, history, now, in_flight, cluster, anchor, force, problem)


def test_all_gates_pass_for_a_stale_pool():
    decision = run()
    assert decision.act and decision.refused_by is None
    assert [r.gate for r in decision.readings] == ["finding", "mode", "in-flight", "rate", "cluster", "window"]
    assert decision.pools == (POOL,)


def test_no_restart_when_it_would_not_help():
    decision = run(findings=[OUTAGE])
    assert not decision.act and decision.refused_by.gate == "finding"


def test_observe_never_acts():
    decision = run(mode="observe")
    assert not decision.act and decision.refused_by.gate == "mode"
    assert "never restarts" in decision.refused_by.reading


def test_in_flight_storage_work_and_domain_jobs_refuse():
    child = ChildProcess(4242, "qemu-img", "qemu-img convert -O qcow2 /a /b")
    script = ChildProcess(4343, "bash", "/bin/bash /usr/share/cloudstack-common/scripts/storage/qcow2/x.sh")
    harmless = ChildProcess(4444, "ip", "ip link show")
    assert not run(in_flight=InFlight((child,))).act
    assert not run(in_flight=InFlight((script,))).act
    assert run(in_flight=InFlight((harmless,))).act
    jobs = run(in_flight=InFlight((), ("i-2-10-VM",)))
    assert not jobs.act and "i-2-10-VM" in jobs.refused_by.reading
    unknown = run(in_flight=InFlight((), (), "libvirt down"))
    assert not unknown.act and "cannot tell" in unknown.refused_by.reading


def test_rate_limit_cooldown_and_breaker():
    two = History(restarts=(RestartRecord(NOW - 3000, "r", 1), RestartRecord(NOW - 1000, "r", 2)))
    assert run(history=two).refused_by.reading.startswith("2 of 2 restarts used")
    recent = History(restarts=(RestartRecord(NOW - 100, "r", 1),))
    assert "cooldown" in run(history=recent).refused_by.reading
    old = History(restarts=(RestartRecord(NOW - 7200, "r", 1),))
    assert run(history=old).act
    broken = History(breaker_open_since=NOW - 50, breaker_reason="did not clear")
    refused = run(history=broken).refused_by
    assert refused.gate == "rate" and "--force" in refused.reading


def test_force_overrides_mode_rate_and_breaker_but_not_in_flight():
    broken = History(breaker_open_since=NOW - 50, breaker_reason="x")
    assert run(mode="observe", history=broken, force=True).act
    child = ChildProcess(1, "qemu-img", "qemu-img convert")
    assert not run(force=True, in_flight=InFlight((child,))).act


def test_cluster_gate_refuses_when_a_peer_is_down_and_when_unreadable():
    cluster = ClusterView("a", (host("a"), host("b", "Disconnected"), host("c")))
    refused = run(cluster=cluster).refused_by
    assert refused.gate == "cluster" and "kvm-b Disconnected" in refused.reading
    assert not run(cluster=cluster, force=True).act
    unreadable = run(problem="listHosts: connection refused").refused_by
    assert unreadable.gate == "cluster" and "cannot read" in unreadable.reading


def test_stagger_gives_every_host_its_own_slot():
    ids = tuple(f"host-{i}" for i in range(16))
    delays = sorted(stagger_delay(h, ids, 30.0) for h in ids)
    slots = [int(d // 30.0) for d in delays]
    assert slots == list(range(16))
    assert stagger_delay("host-3", ids, 30.0) == stagger_delay("host-3", tuple(reversed(ids)), 30.0)


def test_stagger_waits_from_the_anchor():
    ids = tuple(f"host-{i}" for i in range(4))
    last = max(ids, key=lambda h: stagger_delay(h, ids, 30.0))
    cluster = ClusterView(last, tuple(host(h) for h in ids))
    early = run(cluster=cluster, anchor=NOW - 1)
    assert not early.act and early.wait_until > NOW and "staggered" in early.refused_by.reading
    assert run(cluster=cluster, anchor=NOW - 200).act


def test_maintenance_window():
    minute = time.localtime(NOW).tm_hour * 60 + time.localtime(NOW).tm_min
    inside = RemediationConfig(windows=((minute, minute + 1),))
    outside = RemediationConfig(windows=(((minute + 60) % 1440, (minute + 61) % 1440),))
    assert run(config=inside).act
    assert run(config=outside).refused_by.gate == "window"


def test_anchor_is_the_removal_moment():
    history = History(pools=(PoolRecord(POOL, "Linstor", removed_at=NOW - 42),))
    assert anchor_for((STALE,), history, NOW) == NOW - 42
    assert anchor_for((), history, NOW) == NOW


def test_a_restart_that_did_not_help_opens_the_breaker_and_clearing_closes_it():
    verified = History(restarts=(RestartRecord(NOW - 100, "r", 1, pools=(POOL,), outcome="verified"),))
    assert judge_last_restart(verified, [STALE], NOW - 95, settle=60) == verified
    judged = judge_last_restart(verified, [STALE], NOW, settle=60)
    assert judged.breaker_open_since == NOW and judged.restarts[-1].outcome == "did-not-help"
    assert not run(history=judged).act
    cleared = judge_last_restart(judged, [], NOW + 10, settle=60)
    assert cleared.breaker_open_since is None
    helped = judge_last_restart(verified, [], NOW, settle=60)
    assert helped.restarts[-1].outcome == "helped" and helped.breaker_open_since is None


def test_no_second_restart_before_the_first_is_judged():
    pending = History(restarts=(RestartRecord(NOW - 20, "r", 1, pools=(POOL,), outcome="verified"),))
    config = RemediationConfig(cooldown=1, settle=60)
    refused = run(history=pending, config=config).refused_by
    assert refused.gate == "rate" and "whether the last restart helped" in refused.reading
    judged = History(restarts=(RestartRecord(NOW - 20, "r", 1, pools=(POOL,), outcome="helped"),))
    assert run(history=judged, config=config).act


def test_after_a_busy_peer_the_next_host_in_the_order_goes_next():
    ids = tuple(f"host-{i}" for i in range(8))
    order = sorted(ids, key=lambda h: stagger_delay(h, ids, 10.0))
    peer = order[3]
    after = sorted(ids, key=lambda h: stagger_delay(h, ids, 10.0, after=peer) if h != peer else 1e9)
    assert after[:7] == order[4:] + order[:3]
    assert stagger_delay(order[4], ids, 10.0, after=peer) < 10.0
