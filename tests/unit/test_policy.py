"""The restart gates, in order, each with a reading (guard.policy is pure)."""

from __future__ import annotations

import time

from guard.config import RemediationConfig
from guard.elapsed import BootClock, RestartClock, boot_ages
from guard.history import History, RestartRecord
from guard.model import ChildProcess, Evidence, Finding, ManagementHost, Severity
from guard.policy import (
    ClusterView,
    InFlight,
    decide,
    next_opening,
    turn,
)
from guard.record import judge_last_restart

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
        now=NOW, force=False, config=CONFIG, problem="", wait_turn=True, ages=None):
    return decide(list(findings), mode, config, history, now, in_flight, cluster, force, problem, wait_turn,
                  ages)


def owner(ids, now, slot=30.0):
    """The host whose turn `now` is."""
    return next(h for h in ids if turn(h, ids, now, slot)[0])


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
    assert not run(cluster=cluster, wait_turn=False).act
    assert not run(cluster=cluster, force=True).act
    unreadable = run(problem="listHosts: connection refused").refused_by
    assert unreadable.gate == "cluster" and "cannot read" in unreadable.reading


def test_every_slot_has_one_owner_and_every_host_a_turn_each_round():
    ids = tuple(f"host-{i}" for i in range(16))
    starts = [NOW - NOW % 30.0 + k * 30.0 for k in range(32)]
    owners = [[h for h in ids if turn(h, ids, t + 1.0, 30.0)[0]] for t in starts]
    assert all(len(o) == 1 for o in owners)
    assert sorted(o[0] for o in owners[:16]) == sorted(ids) and owners[:16] == owners[16:]
    assert all(not turn(h, ids, t + 20.0, 30.0)[0] for h in ids for t in starts), "acts in a slot's second half"
    assert turn("host-3", ids, NOW, 30.0) == turn("host-3", tuple(reversed(ids)), NOW, 30.0)


def test_outside_its_turn_a_host_waits_for_the_next_one():
    ids = tuple(f"host-{i}" for i in range(4))
    start = NOW - NOW % 30.0
    now_owner = owner(ids, start + 1.0)
    other = next(h for h in ids if h != now_owner)
    cluster = ClusterView(other, tuple(host(h) for h in ids))
    early = run(cluster=cluster, now=start + 1.0)
    assert not early.act and "staggered" in early.refused_by.reading
    assert early.wait_until > start + 1.0 and owner(ids, early.wait_until) == other
    assert run(cluster=cluster, now=early.wait_until).act
    assert run(cluster=cluster, now=start + 1.0, wait_turn=False).act, "an operator's restart-agent waits for no turn"


def test_a_window_refusal_names_when_it_can_turn():
    minute = time.localtime(NOW).tm_hour * 60 + time.localtime(NOW).tm_min
    later = ((minute + 60) % 1440, (minute + 61) % 1440)
    opens = next_opening(NOW, (later,))
    assert 3540 <= opens - NOW <= 3600 and time.localtime(opens).tm_min == later[0] % 60
    refused = run(config=RemediationConfig(windows=(later,)))
    assert refused.refused_by.gate == "window" and refused.wait_until == opens


def test_maintenance_window():
    minute = time.localtime(NOW).tm_hour * 60 + time.localtime(NOW).tm_min
    inside = RemediationConfig(windows=((minute, minute + 1),))
    outside = RemediationConfig(windows=(((minute + 60) % 1440, (minute + 61) % 1440),))
    assert run(config=inside).act
    assert run(config=outside).refused_by.gate == "window"


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


