"""Agent log throughput and memory: is parsing fast enough for incident logs, and does
memory stay flat as the log grows?

Generates synthetic logs (50 MB and 200 MB by default, plus a gzip copy of the first)
under a temporary directory in /tmp, parses each in a fresh child process and reports
MB/s and the child's peak RSS (RUSAGE_CHILDREN of a per-run measuring process, so runs do
not mask each other), then the 200/50 ratios: throughput should hold and RSS should not
grow with the file.

    python benchmarks/bench_agentlog.py [--sizes 50M,200M] [--keep]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from gen_agent_log import parse_size, write_log  # noqa: E402

PARSE = """
import json, sys, time
from guard.sources.agentlog import iter_events
start = time.perf_counter()
events = 0
problems = []
for _ in iter_events([sys.argv[1]], problems):
    events += 1
print(json.dumps({"seconds": time.perf_counter() - start, "events": events,
                  "problems": problems}))
"""


def measure(path: str) -> dict:
    """Run the parser in a child and report its own timing plus its peak RSS."""
    done = subprocess.run([sys.executable, "-c", PARSE, path], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    result = json.loads(done.stdout)
    result["max_rss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


def run_measure(path: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--measure", path], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def run(sizes_text: str = "50M,200M", keep: bool = False, verbose: bool = True) -> dict:
    """Generate, parse and measure; returns the figures (printed as they come if verbose)."""
    say = print if verbose else (lambda *_: None)
    workdir = tempfile.mkdtemp(prefix="guard-bench-agentlog-", dir="/tmp")
    rows = []
    results = []
    summary: dict = {"rows": results}
    try:
        sizes = [parse_size(s) for s in sizes_text.split(",")]
        for size in sizes:
            path = os.path.join(workdir, f"agent-{size >> 20}M.log")
            write_log(path, size)
            rows.append((f"{size >> 20} MB plain", path))
        first = rows[0][1]
        with open(first, "rb") as src, gzip.open(first + ".gz", "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        rows.append((f"{sizes[0] >> 20} MB gzip", first + ".gz"))

        say(f"{'input':<14} {'MB':>8} {'seconds':>8} {'MB/s':>8} {'events':>8} {'peak RSS MiB':>13}")
        for label, path in rows:
            uncompressed = os.path.getsize(path[:-3] if path.endswith(".gz") else path)
            r = run_measure(path)
            mb = uncompressed / 1e6
            rate = mb / r["seconds"]
            results.append({"label": label, "mb": mb, "seconds": r["seconds"], "mbps": rate,
                            "events": r["events"], "max_rss_kib": r["max_rss_kib"],
                            "problems": r["problems"]})
            say(f"{label:<14} {mb:>8.1f} {r['seconds']:>8.2f} {rate:>8.1f} {r['events']:>8} "
                f"{r['max_rss_kib'] / 1024:>13.1f}" + (f"  problems: {r['problems']}"
                                                     if r["problems"] else ""))
        if len(sizes) > 1:
            small, big = results[0], results[len(sizes) - 1]
            summary["throughput_ratio"] = big["mbps"] / small["mbps"]
            summary["rss_ratio"] = big["max_rss_kib"] / small["max_rss_kib"]
            say(f"ratio {big['label']} / {small['label']}: throughput {summary['throughput_ratio']:.2f}, "
                f"peak RSS {summary['rss_ratio']:.2f}")
    finally:
        if keep:
            say(f"files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50M,200M")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--measure", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    run(args.sizes, args.keep)
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
