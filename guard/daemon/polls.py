"""The sources the daemon asks on a schedule: the management server's listing, and the
backends' probes. Both back off while what they ask keeps failing."""

from __future__ import annotations

import asyncio
import contextlib
import time

from guard.backends import ProbeTarget, probe_all
from guard.backoff import Backoff
from guard.collect import probe_targets
from guard.model import ProbeResult, SourceStatus
from guard.record import record
from guard.sources.agentconf import read_agent_properties
from guard.sources.management import read_management

from .runtime import Runtime, jittered
from .state import State

CONFIRM_AFTER_S = 5.0
"""A pool missing from one listing is looked for again this soon, not a poll later."""
MANAGEMENT_BACKOFF_CAP_S = 300.0
"""A failing management server is asked again sooner than a poll first, then less and
less often, never less than every five minutes."""
PROBE_BACKOFF_ROUNDS = 4


async def poll_management(rt: Runtime, state: State) -> None:
    management = rt.config.management
    if management is None:
        state.mark("management", SourceStatus("management", True, "not configured", configured=False))
        return
    backoff = Backoff(management.poll_interval, max(management.poll_interval, MANAGEMENT_BACKOFF_CAP_S))
    while not rt.stopping.is_set():
        if state.props is None:
            state.props, props_status = await rt.in_thread(read_agent_properties, rt.config.agent.properties)
            state.mark("agent-properties", props_status)
        host, pools, elsewhere, status = await rt.in_thread(read_management, management, state.hostname,
                                                            state.props)
        if status.ok:
            state.management = (host, tuple(pools), elsewhere)
            state.listed_at = time.time()
            backoff.reset()
        state.mark("management", status)
        rt.probe_now.set()
        if not status.ok:
            # No early look to confirm an absence: a failing server is asked less often.
            await rt.sleep(backoff.next())
            continue
        interval = jittered(management.poll_interval)
        soonest = min(CONFIRM_AFTER_S, interval)
        await rt.sleep(soonest)
        rt.confirm_now.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(rt.confirm_now.wait(), interval - soonest)


async def run_probes(rt: Runtime, state: State) -> None:
    """Every interval, and after every listing; a round in which a controller did not
    answer backs off, up to PROBE_BACKOFF_ROUNDS intervals (the finding keeps what the
    last round saw), and starts over once all answer."""
    interval = rt.config.probes.interval
    backoff = Backoff(interval, interval * PROBE_BACKOFF_ROUNDS)
    while not rt.stopping.is_set():
        targets = _targets(state)
        results = await probe_all(targets, rt.config)
        probes = {t.pool_uuid: results[t.backend, t.endpoint] for t in targets}
        if {k: v.status for k, v in probes.items()} != {k: v.status for k, v in state.probes.items()}:
            rt.dirty.set()
        state.probes = probes
        if "management" in state.statuses and not state.probes_ready:
            state.probes_ready = True
            rt.dirty.set()
        failing = not all(p.reachable for p in probes.values())
        if failing:
            wait = backoff.next()
        else:
            backoff.reset()
            wait = jittered(interval)
        await _until_probe_due(rt, state, wait, results, failing)


def _targets(state: State) -> list[ProbeTarget]:
    """From a provisional folding of the picture: the judging loop folds the real one."""
    snap = state.snapshot()
    return probe_targets(record(state.history, snap), snap)


async def _until_probe_due(rt: Runtime, state: State, wait: float,
                           results: dict[tuple[str, str], ProbeResult], failing: bool) -> None:
    """A new listing, or a pool the agent was newly seen to take, brings the next round
    forward, unless the last one failed and no new endpoint is named: then the back-off
    holds, and a new pool at an endpoint already asked (every StorPool pool of the host
    shares one) gets that answer at once."""
    loop = asyncio.get_running_loop()
    due = loop.time() + wait
    while not rt.stopping.is_set() and loop.time() < due:
        rt.probe_now.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(rt.probe_now.wait(), due - loop.time())
        if not rt.probe_now.is_set() or not failing:
            return
        targets = _targets(state)
        if any((t.backend, t.endpoint) not in results for t in targets) or (
                "management" in state.statuses and not state.probes_ready):
            return
        known = {t.pool_uuid: results[t.backend, t.endpoint] for t in targets}
        if known.keys() - state.probes.keys():
            state.probes = known
            rt.dirty.set()
