"""`cloudstack-guard run`: how fast does a change reach the daemon's findings, and what
does the daemon cost while nothing happens?

Builds a whole fake KVM host on loopback (tests.support.host.GuardHost: a private
libvirtd, the management-server and LINSTOR emulators, the stand-in agent) and runs the
real daemon as a subprocess (tests.support.daemon.RunningDaemon), collecting its JSON log
lines with a monotonic arrival stamp `_at` taken by a reader thread in this process. Every
latency below runs from `time.monotonic()` just before this process acts to the `_at` of
the daemon's log line: the same clock, and the stderr pipe's latency is included.

1. libvirt pool lifecycle event -> finding. A CloudStack pool (Filesystem, scope
   CLUSTER, listed Up by the management emulator) defined and started in libvirt is
   destroyed (`finding` kind=pool-inactive) and started again (`finding-cleared`),
   alternately, `--events` times in all. The daemon's own debug line for the libvirt
   event splits each latency into "event delivered" and "re-read + evaluated".
2. agent-log line written -> finding. A LINSTOR stop-failure trace with the current
   timestamp is appended to agent.log as the agent writes it: one write of the whole
   record. With no cause visible the finding's severity follows the last failure's
   exception, so traces alternate between ConnectException (`finding` kind=stop-failure
   CRITICAL) and a LINSTOR ApiException (the same finding, now WARNING: logged again on
   the change). The daemon polls the log every few tens of milliseconds, and a write
   made right after the previous finding would always land at the same point of that
   cycle, so each write waits a random 0-100 ms first (seeded): writes arrive at any
   phase, as the agent's do. Two variants, `--events` each:
   - trace alone: nothing follows it, so the parser learns that the trace ended only
     when the file goes quiet (guard.daemon.host_watch.LOG_QUIET_FLUSH_S);
   - trace + next line: the agent's next log line follows in the same write, which
     ends the trace at once.
3. The idle daemon over `--idle` seconds on a host with `--pools` CloudStack pools
   (LINSTOR pools at the one LINSTOR emulator, NFS pools, and Filesystem pools of which
   `--libvirt-pools` are defined and running in libvirt): peak RSS (VmHWM), RSS at the
   start and end of the window, USS, threads, and CPU (user+system of the daemon
   process over the window / wall) as a share of one core. Measured with production
   intervals (probes 30 s, management poll 60 s, WatchdogSec=60s as in the unit file)
   and again with the test harness's (1 s, 1 s, watchdog 1 s) for comparison. A Python
   that only imports what the daemon imports gives the floor for RSS.

Needs root (the private libvirtd). Figures are from this one run and never fail the
benchmark; only a setup that does not reach the state it needs aborts it (exit 1).
Takes about three and a half minutes with the defaults. `--py-spy DIR` also records a
py-spy profile of the daemon during each phase (raw collapsed stacks, for flame graphs).

    python benchmarks/bench_daemon.py [--events 200] [--idle 60] [--test-idle 60] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench_check import BenchmarkError, _wait_sole_agent, compiled_env, percentile  # noqa: E402

TARGET_POOL_EVENT_S = 0.020
"""Issue #10's goal: pool event -> finding p99 under 20 ms with 50 pools."""
TARGET_LOG_LINE_S = 0.100
"""Issue #10's goal: log line -> finding p99 under 100 ms, a trace last included."""
TARGET_RSS_MIB = 60.0
TARGET_CPU = 0.01
EVENT_TIMEOUT_S = 5.0
SETTLE_S = 3.0
PHASE_SPREAD_S = 0.1
PHASE_SEED = 3
PRODUCTION = {"probes": "30s", "poll": "60s", "watchdog_usec": 60_000_000}
TEST = {"probes": "1s", "poll": "1s", "watchdog_usec": 1_000_000}
# What guard.cli run imports, for the RSS floor.
IMPORT_FLOOR = ("import asyncio, libvirt, libvirtaio, psutil, structlog; import guard.cli, guard.daemon, "
                "guard.remediate, guard.backends.linstor, guard.sources.management; import time; "
                "print('ready', flush=True); "
                "time.sleep(30)")

