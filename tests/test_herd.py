"""A cluster of guards that see the same stale pool must restart one host at a time,
with and without a maintenance window, and after a cascade of slow restarts; and a host
alone must get its restart (the stagger anchor must not move with each look)."""

from __future__ import annotations

from guard.config import RemediationConfig
from guard.history import History, PoolRecord
from guard.model import ManagementHost
from guard.policy import ClusterView, InFlight, anchor_for, decide, note_warranted
from tests.harness.herd_sim import POOL, STALE, cascade_case, simulate, window_case


def test_sixteen_hosts_one_at_a_time():
    result = simulate(16)
    assert len(result.restarts) == 16 and result.most_disconnected == 1


def test_a_maintenance_window_does_not_release_a_herd_at_its_opening():
    """Removed at 23:00, window 02:00-04:00: the stagger counts from 02:00, not from the
    removal, when every host's slot would long have passed."""
    result = window_case(16)
    assert len(result.restarts) == 16 and result.most_disconnected == 1
    spread = result.restarts[-1] - result.restarts[0]
    assert spread >= 15 * 20.0, f"16 restarts within {spread:.0f}s of the window's opening"


def test_after_a_slow_cascade_hosts_still_go_one_at_a_time():
    result = cascade_case(16)
    assert len(result.restarts) == 16 and result.most_disconnected == 1


def test_a_held_pool_in_maintenance_gets_its_restart_in_a_one_host_cluster():
    """The finding of a pool in Maintenance has no removal moment. The anchor used to be
    each evaluation's now, so the slot kept moving ahead: refused for ever."""
    history = History(pools=(PoolRecord(POOL, "Linstor", last_listed=0.0, last_state="Maintenance"),))
    cluster = ClusterView("h1", (ManagementHost("h1", "kvm1", "Up", "c1"),))
    config = RemediationConfig(stagger_slot=30.0)
    acted_at = None
    for step in range(200):
        now = 1000.0 + step * 5.0
        history = note_warranted(history, [STALE], now)
        decision = decide([STALE], "remediate", config, history, now, InFlight(), cluster,
                          anchor_for((STALE,), history, now))
        if decision.act:
            acted_at = now
            break
    assert acted_at is not None and acted_at - 1000.0 <= 30.0
