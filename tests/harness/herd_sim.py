"""A cluster of guards in simulated time, each running the pure restart path (decide)
on its own evaluation ticks and at the moment a refusal names, as the daemon re-checks.

All hosts see the same stale pool removed at `removal`. A host that restarts goes
Disconnected for its peers `lag` seconds later, for `restart` seconds. The result is the
largest number of hosts that started a restart within any one stagger slot (the slots on
the wall clock the guards share), and the most that were Disconnected at once. Used by
tests/test_herd.py, tests/test_herd_property.py and benchmarks/herd.py.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from guard.config import RemediationConfig
from guard.history import History, PoolRecord
from guard.model import Evidence, Finding, ManagementHost, Severity
from guard.policy import ClusterView, InFlight, decide

POOL = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
STALE = Finding("stale-pool", Severity.CRITICAL, (Evidence("probe", "refused"),), "restart",
                pool_uuid=POOL, pool_type="Linstor", restart_helps=True)


@dataclass(frozen=True)
class HerdResult:
    restarts: tuple[float, ...]
    most_in_a_slot: int
    most_disconnected: int
    last_restart_s: float


def _most_in_one_slot(times: list[float], slot: float) -> int:
    counts: dict[int, int] = {}
    for t in times:
        index = int(t // slot)
        counts[index] = counts.get(index, 0) + 1
    return max(counts.values(), default=0)


def simulate(hosts: int = 16, *, slot: float = 30.0, tick: float = 5.0, restart: float = 20.0,
             lag: float = 3.0, removal: float = 0.0, start: float = 0.0, until: float = 7200.0,
             windows: tuple[tuple[int, int], ...] = (), seed: int = 1) -> HerdResult:
    rng = random.Random(seed)
    ids = [f"host-{n:02d}" for n in range(hosts)]
    config = RemediationConfig(stagger_slot=slot, windows=windows, cooldown=600.0, settle=60.0)
    record = PoolRecord(POOL, "Linstor", removed_at=removal, absence_confirmed=True)
    history = {h: History(pools=(record,)) for h in ids}
    phase = {h: rng.uniform(0, tick) for h in ids}
    restarted: dict[str, float] = {}

    def state(host: str, now: float) -> str:
        at = restarted.get(host)
        return "Disconnected" if at is not None and at + lag <= now < at + lag + restart else "Up"

    # As the daemon: each host looks on its own tick, and again at the moment a refusal
    # names (call_later on wait_until), reading the cluster fresh each time.
    due = {h: start + phase[h] for h in ids}
    while due and len(restarted) < hosts:
        host = min(due, key=lambda h: due[h])
        t = due[host]
        if t >= start + until:
            break
        view = ClusterView(host, tuple(ManagementHost(h, h, state(h, t), "c1") for h in ids))
        decision = decide([STALE], "remediate", config, history[host], t, InFlight(), view)
        if decision.act:
            restarted[host] = t
            del due[host]
        else:
            wake = decision.wait_until
            due[host] = min(t + tick, wake) if wake is not None and wake > t else t + tick
    times = sorted(restarted.values())
    disconnected = max((sum(1 for at in times if at + lag <= t < at + lag + restart)
                        for t in [at + lag for at in times]), default=0)
    slots = _most_in_one_slot(times, slot)
    return HerdResult(tuple(times), slots, disconnected,
                      (times[-1] - start) if times else float("nan"))


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