# The agent's stop-failure record (tests/support/agent_lines.py LINSTOR_STOP_FAILURE)
# and the same record with a LINSTOR API error instead of a refused connection.
_FRAMES = (
    "org.glassfish.jersey.client.internal.HttpUrlConnector.apply(HttpUrlConnector.java:260)",
    "org.glassfish.jersey.client.ClientRuntime.invoke(ClientRuntime.java:254)",
    "com.linbit.linstor.api.DevelopersApi.viewResources(DevelopersApi.java:1200)",
    "com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath("
    "LinstorStorageAdaptor.java:420)",
    "com.cloud.hypervisor.kvm.storage.KVMStoragePoolManager.disconnectPhysicalDiskByPath("
    "KVMStoragePoolManager.java:170)",
    "com.cloud.hypervisor.kvm.resource.LibvirtComputingResource.cleanupDisk(LibvirtComputingResource.java:3150)",
    "com.cloud.hypervisor.kvm.resource.wrapper.LibvirtStopCommandWrapper.execute("
    "LibvirtStopCommandWrapper.java:120)",
    "com.cloud.agent.Agent.processRequest(Agent.java:660)",
)
STOP_FAILURE = ("{ts} WARN  [cloud.agent.Agent] (agentRequest-Handler-3:null) (logid:5e1f2a3b) Caught:\n"
                "{exception}\n" + "".join(f"\tat {frame}\n" for frame in _FRAMES))
REFUSED = ("javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused "
           "(Connection refused)")
API_ERROR = "com.linbit.linstor.api.ApiException: Internal Server Error"
NEXT_LINE = ("{ts} DEBUG [cloud.agent.Agent] (agentRequest-Handler-3:null) (logid:5e1f2a3b) Seq 1-4242: "
             "{{ Ans: , MgmtId: 1, via: 1, Ver: v1, Flags: 110, [{{\"com.cloud.agent.api.StopAnswer\":"
             "{{\"result\":false,\"wait\":0}}}}] }}\n")


def _log_ts() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"


def _logged_at(entry: dict[str, Any]) -> Optional[float]:
    """The daemon's own wall-clock stamp of a log line (structlog's ISO timestamp, UTC)."""
    stamp = str(entry.get("timestamp", ""))
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values), "p99": percentile(values, 99),
            "min": min(values), "max": max(values)}


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """RunningDaemon hands os.environ to the daemon; set what it should see meanwhile."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Profiler:
    """py-spy record on a pid for one phase, when --py-spy asked for it."""

    def __init__(self, out_dir: Optional[Path]) -> None:
        self.out_dir = out_dir
        self.files: list[str] = []
        self.problem = ""
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    @contextlib.contextmanager
    def record(self, pid: int, name: str) -> Iterator[None]:
        if self.out_dir is None or not os.path.exists(self.exe):
            if self.out_dir is not None:
                self.problem = "py-spy not found (pip install py-spy in the venv)"
            yield
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{name}.txt"
        proc = subprocess.Popen([self.exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                                 "--output", str(out), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield
        finally:
            proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if out.exists():
                self.files.append(str(out))
            else:
                self.problem = f"py-spy wrote nothing: {err.decode(errors='replace').strip()[-300:]}"


def _start_daemon(config: Path, workdir: Path, env: dict[str, str], watchdog_usec: int) -> Any:
    from tests.support.daemon import RunningDaemon

    with _environ(env):
        daemon = RunningDaemon(config, workdir, watchdog_usec=watchdog_usec)
    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), timeout=30, what="READY=1")
    except AssertionError as exc:
        daemon.stop()
        raise BenchmarkError(f"the daemon never became ready: {exc}") from exc
    return daemon


def _await_log(daemon: Any, start: int, match: Callable[[dict[str, Any]], bool], what: str,
               timeout: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
    """The first log line from index `start` on that matches; short sleeps, so the wait
    itself takes little CPU from the daemon on a small machine."""
    deadline = time.monotonic() + timeout
    while True:
        logs = daemon.logs
        for index in range(start, len(logs)):
            if match(logs[index]):
                return logs[index]
        if daemon.proc.poll() is not None:
            raise BenchmarkError(f"the daemon exited {daemon.proc.returncode} waiting for {what}: "
                                 f"{daemon.logs[-5:]}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"no {what} within {timeout:g} s; last logs: {daemon.logs[-6:]}")
        time.sleep(0.002)


def _is(event: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == event and all(e.get(k) == v for k, v in fields.items())


def measure_pool_events(daemon: Any, pool: Any, pool_id: str, events: int) -> dict[str, Any]:
    """Destroy and start the pool alternately; each must reach the daemon's findings."""
    total, delivered, evaluated, calls, pipe = [], [], [], [], []
    for index in range(events):
        destroy = index % 2 == 0
        start = len(daemon.logs)
        wall, began = time.time(), time.monotonic()
        if destroy:
            pool.destroy()
        else:
            pool.create()
        calls.append(time.monotonic() - began)
        wanted = (_is("finding", kind="pool-inactive", pool=pool_id) if destroy
                  else _is("finding-cleared", kind="pool-inactive", pool=pool_id))
        found = _await_log(daemon, start, wanted, "pool-inactive finding" if destroy else "finding-cleared")
        event = next((e for e in daemon.logs[start:] if e.get("event") == "libvirt-pool-event"
                      and e.get("pool") == pool_id), None)
        total.append(found["_at"] - began)
        _pipe(pipe, found, wall, began)
        if event is not None:
            delivered.append(event["_at"] - began)
            evaluated.append(found["_at"] - event["_at"])
    return {"total": total, "delivered": delivered, "evaluated": evaluated, "libvirt_call": calls,
            "pipe": pipe}


