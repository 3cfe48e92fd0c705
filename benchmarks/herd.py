"""Herd test: N guards of one cluster see the same LINSTOR pool deleted and its controller
gone at the same instant. How many hosts are ever Disconnected at once (must never
exceed 1), and how long until all are remediated?

Each guard is a thread running the daemon's restart path for real: the cluster read
through `cs` against the management emulator (signed API calls), guard.policy.decide with
the stagger's turns on the shared clock and the busy-peer gate. A "restart" makes the host Disconnected
in the emulator (after --lag, as the management server notices the dropped connection),
then Up again after --restart seconds.

    .venv/bin/python benchmarks/herd.py --hosts 16 --slot 1.0 --restart 0.6 --lag 0.2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guard.config import Config, Credentials, ManagementConfig, RemediationConfig  # noqa: E402
from guard.gates import cluster_reading  # noqa: E402
from guard.history import History, PoolRecord  # noqa: E402
from guard.policy import InFlight, decide  # noqa: E402
from tests.support import herd_sim  # noqa: E402
from tests.support.emulators.management import ManagementEmulator  # noqa: E402

KEY, SECRET = "herd-key", "herd-secret"
POOL, STALE = herd_sim.POOL, herd_sim.STALE


def guard(emulator: ManagementEmulator, config: Config, host: dict, removal: float, args: argparse.Namespace,
          acted: dict, done: dict) -> None:
    history = History(pools=(PoolRecord(POOL, "Linstor", removed_at=removal, absence_confirmed=True),))
    while True:
        view, problem = cluster_reading(config, host["id"], host["clusterid"])
        now = time.time()  # after the reading, as the daemon: the turn is judged when acting
        decision = decide([STALE], "remediate", config.remediation, history, now, InFlight(), view,
                          cluster_problem=problem)
        if decision.act:
            acted[host["id"]] = now
            time.sleep(args.lag)
            emulator.set_host_state(host["id"], "Disconnected")
            time.sleep(args.restart)
            emulator.set_host_state(host["id"], "Up")
            done[host["id"]] = time.time() - removal
            return
        wait = args.poll if decision.wait_until is None else decision.wait_until - time.time()
        time.sleep(min(max(wait, 0.01), args.poll))


def run(args: argparse.Namespace) -> dict:
    with ManagementEmulator({KEY: SECRET}) as emulator, tempfile.TemporaryDirectory():
        hosts = [emulator.add_host(f"kvm-{i:02d}", ipaddress=f"10.0.0.{i + 1}") for i in range(args.hosts)]
        config = Config(management=ManagementConfig("herd.ini", Credentials(emulator.endpoint, KEY, SECRET),
                                                    timeout=5.0),
                        remediation=RemediationConfig(stagger_slot=args.slot))
        busy_max = 0
        stop = threading.Event()

        def monitor() -> None:
            nonlocal busy_max
            while not stop.is_set():
                states = [h["state"] for h in emulator.snapshot()["hosts"]]
                busy_max = max(busy_max, sum(s in ("Disconnected", "Connecting") for s in states))
                time.sleep(0.005)

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        removal = time.time()
        acted: dict = {}
        done: dict = {}
        threads = [threading.Thread(target=guard, args=(emulator, config, h, removal, args, acted, done))
                   for h in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.hosts * (args.slot + args.restart + args.lag) * 4 + 60)
        stop.set()
        watcher.join(2)
    begun = sorted(acted.values())
    gaps = [b - a for a, b in zip(begun, begun[1:])]
    per_slot: dict[int, int] = {}
    for at in begun:
        per_slot[int(at // args.slot)] = per_slot.get(int(at // args.slot), 0) + 1
    return {"hosts": args.hosts, "remediated": len(done), "max_disconnected_at_once": busy_max,
            "most_restarts_begun_in_one_slot": max(per_slot.values(), default=0),
            "all_remediated_s": max(done.values()) if done else None,
            "median_gap_between_restarts_s": statistics.median(gaps) if gaps else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--slot", type=float, default=1.0, help="[remediation] stagger_slot, seconds")
    parser.add_argument("--restart", type=float, default=0.6,
                        help="seconds a restarted host stays Disconnected")
    parser.add_argument("--lag", type=float, default=0.2,
                        help="seconds before the server marks it Disconnected")
    parser.add_argument("--poll", type=float, default=0.1, help="how often a waiting guard re-checks")
    args = parser.parse_args()
    result = run(args)
    for key, value in result.items():
        print(f"{key:<32} {value if not isinstance(value, float) else round(value, 2)}")
    ok = (result["remediated"] == result["hosts"] and result["max_disconnected_at_once"] <= 1
          and result["most_restarts_begun_in_one_slot"] <= 1)
    print(f"simulated time, {args.hosts} hosts, 30 s slots, 20 s restarts (tests/support/herd_sim.py):")
    for case, sim in (("plain", herd_sim.simulate(args.hosts)), ("window", herd_sim.window_case(args.hosts)),
                      ("cascade", herd_sim.cascade_case(args.hosts)),
                      ("model", herd_sim.simulate_model(args.hosts)[0])):
        ok = ok and sim.most_disconnected <= 1 and sim.most_in_a_slot <= 1 and len(sim.restarts) == args.hosts
        print(f"  {case:<8} most Disconnected at once {sim.most_disconnected}, most restarts begun in one "
              f"slot {sim.most_in_a_slot}, all remediated after {sim.last_restart_s:.0f} s")
    print("herd: " + ("OK" if ok else "FAILED (more than one host down at once or restarting in one slot, "
                      "or not all remediated)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
