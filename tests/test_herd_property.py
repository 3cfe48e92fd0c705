"""The herd under a mix of cluster size, slot, evaluation tick (from ten looks a slot to
one look every four slots), restart length (from a second to three slots), the
management server's lag, a maintenance window and evaluation phases: one restart begun
per stagger slot, never two hosts of the cluster Disconnected at once, every host
remediated.

The one condition: the server marks a restarted host Disconnected within half a slot
(policy.TURN_FRACTION), as it does within seconds when the agent's connection drops.
Before the turns on the shared clock this held only where hosts looked four times a slot
and a restart outlasted a look; the counterexamples then found are example tests in
tests/test_herd.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness.herd_sim import at_local, simulate


@settings(max_examples=15, deadline=None, derandomize=True, print_blob=True)
@given(hosts=st.integers(2, 12), slot=st.sampled_from([10.0, 30.0, 60.0]),
       looks_per_slot=st.sampled_from([10.0, 4.0, 1.0, 0.5, 0.25]),
       restart_slots=st.sampled_from([0.02, 0.3, 1.0, 3.0]), lag_slots=st.sampled_from([0.01, 0.2, 0.45]),
       window=st.booleans(), seed=st.integers(0, 1000))
def test_one_host_at_a_time(hosts, slot, looks_per_slot, restart_slots, lag_slots, window, seed):
    removal = at_local(23)
    result = simulate(hosts, slot=slot, tick=slot / looks_per_slot, restart=max(1.0, restart_slots * slot),
                      lag=lag_slots * slot, removal=removal, start=removal, until=8 * 3600.0,
                      windows=((120, 240),) if window else (), seed=seed)
    assert len(result.restarts) == hosts, f"{len(result.restarts)} of {hosts} remediated"
    assert result.most_in_a_slot == 1
    assert result.most_disconnected == 1