def _pipe(into: list[float], found: dict[str, Any], wall: float, began: float) -> None:
    """How much of a latency is the stderr pipe and our reader thread: arrival minus the
    daemon's own stamp, both measured from the action (wall and monotonic clocks)."""
    logged = _logged_at(found)
    if logged is not None:
        into.append(max(0.0, (found["_at"] - began) - (logged - wall)))


def measure_log_lines(daemon: Any, log: Path, events: int, next_line: bool) -> dict[str, Any]:
    """Alternating severities of one stop-failure finding; each write must log it anew."""
    total: list[float] = []
    pipe: list[float] = []
    phase = random.Random(PHASE_SEED)
    for index in range(events):
        time.sleep(phase.uniform(0.0, PHASE_SPREAD_S))
        severity = "CRITICAL" if index % 2 == 0 else "WARNING"
        record = STOP_FAILURE.format(ts=_log_ts(), exception=REFUSED if severity == "CRITICAL" else API_ERROR)
        if next_line:
            record += NEXT_LINE.format(ts=_log_ts())
        start = len(daemon.logs)
        wall, began = time.time(), time.monotonic()
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(record)
        found = _await_log(daemon, start, _is("finding", kind="stop-failure", severity=severity),
                           f"stop-failure {severity}")
        total.append(found["_at"] - began)
        _pipe(pipe, found, wall, began)
    return {"total": total, "pipe": pipe}


def _status(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "Threads"):
                fields[key] = int(value.split()[0])
    return fields


