"""The herd under a mix of cluster size, slot, evaluation tick (from ten looks a slot to
one look every four slots), restart length (from a second to three slots), the
management server's lag, a maintenance window and evaluation phases: one restart begun
per stagger slot, never two hosts of the cluster Disconnected at once, every host
remediated.

The one condition: the server marks a restarted host Disconnected within half a slot
(policy.TURN_FRACTION), as it does within seconds when the agent's connection drops.
Before the turns on the shared clock this held only where hosts looked four times a slot
and a restart outlasted a look; the counterexamples then found are example tests in
tests/unit/test_herd.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.herd_sim import at_local, simulate, simulate_model

TIMING = dict(hosts=st.integers(2, 12), slot=st.sampled_from([10.0, 30.0, 60.0]),
              looks_per_slot=st.sampled_from([10.0, 4.0, 1.0, 0.5, 0.25]),
              restart_slots=st.sampled_from([0.02, 0.3, 1.0, 3.0]), lag_slots=st.sampled_from([0.01, 0.2, 0.45]),
              window=st.booleans(), outage=st.one_of(st.none(), st.tuples(
                  st.integers(0, 11), st.floats(0, 1800), st.floats(1, 1800))),
              seed=st.integers(0, 1000))


def _assert_one_at_a_time(result, hosts):
    assert len(result.restarts) == hosts, f"{len(result.restarts)} of {hosts} remediated"
    assert result.most_in_a_slot == 1
    assert result.most_disconnected == 1
    assert result.begun_while_a_peer_was_down == 0


@settings(max_examples=15, deadline=None, derandomize=True, print_blob=True)
@given(**TIMING)
def test_one_host_at_a_time(hosts, slot, looks_per_slot, restart_slots, lag_slots, window, outage, seed):
    removal = at_local(23)
    outage = outage and (outage[0], removal + outage[1], outage[2])
    result = simulate(hosts, slot=slot, tick=slot / looks_per_slot, restart=max(1.0, restart_slots * slot),
                      lag=lag_slots * slot, removal=removal, start=removal, until=8 * 3600.0,
                      windows=((120, 240),) if window else (), seed=seed, outage=outage)
    _assert_one_at_a_time(result, hosts)


@settings(max_examples=15, deadline=None, derandomize=True, print_blob=True)
@given(**TIMING)
def test_one_host_at_a_time_with_every_host_a_ground_truth_model(
        hosts, slot, looks_per_slot, restart_slots, lag_slots, window, outage, seed):
    """The same cluster, each host the agent model with the guard's whole pure core: the
    findings come from what each agent really holds, and each restart must clear it."""
    start = at_local(1, 30)
    outage = outage and (outage[0], start + outage[1], outage[2])
    result, worlds = simulate_model(hosts, slot=slot, tick=slot / looks_per_slot,
                                    restart=max(1.0, restart_slots * slot), lag=lag_slots * slot, start=start,
                                    until=4 * 3600.0, windows=((120, 240),) if window else (), seed=seed,
                                    outage=outage)
    _assert_one_at_a_time(result, hosts)
    assert all(len(w.restarts) == 1 and not w.model.stale() for w in worlds)
