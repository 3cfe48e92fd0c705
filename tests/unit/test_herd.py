"""A cluster of guards that see the same stale pool must restart one host at a time,
with and without a maintenance window, and after a cascade of slow restarts; and a host
alone must get its restart (a stagger that moved with each look never came)."""

from __future__ import annotations

from guard.config import RemediationConfig
from guard.history import History, PoolRecord
from guard.model import ManagementHost
from guard.policy import ClusterView, InFlight, decide
from tests.support.herd_sim import POOL, STALE, cascade_case, simulate, window_case


def test_sixteen_hosts_one_at_a_time():
    result = simulate(16)
    assert len(result.restarts) == 16
    assert result.most_in_a_slot == 1 and result.most_disconnected == 1


def test_a_maintenance_window_does_not_release_a_herd_at_its_opening():
    """Removed at 23:00, window 02:00-04:00: every host waited for 02:00, and they still
    go one per slot, in turn."""
    result = window_case(16)
    assert len(result.restarts) == 16
    assert result.most_in_a_slot == 1 and result.most_disconnected == 1
    spread = result.restarts[-1] - result.restarts[0]
    assert spread >= 15 * 30.0 * 0.5, f"16 restarts within {spread:.0f}s of the window's opening"


def test_after_a_slow_cascade_hosts_still_go_one_at_a_time():
    result = cascade_case(16)
    assert len(result.restarts) == 16
    assert result.most_in_a_slot == 1 and result.most_disconnected == 1


def test_hosts_that_look_less_often_than_a_slot_still_go_one_per_slot():
    """Found by the property test of the earlier, removal-anchored stagger: a host that
    first looked after its own slot and a neighbour's had passed went with the neighbour."""
    result = simulate(2, slot=10.0, tick=15.0, lag=3.0, restart=8.0)
    assert len(result.restarts) == 2 and result.most_in_a_slot == 1 and result.most_disconnected == 1
    result = simulate(6, slot=60.0, tick=15.0, restart=5.0, lag=15.0)
    assert len(result.restarts) == 6 and result.most_in_a_slot == 1 and result.most_disconnected == 1


def test_a_held_pool_in_maintenance_gets_its_restart_in_a_one_host_cluster():
    """The finding of a pool in Maintenance has no removal moment. The stagger was once
    anchored at each evaluation's now, so the slot kept moving ahead: refused for ever."""
    history = History(pools=(PoolRecord(POOL, "Linstor", last_listed=0.0, last_state="Maintenance"),))
    cluster = ClusterView("h1", (ManagementHost("h1", "kvm1", "Up", "c1"),))
    config = RemediationConfig(stagger_slot=30.0)
    acted_at = None
    for step in range(200):
        now = 1000.0 + step * 5.0
        decision = decide([STALE], "remediate", config, history, now, InFlight(), cluster)
        if decision.act:
            acted_at = now
            break
    assert acted_at is not None and acted_at - 1000.0 <= 30.0
