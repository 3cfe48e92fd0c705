"""`cloudstack-guard check` wall time on a healthy host: is one pass cheap enough for a
monitoring system to run it every minute?

Builds a whole fake KVM host on loopback (tests.support.host.GuardHost): a private
libvirtd in a temporary directory, the LINSTOR and management-server emulators with one
LINSTOR pool, two local dir pools defined in libvirt (and known to the management server,
as local storage is), and the stand-in agent. After one warm-up check, it runs the real
CLI as a subprocess, as Nagios/Icinga would, and reports the median and p90 wall time,
the CLI's own `check_time` from the JSON perfdata, and how much of the wall time is
Python start-up plus `import guard.cli`. The goal is a ratio, since this machine's speed
moves between runs: each check is timed right after a `python -c "import libvirt,
psutil"` (the floor: what any Python tool reading libvirt and processes pays), and the
median of the per-pair ratios is reported (goal <= 2.5). Children run with bytecode cached, as on an
installed host (see compiled_env); when the inherited environment forbids that
(PYTHONDONTWRITEBYTECODE), the checks are also timed as inherited.

Needs root (the private libvirtd). Every run must exit 0 (OK): timing a broken check
would be meaningless, so the benchmark aborts instead.

    python benchmarks/bench_check.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_S = 0.5
FLOOR_RATIO_GOAL = 2.5
FLOOR_CODE = "import libvirt, psutil"
AGENT_SHELL = "com.cloud.agent.AgentShell"
FOREIGN_AGENT_WAIT_S = 60.0
_CHECK_TIME = re.compile(r"\bcheck_time=([0-9.]+)s")


class BenchmarkError(RuntimeError):
    """The setup or a run was not healthy; the message says what it printed."""


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p90 of 10 runs is the 9th fastest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def compiled_env(pycache_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The environment for timed children: bytecode cached, as on an installed host.

    Packaged installs (.deb via py3compile, pip) ship .pyc files, but a development shell
    may set PYTHONDONTWRITEBYTECODE=1 and the repo's guard/ has no __pycache__, so every
    run would compile guard/ from source (some 20-30 ms). A private PYTHONPYCACHEPREFIX
    under the benchmark's temporary directory caches bytecode without writing into the
    repo; the first (warm-up) run fills it.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.fspath(pycache_dir)
    return env


def time_python(code: str, runs: int = 10, env: dict[str, str] | None = None) -> float:
    """Median wall time of a fresh `python -c CODE`; with "import guard.cli", that is
    interpreter start-up plus every import the CLI pays for before it does any work."""
    argv = [sys.executable, "-c", code]
    subprocess.run(argv, cwd=ROOT, check=True, env=env)  # warm-up: bytecode cache, page cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _foreign_agents(own_pid: int) -> list[str]:
    """Other `com.cloud.agent.AgentShell` processes on this machine (a real agent, or the
    stand-ins of a test run going on meanwhile). The guard watches the oldest agent it
    finds, so any of them makes the fake host look disconnected."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.pid != own_pid and any(AGENT_SHELL in arg for arg in cmdline):
            found.append(f"pid {proc.pid}: {' '.join(cmdline)[:160]}")
    return found


