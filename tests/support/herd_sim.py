"""A cluster of guards in simulated time, each running the pure restart path (decide)
on its own evaluation ticks and at the moment a refusal names, as the daemon re-checks.

All hosts see the same stale pool removed at `removal`. A host that restarts goes
Disconnected for its peers `lag` seconds later, for `restart` seconds. The result is the
largest number of hosts that started a restart within any one stagger slot (the slots on
the wall clock the guards share), and the most that were Disconnected at once. Used by
tests/unit/test_herd.py, tests/unit/test_herd_property.py and benchmarks/herd.py.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

from guard.config import RemediationConfig
from guard.history import History, PoolRecord
from guard.model import Evidence, Finding, ManagementHost, Severity
from guard.policy import ClusterView, InFlight, decide
from tests.support.emulators.agent_model import LINSTOR
from tests.support.model_world import T0, World

POOL = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
STALE = Finding("stale-pool", Severity.CRITICAL, (Evidence("probe", "refused"),), "restart",
                pool_uuid=POOL, pool_type="Linstor", restart_helps=True)


@dataclass(frozen=True)
class HerdResult:
    restarts: tuple[float, ...]
    most_in_a_slot: int
    most_disconnected: int
    last_restart_s: float
    begun_while_a_peer_was_down: int = 0


def _most_in_one_slot(times: list[float], slot: float) -> int:
    counts: dict[int, int] = {}
    for t in times:
        index = int(t // slot)
        counts[index] = counts.get(index, 0) + 1
    return max(counts.values(), default=0)


Look = Callable[[str, float, ClusterView], tuple[Optional[float], Optional[float]]]
"""One host's look at `t` with the cluster as the server shows it: when it began a restart
(None if it did not), and when it asked to look again."""


def _herd(ids: list[str], look: Look, *, slot: float, tick: float, restart: float, lag: float, start: float,
          until: float, seed: int, outage: Optional[tuple[str, float, float]] = None) -> HerdResult:
    """As the daemon: each host looks on its own tick, and again at the moment a refusal
    names (call_later on wait_until), reading the cluster fresh each time. `outage` is
    (host, from, seconds): a peer down for its own reasons, that nobody may restart during."""
    rng = random.Random(seed)
    phase = {h: rng.uniform(0, tick) for h in ids}
    restarted: dict[str, float] = {}

    def state(host: str, now: float) -> str:
        at = restarted.get(host)
        if at is not None and at + lag <= now < at + lag + restart:
            return "Disconnected"
        if outage is not None and host == outage[0] and outage[1] <= now < outage[1] + outage[2]:
            return "Disconnected"
        return "Up"

    due = {h: start + phase[h] for h in ids}
    while due and len(restarted) < len(ids):
        host = min(due, key=lambda h: due[h])
        t = due[host]
        if t >= start + until:
            break
        view = ClusterView(host, tuple(ManagementHost(h, h, state(h, t), "c1") for h in ids))
        began, wake = look(host, t, view)
        if began is not None:
            restarted[host] = began
            del due[host]
        else:
            due[host] = min(t + tick, wake) if wake is not None and wake > t else t + tick
    times = sorted(restarted.values())
    disconnected = max((sum(1 for at in times if at + lag <= t < at + lag + restart)
                        for t in [at + lag for at in times]), default=0)
    in_outage = sum(1 for h, at in restarted.items() if outage is not None and h != outage[0]
                    and outage[1] + lag <= at < outage[1] + outage[2])
    return HerdResult(tuple(times), _most_in_one_slot(times, slot), disconnected,
                      (times[-1] - start) if times else float("nan"), in_outage)


def simulate(hosts: int = 16, *, slot: float = 30.0, tick: float = 5.0, restart: float = 20.0,
             lag: float = 3.0, removal: float = 0.0, start: float = 0.0, until: float = 7200.0,
             windows: tuple[tuple[int, int], ...] = (), seed: int = 1,
             outage: Optional[tuple[int, float, float]] = None) -> HerdResult:
    """The restart path alone (decide), on one confirmed stale-pool finding."""
    ids = [f"host-{n:02d}" for n in range(hosts)]
    config = RemediationConfig(stagger_slot=slot, windows=windows, cooldown=600.0, settle=60.0)
    history = History(pools=(PoolRecord(POOL, "Linstor", removed_at=removal, absence_confirmed=True),))

    def look(host: str, t: float, view: ClusterView) -> tuple[Optional[float], Optional[float]]:
        decision = decide([STALE], "remediate", config, history, t, InFlight(), view)
        return (t if decision.act else None), decision.wait_until

    return _herd(ids, look, slot=slot, tick=tick, restart=restart, lag=lag, start=start, until=until,
                 seed=seed, outage=_outage(ids, outage))


def _outage(ids: list[str], outage: Optional[tuple[int, float, float]]) -> Optional[tuple[str, float, float]]:
    return None if outage is None else (ids[outage[0] % len(ids)], outage[1], outage[2])


def simulate_model(hosts: int = 6, *, slot: float = 30.0, tick: float = 5.0, restart: float = 20.0,
                   lag: float = 3.0, start: float = T0, until: float = 7200.0,
                   windows: tuple[tuple[int, int], ...] = (), seed: int = 1,
                   outage: Optional[tuple[int, float, float]] = None) -> tuple[HerdResult, list[World]]:
    """Every host a ground-truth model with the guard's whole pure core (record, evaluate,
    judge, decide): one LINSTOR pool put into maintenance and deleted on a 4.19 cloud
    (no delete command sent), its controller gone, seen by every guard before `start`."""
    ids = [f"host-{n:02d}" for n in range(hosts)]
    config = RemediationConfig(stagger_slot=slot, windows=windows, cooldown=600.0, settle=60.0,
                               max_restarts=3, window=3600.0)
    worlds = {h: World(host_id=h, mode="observe", remediation=config, now=start - 600.0) for h in ids}
    for world in worlds.values():
        world.apply("create_pool", POOL, LINSTOR, "ctl")
        world.check()
        world.apply("maintenance", POOL, True)
        world.apply("delete_pool", POOL)
        world.apply("set_backend", "ctl", "down")
        world.check()
        world.now += 60.0
        world.check()
        world.mode = "remediate"

    def look(host: str, t: float, view: ClusterView) -> tuple[Optional[float], Optional[float]]:
        world = worlds[host]
        world.now, world.cluster = max(world.now, t), view
        before = len(world.restarts)
        world.check()
        decision = world.last_decision
        began = world.restarts[-1] if len(world.restarts) > before else None
        return began, decision.wait_until if decision is not None else None

    result = _herd(ids, look, slot=slot, tick=tick, restart=restart, lag=lag, start=start, until=until,
                   seed=seed, outage=_outage(ids, outage))
    return result, list(worlds.values())


def at_local(hour: int, minute: int = 0) -> float:
    """An epoch second at this local wall-clock time, on some day: for windows."""
    return time.mktime((2026, 6, 10, hour, minute, 0, 0, 0, -1))


def window_case(hosts: int = 16, slot: float = 30.0) -> HerdResult:
    """The pool removed at 23:00, a 02:00-04:00 window: every host waits for 02:00."""
    removal = at_local(23)
    return simulate(hosts, slot=slot, removal=removal, start=removal, until=6 * 3600.0,
                    windows=((120, 240),))


def cascade_case(hosts: int = 16, slot: float = 30.0) -> HerdResult:
    """Restarts slower than a slot: peers keep seeing a busy host."""
    return simulate(hosts, slot=slot, restart=3 * slot, lag=2.0)