def measure_idle(daemon: Any, seconds: float, settle: float = SETTLE_S) -> dict[str, Any]:
    import psutil

    proc = psutil.Process(daemon.proc.pid)
    ready_at = next(t for t, f in daemon.notifications if f == "READY=1")
    startup_cpu = sum(proc.cpu_times()[:2])
    time.sleep(settle)
    logs_before = len(daemon.logs)
    notes_before = len(daemon.notifications)
    rss_start = _status(proc.pid)["VmRSS"]
    cpu0, wall0 = proc.cpu_times(), time.monotonic()
    ctx0 = proc.num_ctx_switches()
    time.sleep(seconds)
    cpu1, wall1 = proc.cpu_times(), time.monotonic()
    ctx1 = proc.num_ctx_switches()
    status = _status(proc.pid)
    uss = proc.memory_full_info().uss // 1024
    window = daemon.logs[logs_before:]
    kinds: dict[str, int] = {}
    for entry in window:
        kinds[entry.get("event", "?")] = kinds.get(entry.get("event", "?"), 0) + 1
    if daemon.proc.poll() is not None:
        raise BenchmarkError(f"the daemon exited {daemon.proc.returncode} while idle")
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {
        "seconds": wall1 - wall0,
        "cpu_s": cpu,
        "cpu_share": cpu / (wall1 - wall0),
        "user_s": cpu1.user - cpu0.user,
        "system_s": cpu1.system - cpu0.system,
        "wakeups_per_s": ((ctx1.voluntary + ctx1.involuntary) - (ctx0.voluntary + ctx0.involuntary))
        / (wall1 - wall0),
        "hwm_kib": status["VmHWM"],
        "rss_start_kib": rss_start,
        "rss_end_kib": status["VmRSS"],
        "uss_kib": uss,
        "threads": status["Threads"],
        "startup_s": ready_at - daemon.started,
        "startup_cpu_s": startup_cpu,
        "log_lines": kinds,
        "notifications": len(daemon.notifications) - notes_before,
        "status": next((f for _, f in reversed(daemon.notifications) if f.startswith("STATUS=")), ""),
        "findings": [f"{e.get('kind')} {e.get('severity')}" for e in daemon.logs
                     if e.get("event") == "finding"],
    }