def test_outside_a_window_the_window_refuses_and_the_turn_is_judged_once_it_opens():
    """The operator is told the window is the reason (it names when it opens), not a
    stagger slot that would come round long before it."""
    ids = ("host-a", "host-b")
    start = NOW - NOW % 30.0
    other = next(h for h in ids if h != owner(ids, start + 1.0))
    minute = time.localtime(start).tm_hour * 60 + time.localtime(start).tm_min
    later = RemediationConfig(windows=(((minute + 60) % 1440, (minute + 61) % 1440),), stagger_slot=30)
    refused = run(cluster=ClusterView(other, tuple(host(h) for h in ids)), now=start + 1.0, config=later)
    assert refused.refused_by.gate == "window" and gates(refused)["cluster"]
    assert refused.wait_until == next_opening(start + 1.0, later.windows)


def test_a_host_alone_in_its_cluster_has_every_slot():
    alone = ClusterView("solo", (host("solo"),))
    for offset in (0.0, 14.0, 16.0, 29.9):
        assert run(cluster=alone, now=NOW - NOW % 30.0 + offset).act


STEADY = 5000.0
"""A monotonic clock reading: any value, only its differences count."""
NO_BOOT = BootClock("", 0.0)
"""No boot id (no /proc): the restarts are timed as before the history kept boot clocks."""
THIS_BOOT = "8d2c6d4e-2f56-4a3c-9d1e-5b0f1e7a9c21"


def test_the_daemon_times_a_cooldown_in_real_time_through_wall_clock_steps():
    """A restart a minute ago, then the wall clock a day forward, then an hour back: the
    cooldown (600 s) ends 600 real seconds after the restart, not at either step."""
    history = History(restarts=(RestartRecord(NOW - 60, "r", 1, pools=(POOL,), outcome="helped"),))
    clock = RestartClock()
    looks = [(NOW, STEADY), (NOW + 86400 + 5, STEADY + 5), (NOW - 3600 + 10, STEADY + 10)]
    for wall, steady in looks:
        refused = run(history=history, now=wall, ages=clock.ages(history, wall, steady, NO_BOOT)).refused_by
        assert refused.gate == "rate" and refused.kind == "cooldown"
        assert f"last restart {steady - STEADY + 60:.0f}s ago" in refused.reading
    assert run(history=history, now=NOW - 3600 + 541, ages=clock.ages(history, NOW - 3600 + 541, STEADY + 541, NO_BOOT)).act
    assert run(history=history, now=NOW + 86405).act, "without the daemon's timing, the wall clock's"


def test_a_day_forward_does_not_empty_the_rate_window():
    history = History(restarts=(RestartRecord(NOW - 1900, "r", 1, pools=(POOL,), outcome="helped"),
                                RestartRecord(NOW - 1200, "r", 1, pools=(POOL,), outcome="helped")))
    clock = RestartClock()
    assert "2 of 2 restarts used" in run(history=history, ages=clock.ages(history, NOW, STEADY, NO_BOOT)).refused_by.reading
    later = NOW + 86400 + 30
    refused = run(history=history, now=later, ages=clock.ages(history, later, STEADY + 30, NO_BOOT)).refused_by
    assert refused.gate == "rate" and "2 of 2 restarts used" in refused.reading


def test_a_restart_first_seen_ahead_of_the_wall_clock_counts_as_just_made():
    """Recorded, then the clock stepped back before this daemon saw it: its real age is
    unknown, and zero keeps every limit."""
    history = History(restarts=(RestartRecord(NOW + 3000, "r", 1, pools=(POOL,), outcome="helped"),))
    clock = RestartClock()
    assert clock.ages(history, NOW, STEADY, NO_BOOT) == {NOW + 3000: 0.0}
    assert clock.ages(history, NOW + 601, STEADY + 601, NO_BOOT) == {NOW + 3000: 601.0}
    assert run(history=history, now=NOW + 601, ages=clock.ages(history, NOW + 601, STEADY + 601, NO_BOOT)).act