def _wait_sole_agent(own_pid: int, timeout: float = FOREIGN_AGENT_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    others = _foreign_agents(own_pid)
    while others and time.monotonic() < deadline:
        time.sleep(0.5)
        others = _foreign_agents(own_pid)
    if others:
        raise BenchmarkError(
            f"other {AGENT_SHELL} processes are running (still after {timeout:.0f}s); the "
            "guard would watch them instead of the benchmark's stand-in agent:\n  "
            + "\n  ".join(others)
        )


def _check_once(config: Path, own_pid: int = 0,
                env: dict[str, str] | None = None) -> tuple[float, dict[str, Any]]:
    argv = [sys.executable, "-m", "guard.cli", "check", "--json", "--config", str(config)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        others = _foreign_agents(own_pid) if own_pid else []
        hint = ("\nother agent processes were running meanwhile:\n  " + "\n  ".join(others)
                if others else "")
        raise BenchmarkError(
            f"check exited {done.returncode}, not 0 (OK): timing a broken run is meaningless\n"
            f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}{hint}"
        )
    return wall, json.loads(done.stdout)


def run(runs: int = 10, import_runs: int = 10) -> dict[str, Any]:
    """Build the host, warm up, time `runs` checks; returns the figures."""
    # Imported here so `--help` and the import timing work without libvirt or root.
    import libvirt

    from tests.support.host import GuardHost
    from tests.support.libvirtd import PrivateLibvirtd, define_dir_pool

    if os.geteuid() != 0:
        raise BenchmarkError("bench_check needs root: it starts a private libvirtd")
    tmp = Path(tempfile.mkdtemp(prefix="guard-bench-check-", dir="/tmp"))
    try:
        (tmp / "libvirtd").mkdir()
        host_root = tmp / "host"
        host_root.mkdir()
        with PrivateLibvirtd(tmp / "libvirtd") as daemon, GuardHost(host_root, daemon.uri) as host:
            host.add_linstor_pool()
            local = [str(uuid.uuid4()) for _ in range(2)]
            conn = libvirt.open(daemon.uri)
            try:
                for index, pool_id in enumerate(local):
                    target = tmp / f"pool-{index}"
                    host.mgmt.add_pool(f"local-{index}", pool_type="Filesystem", scope="HOST",
                                       pool_id=pool_id, path=str(target))
                    define_dir_pool(conn, pool_id, target)
            finally:
                conn.close()
            # Local storage is in this host's scope through agent.properties, as on a real
            # host; the stand-in agent reads only host and port, so adding it now is safe.
            with open(host.properties, "a", encoding="utf-8") as props:
                props.write(f"local.storage.uuid={','.join(local)}\n")

            assert host.agent is not None
            _wait_sole_agent(host.agent.pid)
            env = compiled_env(tmp / "pycache")
            # warm-up: history written, bytecode cached, page cache and libvirtd warm
            _check_once(host.config, host.agent.pid, env)
            floor_argv = [sys.executable, "-c", FLOOR_CODE]
            subprocess.run(floor_argv, cwd=ROOT, check=True, env=env)
            walls, floors, in_process, docs = [], [], [], []
            for _ in range(runs):
                started = time.perf_counter()
                subprocess.run(floor_argv, cwd=ROOT, check=True, env=env)
                floors.append(time.perf_counter() - started)
                wall, doc = _check_once(host.config, host.agent.pid, env)
                match = _CHECK_TIME.search(doc.get("perfdata", ""))
                if match is None:
                    raise BenchmarkError(f"no check_time in perfdata: {doc.get('perfdata')!r}")
                walls.append(wall)
                in_process.append(float(match.group(1)))
                docs.append(doc)
            last = docs[-1]
            # The same checks in the environment as inherited, when it forbids bytecode
            # caching: what `make bench` users see from a development checkout.
            uncached = None
            if os.environ.get("PYTHONDONTWRITEBYTECODE"):
                uncached = statistics.median(
                    _check_once(host.config, host.agent.pid)[0] for _ in range(runs))
        import_s = time_python("import guard.cli", import_runs, env)
        bare_s = time_python("pass", import_runs, env)
        uncached_import = (time_python("import guard.cli", import_runs)
                           if uncached is not None else None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median_wall = statistics.median(walls)
    floor_ratio = statistics.median(w / f for w, f in zip(walls, floors))
    return {
        "runs": runs,
        "wall_median_s": median_wall,
        "wall_p90_s": percentile(walls, 90),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "check_time_median_s": statistics.median(in_process),
        "import_median_s": import_s,
        "bare_python_median_s": bare_s,
        "import_share": import_s / median_wall,
        "floor_median_s": statistics.median(floors),
        "floor_ratio": floor_ratio,
        "floor_ratio_goal": FLOOR_RATIO_GOAL,
        "floor_ratio_met": floor_ratio <= FLOOR_RATIO_GOAL,
        "uncached_wall_median_s": uncached,
        "uncached_import_median_s": uncached_import,
        "target_s": TARGET_S,
        "target_met": median_wall < TARGET_S,
        "pools": len(last.get("pools", [])),
        "probes": [p.get("status") for p in last.get("probes", [])],
        "sources": sorted(last.get("sources", {})),
    }


def report(r: dict[str, Any]) -> None:
    print(f"host: {r['pools']} pools, probes {r['probes']}, sources {', '.join(r['sources'])}")
    print(f"check --json, {r['runs']} runs after 1 warm-up (subprocess wall time, bytecode cached):")
    print(f"  median {r['wall_median_s'] * 1000:7.1f} ms   p90 {r['wall_p90_s'] * 1000:7.1f} ms   "
          f"min {r['wall_min_s'] * 1000:7.1f} ms   max {r['wall_max_s'] * 1000:7.1f} ms")
    print(f"  in-process check_time (perfdata) median {r['check_time_median_s'] * 1000:7.1f} ms")
    print(f"  python -c '{FLOOR_CODE}' (the floor, timed before each check) median "
          f"{r['floor_median_s'] * 1000:.1f} ms; check / floor, median of the pairs "
          f"{r['floor_ratio']:.2f} (goal <= {r['floor_ratio_goal']:g}: "
          f"{'met' if r['floor_ratio_met'] else 'not met'})")
    print(f"  python -c 'import guard.cli' median    {r['import_median_s'] * 1000:7.1f} ms "
          f"({r['import_share']:.0%} of the check's wall time; bare `python -c pass` "
          f"{r['bare_python_median_s'] * 1000:.1f} ms)")
    if r["uncached_wall_median_s"] is not None:
        print(f"  with the inherited PYTHONDONTWRITEBYTECODE=1 (guard/ compiled from source each run): "
              f"check median {r['uncached_wall_median_s'] * 1000:.1f} ms, import guard.cli median "
              f"{r['uncached_import_median_s'] * 1000:.1f} ms")
    print(f"  target < {r['target_s']:g} s: {'met' if r['target_met'] else 'not met'} "
          f"(median {r['wall_median_s']:.3f} s)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        result = run(args.runs)
    except BenchmarkError as exc:
        print(f"bench_check aborted: {exc}", file=sys.stderr)
        return 1
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