def import_floor(env: dict[str, str]) -> int:
    """VmHWM of a Python that only imports what the daemon imports."""
    proc = subprocess.Popen([sys.executable, "-c", IMPORT_FLOOR], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise BenchmarkError("the import-floor interpreter did not start")
        return _status(proc.pid)["VmHWM"]
    finally:
        proc.kill()
        proc.wait()


def _set_intervals(config: Path, probes: str, poll: str) -> None:
    text = config.read_text()
    if 'poll_interval = "1s"' not in text or "[probes]\n" not in text:
        raise BenchmarkError(f"unexpected guard.toml from the harness:\n{text}")
    text = text.replace('poll_interval = "1s"', f'poll_interval = "{poll}"')
    text = text.replace("[probes]\n", f'[probes]\ninterval = "{probes}"\n')
    config.write_text(text)


def _latency_phase(tmp: Path, uri: str, conn: Any, env: dict[str, str], events: int,
                   profiler: Profiler) -> dict[str, Any]:
    from tests.support.host import GuardHost
    from tests.support.libvirtd import define_dir_pool

    root = tmp / "latency-host"
    root.mkdir()
    with GuardHost(root, uri) as host:
        pool_id = host.mgmt.add_pool("bench-local", pool_type="Filesystem", scope="CLUSTER",
                                     pool_id=str(uuid.uuid4()), path=str(tmp / "pool"))["id"]
        pool = define_dir_pool(conn, pool_id, tmp / "pool")
        try:
            assert host.agent is not None
            _wait_sole_agent(host.agent.pid)
            daemon = _start_daemon(host.config, root, env, TEST["watchdog_usec"])
            try:
                ready_status = next((f for _, f in reversed(daemon.notifications)
                                     if f.startswith("STATUS=")), "")
                if not ready_status.startswith("STATUS=OK"):
                    raise BenchmarkError(f"the host is not healthy before the events: {ready_status}")
                with profiler.record(daemon.proc.pid, "latency-pool-events"):
                    pool_events = measure_pool_events(daemon, pool, pool_id, events)
                with profiler.record(daemon.proc.pid, "latency-log-trace-alone"):
                    alone = measure_log_lines(daemon, host.log, events, next_line=False)
                with profiler.record(daemon.proc.pid, "latency-log-with-next-line"):
                    followed = measure_log_lines(daemon, host.log, events, next_line=True)
                failed = daemon.events("task-failed")
            finally:
                daemon.stop()
        finally:
            with contextlib.suppress(Exception):
                if pool.isActive():
                    pool.destroy()
            with contextlib.suppress(Exception):
                pool.undefine()
    if failed:
        raise BenchmarkError(f"daemon tasks failed during the latency runs: {failed[:3]}")
    return {"pool_events": pool_events, "log_alone": alone, "log_followed": followed}


def _idle_host_pools(host: Any, conn: Any, tmp: Path, pools: int, in_libvirt: int
                     ) -> tuple[dict[str, int], list[tuple[str, Any]]]:
    from tests.support.libvirtd import define_dir_pool

    linstor = (pools - in_libvirt) // 2
    nfs = pools - in_libvirt - linstor
    for index in range(linstor):
        host.mgmt.add_pool(f"linstor-{index}", pool_type="Linstor", scope="ZONE", hypervisor="KVM",
                           ipaddress=host.linstor.url, path="/cloudstack", provider="Linstor")
    for index in range(nfs):
        host.mgmt.add_pool(f"nfs-{index}", pool_type="NetworkFilesystem", scope="CLUSTER",
                           path=f"/export/primary-{index}")
    defined = []
    for index in range(in_libvirt):
        pool_id = str(uuid.uuid4())
        target = tmp / "idle-pools" / f"fs-{index}"
        host.mgmt.add_pool(f"fs-{index}", pool_type="Filesystem", scope="CLUSTER", pool_id=pool_id,
                           path=str(target))
        defined.append((pool_id, define_dir_pool(conn, pool_id, target)))
    return {"linstor": linstor, "nfs": nfs, "filesystem_in_libvirt": in_libvirt}, defined


def _idle_phase(tmp: Path, uri: str, conn: Any, env: dict[str, str], pools: int, in_libvirt: int,
                windows: list[tuple[str, dict[str, Any], float]], events: int,
                profiler: Profiler) -> dict[str, Any]:
    """The idle windows, then (on the production-interval daemon) the pool events again
    with this host's many pools: the daemon re-reads every libvirt pool on each event."""
    from tests.support.host import GuardHost
    from tests.support.peers.ganesha import Ganesha, missing

    root = tmp / "idle-host"
    root.mkdir()
    results: dict[str, Any] = {}
    if missing():
        raise BenchmarkError(f"the idle host's NFS pools need an NFS server: {missing()}")
    # The listing gives NFS pools no port, so their server answers on 2049, as a real one.
    nfs_server = Ganesha(tmp / "ganesha", 2049)
    nfs_server.start()
    with contextlib.ExitStack() as stack:
        stack.callback(nfs_server.stop)
        host = stack.enter_context(GuardHost(root, uri))
        mix, defined = _idle_host_pools(host, conn, tmp, pools, in_libvirt)
        try:
            assert host.agent is not None
            _wait_sole_agent(host.agent.pid)
            harness_config = host.config.read_text()
            check = host.check()
            if check.returncode != 0:
                raise BenchmarkError(f"check on the idle host exited {check.returncode}, not 0 (OK): "
                                     f"{check.stdout[-600:]}{check.stderr[-600:]}")
            results["check_pools"] = len(check.doc.get("pools", []))
            results["mix"] = mix
            for name, intervals, seconds in windows:
                if seconds <= 0:
                    continue
                host.write_config(harness_config)
                _set_intervals(host.config, intervals["probes"], intervals["poll"])
                daemon = _start_daemon(host.config, root, env, intervals["watchdog_usec"])
                try:
                    with profiler.record(daemon.proc.pid, f"idle-{name}"):
                        figures = measure_idle(daemon, seconds)
                    if figures["findings"]:
                        raise BenchmarkError(f"the idle host is not healthy ({name}): {figures['findings']}")
                    if name == "production" and defined:
                        pool_id, pool = defined[0]
                        results["pool_events"] = measure_pool_events(daemon, pool, pool_id, events)
                finally:
                    daemon.stop()
                figures["intervals"] = intervals
                results[name] = figures
        finally:
            for _, pool in defined:
                with contextlib.suppress(Exception):
                    if pool.isActive():
                        pool.destroy()
                with contextlib.suppress(Exception):
                    pool.undefine()
    return results


def run(events: int = 200, idle: float = 60.0, test_idle: float = 60.0, pools: int = 50,
        libvirt_pools: int = 10, py_spy: Optional[str] = None) -> dict[str, Any]:
    import libvirt

    from tests.support.libvirtd import PrivateLibvirtd

    if os.geteuid() != 0:
        raise BenchmarkError("bench_daemon needs root: it starts a private libvirtd")
    if events < 2:
        raise BenchmarkError("--events must be at least 2")
    profiler = Profiler(Path(py_spy).resolve() if py_spy else None)
    tmp = Path(tempfile.mkdtemp(prefix="guard-bench-daemon-", dir="/tmp"))
    began = time.monotonic()
    try:
        (tmp / "libvirtd").mkdir()
        env = compiled_env(tmp / "pycache")
        with PrivateLibvirtd(tmp / "libvirtd") as libvirtd:
            conn = libvirt.open(libvirtd.uri)
            try:
                latency = _latency_phase(tmp, libvirtd.uri, conn, env, events, profiler)
                idle_results = _idle_phase(tmp, libvirtd.uri, conn, env, pools, libvirt_pools,
                                           [("production", PRODUCTION, idle), ("test", TEST, test_idle)],
                                           events, profiler)
            finally:
                conn.close()
        floor = import_floor(env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def pool_figures(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "total": _summary(raw["total"]),
            "destroy": _summary(raw["total"][0::2]),
            "create": _summary(raw["total"][1::2]),
            "libvirt_call": _summary(raw["libvirt_call"]),
            "delivered": _summary(raw["delivered"]) if raw["delivered"] else None,
            "evaluated": _summary(raw["evaluated"]) if raw["evaluated"] else None,
            "pipe": _summary(raw["pipe"]) if raw["pipe"] else None,
        }

    def log_figures(raw: dict[str, Any]) -> dict[str, Any]:
        return {"total": _summary(raw["total"]), "pipe": _summary(raw["pipe"]) if raw["pipe"] else None}

    result: dict[str, Any] = {
        "events": events,
        "pool_event": pool_figures(latency["pool_events"]),
        "pool_event_many": pool_figures(idle_results.pop("pool_events")) if "pool_events" in idle_results
        else None,
        "log_alone": log_figures(latency["log_alone"]),
        "log_followed": log_figures(latency["log_followed"]),
        "idle": idle_results,
        "import_floor_kib": floor,
        "pools": pools,
        "libvirt_pools": libvirt_pools,
        "targets": {"pool_event_s": TARGET_POOL_EVENT_S, "log_line_s": TARGET_LOG_LINE_S,
                    "rss_mib": TARGET_RSS_MIB, "cpu_share": TARGET_CPU},
        "profiles": profiler.files,
        "profile_problem": profiler.problem,
        "seconds": time.monotonic() - began,
    }
    for key, target in (("pool_event", TARGET_POOL_EVENT_S), ("pool_event_many", TARGET_POOL_EVENT_S),
                        ("log_alone", TARGET_LOG_LINE_S), ("log_followed", TARGET_LOG_LINE_S)):
        if result[key] is not None:
            total = result[key]["total"]
            result[key]["met"] = total["median"] < target and total["p99"] < target
    for name in ("production", "test"):
        if name in idle_results:
            figures = idle_results[name]
            figures["rss_met"] = figures["hwm_kib"] / 1024 < TARGET_RSS_MIB
            figures["cpu_met"] = figures["cpu_share"] < TARGET_CPU
    return result


# ------------------------------------------------------------------------ reporting

Row = tuple[str, str, str, str]  # figure, value, target, verdict


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def _latency_line(label: str, s: Optional[dict[str, float]]) -> str:
    if s is None:
        return f"  {label:<44} (not seen)"
    return (f"  {label:<44} median {_ms(s['median']):>9}   p99 {_ms(s['p99']):>9}   "
            f"min {_ms(s['min']):>9}   max {_ms(s['max']):>9}   (n={s['n']})")


def report(r: dict[str, Any]) -> None:
    t = r["targets"]
    idle = r["idle"]
    mix = idle.get("mix", {})
    for key, where in (("pool_event", "host with 1 pool"),
                       ("pool_event_many", f"host with {r['pools']} pools, {r['libvirt_pools']} in libvirt")):
        p = r[key]
        if p is None:
            continue
        print(f"libvirt pool lifecycle event -> finding, {where} ({p['total']['n']} events, "
              "destroy/start alternately):")
        print(_latency_line("event -> finding (end to end)", p["total"]))
        print(_latency_line("  destroy -> finding pool-inactive", p["destroy"]))
        print(_latency_line("  start -> finding-cleared", p["create"]))
        print(_latency_line("  the libvirt call itself (in the above)", p["libvirt_call"]))
        print(_latency_line("  call -> daemon logs the event", p["delivered"]))
        print(_latency_line("  event -> finding (re-list, evaluate)", p["evaluated"]))
        print(_latency_line("  of which pipe + reader thread", p["pipe"]))
        print(f"  target < {t['pool_event_s'] * 1000:.0f} ms (median and p99): {_verdict(p['met'])}")
    print(f"agent-log record written -> finding stop-failure ({r['events']} events each, "
          "severities alternate, writes at a random phase):")
    for key, label in (("log_alone", "trace alone (ends when the file is quiet)"),
                       ("log_followed", "trace + the agent's next line")):
        print(_latency_line(label, r[key]["total"]))
        print(_latency_line("  of which pipe + reader thread", r[key]["pipe"]))
    print(f"  target < {t['log_line_s'] * 1000:.0f} ms (median and p99): trace alone "
          f"{_verdict(r['log_alone']['met'])}, with next line {_verdict(r['log_followed']['met'])}")
    print(f"idle daemon, {r['pools']} pools ({mix.get('linstor')} LINSTOR at one controller, "
          f"{mix.get('nfs')} NFS, "
          f"{mix.get('filesystem_in_libvirt')} Filesystem defined and running in libvirt); check saw "
          f"{idle.get('check_pools')} pools:")
    for name in ("production", "test"):
        if name not in idle:
            continue
        f = idle[name]
        iv = f["intervals"]
        print(f"  {name} intervals (probes {iv['probes']}, management poll {iv['poll']}, watchdog ping "
              f"every {iv['watchdog_usec'] / 2e6:g} s), {f['seconds']:.0f} s window:")
        print(f"    CPU {f['cpu_share']:.2%} of one core ({f['cpu_s']:.2f} s: user {f['user_s']:.2f}, "
              f"system {f['system_s']:.2f}); {f['wakeups_per_s']:.0f} context switches/s")
        print(f"    peak RSS (VmHWM) {_mib(f['hwm_kib'])}; RSS {_mib(f['rss_start_kib'])} -> "
              f"{_mib(f['rss_end_kib'])} over the window; USS {_mib(f['uss_kib'])}; {f['threads']} threads")
        print(f"    start to READY=1 {f['startup_s']:.2f} s, {f['startup_cpu_s']:.2f} s CPU; "
              f"log lines in the window: {f['log_lines'] or 'none'}; "
              f"{f['notifications']} sd_notify datagrams")
        print(f"    target < {t['rss_mib']:g} MiB: {_verdict(f['rss_met'])}; "
              f"< {t['cpu_share']:.0%} CPU: {_verdict(f['cpu_met'])}")
    print(f"  floor: a python importing what the daemon imports, VmHWM {_mib(r['import_floor_kib'])}")
    if r["profiles"]:
        print("py-spy profiles: " + ", ".join(r["profiles"]))
    if r["profile_problem"]:
        print(f"py-spy: {r['profile_problem']}")
    print(f"took {r['seconds']:.0f} s")


def rows(r: dict[str, Any]) -> list[Row]:
    """The summary table's rows (also what benchmarks/run.py prints)."""
    t = r["targets"]
    out: list[Row] = []
    for key, where in (("pool_event", "1 pool"), ("pool_event_many", f"{r['pools']} pools")):
        p = r[key]
        if p is None:
            continue
        total = p["total"]
        out.append((f"pool event -> finding, {where}: median / p99",
                    f"{_ms(total['median'])} / {_ms(total['p99'])}",
                    f"< {t['pool_event_s'] * 1000:.0f} ms", _verdict(p["met"])))
        if p["evaluated"] is not None:
            out.append(("  of which re-list + evaluate, median", _ms(p["evaluated"]["median"]), "", ""))
    alone, followed = r["log_alone"]["total"], r["log_followed"]["total"]
    out.append(("log trace -> finding, trace alone: median / p99",
                f"{_ms(alone['median'])} / {_ms(alone['p99'])}",
                f"< {t['log_line_s'] * 1000:.0f} ms", _verdict(r["log_alone"]["met"])))
    out.append(("log trace -> finding, + next line: median / p99",
                f"{_ms(followed['median'])} / {_ms(followed['p99'])}",
                f"< {t['log_line_s'] * 1000:.0f} ms", _verdict(r["log_followed"]["met"])))
    out.append(("log: trace alone / + next line, median",
                f"{alone['median'] / followed['median']:.1f}x", "", ""))
    pipes = [r[k]["pipe"]["median"] for k in ("pool_event", "log_alone", "log_followed") if r[k]["pipe"]]
    if pipes:
        low, high = _ms(min(pipes)), _ms(max(pipes))
        spread = low if low == high else f"{low}-{high}"
        out.append(("pipe + reader thread in the above, median", spread, "", ""))
    idle = r["idle"]
    for name in ("production", "test"):
        if name not in idle:
            continue
        f = idle[name]
        label = "30s/60s" if name == "production" else "1s/1s"
        out.append((f"idle {r['pools']} pools, {name} {label}: CPU", f"{f['cpu_share']:.2%}",
                    f"< {t['cpu_share']:.0%}", _verdict(f["cpu_met"])))
        out.append((f"idle {r['pools']} pools, {name} {label}: peak RSS", _mib(f["hwm_kib"]),
                    f"< {t['rss_mib']:g} MiB", _verdict(f["rss_met"])))
        out.append((f"idle {r['pools']} pools, {name} {label}: context switches",
                    f"{f['wakeups_per_s']:.0f}/s", "", ""))
    if "production" in idle and "test" in idle and idle["production"]["cpu_share"]:
        out.append(("idle CPU, test / production intervals",
                    f"{idle['test']['cpu_share'] / idle['production']['cpu_share']:.1f}x", "", ""))
    if "production" in idle:
        hwm = idle["production"]["hwm_kib"]
        out.append(("peak RSS / import floor", f"{hwm / r['import_floor_kib']:.2f} "
                    f"(floor {_mib(r['import_floor_kib'])})", "", ""))
    return out


def print_table(table: list[Row]) -> None:
    header = ("figure", "value", "target", "verdict")
    widths = [max(len(str(line[i])) for line in [header, *table]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for line in table:
        print(fmt.format(*line).rstrip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="events per latency figure (default 200)")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="idle window with production intervals, seconds (default 60; 0 skips)")
    parser.add_argument("--test-idle", type=float, default=60.0,
                        help="idle window with the test harness's 1 s intervals (default 60; 0 skips)")
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--libvirt-pools", type=int, default=10)
    parser.add_argument("--py-spy", metavar="DIR", help="record py-spy profiles of the daemon into DIR")
    args = parser.parse_args(argv)
    if not 0 <= args.libvirt_pools <= args.pools:
        parser.error("--libvirt-pools must be between 0 and --pools")
    try:
        result = run(args.events, args.idle, args.test_idle, args.pools, args.libvirt_pools, args.py_spy)
    except BenchmarkError as exc:
        print(f"bench_daemon aborted: {exc}", file=sys.stderr)
        return 1
    report(result)
    print()
    print_table(rows(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