def test_a_restart_the_daemon_makes_is_timed_from_when_it_is_made():
    """A step between the restart and the next look at the saved record changes nothing,
    and a record the history no longer keeps is forgotten."""
    clock = RestartClock()
    clock.started(NOW, STEADY)
    assert clock.ages(EMPTY, NOW, STEADY + 1, NO_BOOT) == {NOW: 1.0}, "not saved yet: still timed"
    made = History(restarts=(RestartRecord(NOW, "r", 1, pools=(POOL,), outcome="verified"),))
    assert clock.ages(made, NOW + 86400 + 2, STEADY + 2, NO_BOOT) == {NOW: 2.0}
    assert clock.ages(EMPTY, NOW + 86400 + 3, STEADY + 3, NO_BOOT) == {}


def test_the_settle_of_a_verified_restart_is_timed_in_real_time():
    """A day forward ten seconds after the restart: judged 60 real seconds after it, not
    at once (the agent has not yet taken its pools again, and the breaker would open)."""
    verified = History(restarts=(RestartRecord(NOW - 10, "r", 1, pools=(POOL,), outcome="verified"),))
    clock = RestartClock()
    clock.ages(verified, NOW, STEADY, NO_BOOT)
    stepped = NOW + 86400
    assert judge_last_restart(verified, [STALE], stepped, 60, clock.ages(verified, stepped, STEADY, NO_BOOT)) == verified
    settled = judge_last_restart(verified, [], stepped + 50, 60, clock.ages(verified, stepped + 50, STEADY + 50, NO_BOOT))
    assert settled.restarts[-1].outcome == "helped"


def test_a_step_is_told_once_and_a_slew_never():
    clock = RestartClock()
    assert clock.step(NOW, STEADY) is None
    assert clock.step(NOW + 10.5, STEADY + 10) is None
    assert clock.step(NOW - 3600 + 20, STEADY + 20) == -3600.5
    assert clock.step(NOW - 3600 + 30, STEADY + 30) is None
    assert clock.step(NOW + 86400, STEADY + 40) == 86400 + 3600 - 40


def test_a_restart_of_this_boot_is_timed_by_the_boot_clock_whoever_looks_after_any_step():
    """Recorded with the boot clock, a restart a minute ago is a minute old for a guard
    started after the wall clock went a day forward, and for check or restart-agent
    (no RestartClock at all); its cooldown ends 600 boot-clock seconds after it."""
    made = RestartRecord(NOW - 60, "r", 1, pools=(POOL,), outcome="helped", boot_id=THIS_BOOT, boot_s=900.0)
    history = History(restarts=(made,))
    stepped, boot = NOW + 86400, BootClock(THIS_BOOT, 960.0)
    assert boot_ages(history, boot) == {NOW - 60: 60.0}
    for ages in (boot_ages(history, boot), RestartClock().ages(history, stepped, STEADY, boot)):
        refused = run(history=history, now=stepped, ages=ages).refused_by
        assert refused.gate == "rate" and refused.kind == "cooldown", refused
        assert "last restart 60s ago" in refused.reading
    assert run(history=history, now=stepped, ages=boot_ages(history, BootClock(THIS_BOOT, 1501.0))).act
    assert not run(history=history, now=stepped - 86400 - 3600,
                   ages=boot_ages(history, BootClock(THIS_BOOT, 1499.0))).act, "an hour back, too"


def test_a_restart_of_another_boot_or_without_a_boot_clock_is_timed_as_before():
    """After a reboot the boot clock starts again: an older boot's reading says nothing,
    and neither does a record an older guard wrote without one."""
    other = RestartRecord(NOW - 60, "r", 1, pools=(POOL,), boot_id="another-boot", boot_s=900.0)
    older = RestartRecord(NOW - 30, "r", 1, pools=(POOL,))
    history = History(restarts=(other, older))
    assert boot_ages(history, BootClock(THIS_BOOT, 5.0)) == {}
    assert boot_ages(history, NO_BOOT) == {}
    assert RestartClock().ages(history, NOW, STEADY, BootClock(THIS_BOOT, 5.0)) == {NOW - 60: 60.0, NOW - 30: 30.0}
