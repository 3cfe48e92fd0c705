"""All the benchmarks, one after the other, and one summary table: what `make bench` runs.

    bench_agentlog  the agent-log parser alone (iter_events): MB/s and peak RSS, 50/200 MB + gzip
    bench_check     `cloudstack-guard check --json` on a healthy fake host (needs root)
    bench_analyze   `cloudstack-guard analyze --json` end to end on 50 and 200 MB logs
    bench_daemon    `cloudstack-guard run`: libvirt event and agent-log line -> finding latency
                    (200 events each), idle CPU and RSS with 50 pools (needs root)

Timed children run with bytecode cached, as on an installed host (bench_check.compiled_env).
Figures are medians and ratios from this one run; they are for reading, nothing here
fails on a slow number. A benchmark that cannot run healthily is reported as aborted and
the exit status is 1. Takes about four minutes, most of it bench_daemon's two 60 s idle
windows.

    python benchmarks/run.py
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_agentlog  # noqa: E402
import bench_analyze  # noqa: E402
import bench_check  # noqa: E402
import bench_daemon  # noqa: E402

from tests.support import herd_sim  # noqa: E402

Row = tuple[str, str, str, str]  # figure, value, target, verdict


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def agentlog_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for row in r["rows"]:
        rows.append((f"parse {row['label']}", f"{row['mbps']:.0f} MB/s, {_mib(row['max_rss_kib'])}", "", ""))
    if "rss_ratio" in r:
        rows.append(("parse RSS 200/50 MB", f"{r['rss_ratio']:.2f}", "~1.0", ""))
        rows.append(("parse MB/s 200/50 MB", f"{r['throughput_ratio']:.2f}", "", ""))
    return rows


def check_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        (f"check wall, median of {r['runs']}", _ms(r["wall_median_s"]), f"< {r['target_s']:g} s",
         _verdict(r["target_met"])),
        ("check wall, p90", _ms(r["wall_p90_s"]), "", ""),
        ("check / import libvirt+psutil, median of pairs", f"{r['floor_ratio']:.2f}",
         f"<= {r['floor_ratio_goal']:g}", _verdict(r["floor_ratio_met"])),
        ("check_time in-process, median", _ms(r["check_time_median_s"]), "", ""),
        ("python -c 'import guard.cli'", f"{_ms(r['import_median_s'])} ({r['import_share']:.0%} of wall)",
         "", ""),
        ("python -c pass", _ms(r["bare_python_median_s"]), "", ""),
    ]
    if r["uncached_wall_median_s"] is not None:
        rows.append(("check wall, no .pyc (env as inherited)", _ms(r["uncached_wall_median_s"]),
                     f"< {r['target_s']:g} s", _verdict(r["uncached_wall_median_s"] < r["target_s"])))
        rows.append(("import guard.cli, no .pyc", _ms(r["uncached_import_median_s"]), "", ""))
    return rows


def analyze_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for row in r["rows"]:
        rows.append((f"analyze {row['label']}", f"{row['mbps']:.0f} MB/s, {_mib(row['max_rss_kib'])}",
                     f">= {r['target_mbps']:g} MB/s", _verdict(row["mbps"] >= r["target_mbps"])))
    rows.append(("analyze RSS 200/50 MB", f"{r['rss_ratio']:.2f}",
                 f"~1.0 (<= {r['flat_rss_ratio']:.2f})", _verdict(r["rss_met"])))
    rows.append(("analyze MB/s 200/50 MB", f"{r['throughput_ratio']:.2f}", "", ""))
    rows.append(("analyze --version baseline", _mib(r["baseline_rss_kib"]), "", ""))
    pool = r["pool"]
    rows.append(("analyze 100 MB, 4 lines in 10 pool lookups", f"{pool['mbps']:.0f} MB/s",
                 f">= {pool['target_mbps']:g} MB/s", _verdict(pool["met"])))
    rows.append(("  the same / iterating its lines in Python", f"{pool['ratio_to_iterating']:.1f}x", "", ""))
    return rows


def _run(name: str, body: Callable[[], dict[str, Any]], report: Optional[Callable[[dict[str, Any]], None]],
         rows: Callable[[dict[str, Any]], list[Row]]) -> tuple[list[Row], bool, float]:
    print(f"\n=== {name}")
    sys.stdout.flush()
    started = time.monotonic()
    try:
        result = body()
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        if not isinstance(exc, (bench_check.BenchmarkError, bench_analyze.BenchmarkError)):
            traceback.print_exc()
        print(f"{name} aborted: {exc}")
        return [(f"{name}", "aborted", "", "ABORTED")], False, time.monotonic() - started
    if report is not None:
        report(result)
    return rows(result), True, time.monotonic() - started


def herd_run() -> dict[str, Any]:
    """16 guards of one cluster in simulated time (tests/support/herd_sim.py)."""
    return {"plain": herd_sim.simulate(16), "window 02:00-04:00, removal 23:00": herd_sim.window_case(16),
            "slow cascade (restart 3 slots)": herd_sim.cascade_case(16)}


def herd_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for case, r in result.items():
        verdict = "ok" if r.most_disconnected == 1 and len(r.restarts) == 16 else "MISSED"
        rows.append((f"{case}: most hosts Disconnected at once", str(r.most_disconnected), "1", verdict))
        rows.append((f"{case}: most restarts begun in one slot", str(r.most_in_a_slot), "", ""))
        rows.append((f"{case}: all 16 remediated after", f"{r.last_restart_s:.0f} s", "", ""))
    return rows


def main() -> int:
    began = time.monotonic()
    sections = [
        ("bench_agentlog", lambda: bench_agentlog.run("50M,200M"), None, agentlog_rows),
        ("bench_check", lambda: bench_check.run(runs=10), bench_check.report, check_rows),
        ("bench_analyze", lambda: bench_analyze.run("50M,200M", runs=3), bench_analyze.report, analyze_rows),
        ("bench_daemon", bench_daemon.run, bench_daemon.report, bench_daemon.rows),
        ("herd_sim", herd_run, None, herd_rows),
    ]
    table: list[tuple[str, list[Row], float]] = []
    ok = True
    for name, body, report, rows in sections:
        section_rows, healthy, seconds = _run(name, body, report, rows)
        ok = ok and healthy
        table.append((name, section_rows, seconds))

    print("\n=== summary")
    header = ("benchmark", "figure", "value", "target", "verdict")
    lines = [(name, *row) for name, rows, _ in table for row in rows]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    previous = None
    for line in lines:
        print(fmt.format(line[0] if line[0] != previous else "", *line[1:]).rstrip())
        previous = line[0]
    times = ", ".join(f"{name} {seconds:.0f} s" for name, _, seconds in table)
    print(f"\ntotal {time.monotonic() - began:.0f} s ({times})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
