"""`cloudstack-guard check` on a host whose agent has written a gigabyte of log since it
started: does a check every minute cost the same as on a host with a small log?

The same fake host as bench_check (tests.support.host.GuardHost: private libvirtd,
emulators, the stand-in agent). Its agent log is filled with the synthetic DEBUG-level
mix of gen_agent_log.py, 1 MiB and then 1 GiB; for each size one check reads the log
(the first, whole) and `runs` checks follow, each after 100 more lines were written, as
a Nagios check would find them a minute apart. The figure is the median wall time of
those later checks on the 1 GiB log as a ratio to the 1 MiB log (goal: <= 1.2x). The
first check of each size is reported as well: what a host pays once, after an upgrade
or a lost history.

Needs root (the private libvirtd) and about 1.1 GiB free in /tmp.

    python benchmarks/bench_check_log.py [--runs 10] [--big 1G]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench_check import BenchmarkError, _check_once, _wait_sole_agent, compiled_env  # noqa: E402
from gen_agent_log import parse_size, write_log  # noqa: E402

TARGET_RATIO = 1.2
MORE = ("{ts} DEBUG [cloud.agent.Agent] (AgentOutRequest-Handler-1:null) (logid:) Sending ping: "
        "Seq 1-{n}:  {{ Cmd , MgmtId: -1, via: 1, Ver: v1, Flags: 11 }}\n")


def _grow(log: Path, lines: int, start: int) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
    with open(log, "a", encoding="utf-8") as out:
        out.write("".join(MORE.format(ts=stamp, n=start + n) for n in range(lines)))


def _one_size(size: int, runs: int, tmp: Path) -> dict[str, Any]:
    from tests.support.host import GuardHost
    from tests.support.libvirtd import PrivateLibvirtd

    root = tmp / f"host-{size}"
    (root / "libvirtd").mkdir(parents=True)
    (root / "host").mkdir()
    with PrivateLibvirtd(root / "libvirtd") as daemon, GuardHost(root / "host", daemon.uri) as host:
        host.add_linstor_pool()
        assert host.agent is not None
        _wait_sole_agent(host.agent.pid)
        env = compiled_env(tmp / "pycache")
        tmp_log = root / "synthetic.log"
        write_log(str(tmp_log), size)
        with open(host.log, "ab") as out, open(tmp_log, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        tmp_log.unlink()
        written = host.log.stat().st_size
        first, _ = _check_once(host.config, host.agent.pid, env)
        walls = []
        for n in range(runs):
            _grow(host.log, 100, n * 100)
            wall, doc = _check_once(host.config, host.agent.pid, env)
            walls.append(wall)
        detail = doc["sources"]["agent-log"]["detail"]
    shutil.rmtree(root, ignore_errors=True)
    return {"bytes": written, "first_s": first, "later_median_s": statistics.median(walls),
            "detail": detail}


def run(runs: int = 10, big: int = 1 << 30, small: int = 1 << 20) -> dict[str, Any]:
    import os

    if os.geteuid() != 0:
        raise BenchmarkError("bench_check_log needs root: it starts a private libvirtd")
    tmp = Path(tempfile.mkdtemp(prefix="guard-bench-check-log-", dir="/tmp"))
    try:
        if shutil.disk_usage(tmp).free < big + (256 << 20):
            raise BenchmarkError(f"{tmp}: needs {big >> 20} MiB free for the big log")
        little = _one_size(small, runs, tmp)
        large = _one_size(big, runs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = large["later_median_s"] / little["later_median_s"]
    return {"runs": runs, "small": little, "big": large, "ratio": ratio,
            "target": TARGET_RATIO, "target_met": ratio <= TARGET_RATIO}


def report(r: dict[str, Any]) -> None:
    for name in ("small", "big"):
        one = r[name]
        print(f"{one['bytes'] / 2**20:8.1f} MiB log: first check {one['first_s'] * 1000:8.1f} ms, "
              f"then median {one['later_median_s'] * 1000:6.1f} ms over {r['runs']} checks "
              f"(100 new lines each; last: {one['detail']})")
    print(f"later checks, big/small: {r['ratio']:.2f}x (goal <= {r['target']:g}x: "
          f"{'met' if r['target_met'] else 'NOT MET'})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--big", type=parse_size, default=1 << 30)
    args = parser.parse_args(argv)
    try:
        result = run(args.runs, args.big)
    except BenchmarkError as exc:
        print(f"bench_check_log aborted: {exc}", file=sys.stderr)
        return 1
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
