"""`cloudstack-guard probe` over 100 backends, one probe of each type, `check` with 100 pools.

How long one `probe` takes fanned out over 100 backends of every type with some of them
hung, what one probe of each type costs, and one `check` of a host holding 100 pools.

Every peer is real or the test suite's stand-in, started here on loopback from
tests/support: nfs-ganesha, a bootstrapped ceph-mon (on a 127.x address of its own),
tgtd, glusterd, LINSTOR controller emulators, the StorPool API emulator with stand-in
`storpool`/`storpool_confget` tools and a storpool.conf, and the PowerFlex gateway
emulator over HTTPS (a throwaway CA from tests/support/pki.py) with a stand-in SDC
`drv_cfg`. NFS, iSCSI, glusterd and the PowerFlex gateway listen on their protocols' own
ports of 127.0.0.1 (2049, 3260, 24007, 443) when those are free, as
tests/integration/test_check_backends.py does, since the management server lists pools
without ports; else on free ports, and then their pools are left out of part 3. A peer
that cannot start here (binary missing, not root, port taken) is skipped and named in
the output.

1. Fan-out: one `cloudstack-guard probe URL... --timeout 2 --json` subprocess with 100
   targets: 90 healthy, distinct endpoints spread over the types (StorPool once: it has
   one endpoint per host) and 10 of mixed schemes on listeners that accept and never
   answer. Median wall time of FANOUT_RUNS runs (goal <= 2.5 s), against the same
   command with one refused target (interpreter start-up and imports: the floor), and
   the CPU the fan-out costs (its RUSAGE_CHILDREN, stand-in tools included).
2. One probe per type: `--repeat` in-process probes (after one warm-up) of each type's
   first healthy endpoint with asyncio.run(probe_bounded(...)), as the CLI runs one:
   medians of ProbeResult.latency_s and of the wall time, and CPU per probe. process
   CPU includes the in-process emulators' server threads (LINSTOR, StorPool, PowerFlex);
   thread CPU is the probing thread alone; children CPU is the stand-in tools the probe
   runs (drv_cfg, storpool, storpool_confget: small Python scripts, where the real
   drv_cfg is a C binary).
3. `cloudstack-guard check --json` on a whole fake host (tests.support.host.GuardHost:
   private libvirtd, management and LINSTOR emulators, stand-in agent) whose management
   server lists 100 pools pointing at the peers above: median wall time of CHECK_RUNS
   runs after one warm-up, with the check's status and any probe that was not healthy
   (reported, not required: a slow number here is a finding, not an abort). Needs root;
   otherwise reported as not done.

Timed children run with bytecode cached, as on an installed host (bench_check.compiled_env).
Figures are medians and ratios from this one run; nothing fails on a slow number. Takes
about half a minute.

    python benchmarks/bench_probe.py [--repeat 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (ROOT, HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_check import compiled_env, percentile  # noqa: E402

from guard.backends import backend_named, probe_bounded  # noqa: E402
from guard.config import load_config  # noqa: E402
from tests.support.emulators.linstor import LinstorEmulator  # noqa: E402
from tests.support.emulators.powerflex import PowerFlexGatewayEmulator  # noqa: E402
from tests.support.emulators.storpool import StorPoolEmulator  # noqa: E402
from tests.support.peers import ceph, ganesha, glusterd  # noqa: E402
from tests.support.peers.decoys import free_port, hanging_listener  # noqa: E402
from tests.support.peers.drv_cfg import StandInDrvCfg  # noqa: E402
from tests.support.peers.storpool_cli import StorPoolTools  # noqa: E402
from tests.support.peers.tgtd import Tgtd, running_tgtd, tgtd_missing  # noqa: E402
from tests.support.pki import make_test_pki  # noqa: E402

TIMEOUT_S = 2.0
FANOUT_GOAL_S = 2.5
FANOUT_TARGETS = 100
HANGING_TARGETS = 10
CHECK_POOLS = 100
FANOUT_RUNS = 3
FLOOR_RUNS = 5
CHECK_RUNS = 3
CLI_TIMEOUT_S = 60.0
LOOPBACK = "127.0.0.1"
HOSTNAME = socket.gethostname()
OUR_ID = 3
SP_TOKEN = str(secrets.randbits(62))
PF_USER = "admin"
PF_PASSWORD = "Pf-" + secrets.token_hex(8)
IQN_PREFIX = "iqn.2026-01.org.cloudstack-guard.bench"
TYPES = ("linstor", "nfs", "rbd", "iscsi", "gluster", "storpool", "powerflex")
HANG_SCHEMES = ("linstor", "nfs", "rbd", "iscsi", "gluster", "powerflex")
DEFAULT_PORTS = {"nfs": 2049, "iscsi": 3260, "gluster": 24007, "powerflex": 443}
"""Where the management server's pool listing (no port) makes the guard look."""
CHECK_POOL_TYPES = {"linstor": "Linstor", "nfs": "NetworkFilesystem", "rbd": "RBD", "iscsi": "Iscsi",
                    "gluster": "Gluster", "storpool": "StorPool", "powerflex": "PowerFlex"}
_CHECK_TIME = re.compile(r"\bcheck_time=([0-9.]+)s")
_PEER_FAILURES = (RuntimeError, OSError, subprocess.SubprocessError)
"""What a peer that cannot start raises: PeerError and LibvirtdError are RuntimeErrors."""


class Unavailable(Exception):
    """This peer cannot run here; the message says why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _loopback_port(default: int) -> tuple[int, bool]:
    """`default` when 127.0.0.1 has it free, else a free port; and whether it is `default`."""
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, default))
        except OSError:
            return free_port(), False
    return default, True


def spread(total: int, kinds: list[str]) -> dict[str, int]:
    """`total` shared as evenly as it goes, the first kinds getting the remainder."""
    if not kinds:
        return {}
    base, extra = divmod(total, len(kinds))
    return {kind: base + (1 if i < extra else 0) for i, kind in enumerate(kinds)}


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the peers -----------------------------------------------------------------------------


@dataclass
class Peers:
    """Every peer this benchmark runs, and what it takes to reach each."""

    tmp: Path
    stack: contextlib.ExitStack
    skipped: dict[str, str] = field(default_factory=dict)
    started: dict[str, str] = field(default_factory=dict)
    """type -> where it listens, for the output."""
    on_default_port: set[str] = field(default_factory=set)
    ports: dict[str, int] = field(default_factory=dict)
    monitor_host: str = ""
    tgtd: Optional[Tgtd] = None
    linstor: list[LinstorEmulator] = field(default_factory=list)
    storpool: dict[str, str] = field(default_factory=dict)
    powerflex: dict[str, str] = field(default_factory=dict)
    hanging: list[int] = field(default_factory=list)

    def start_nfs(self) -> None:
        why = ganesha.missing()
        if why:
            raise Unavailable(why)
        port, default = _loopback_port(DEFAULT_PORTS["nfs"])
        server = ganesha.Ganesha(self.tmp / "ganesha", port)
        self.stack.callback(server.stop)
        server.start()
        self._listening("nfs", port, default)

    def start_rbd(self) -> None:
        missing = ceph.missing_binaries()
        if missing:
            raise Unavailable(f"not installed: {', '.join(missing)}")
        monitor = ceph.CephMonitor(self.tmp / "ceph", ceph.free_loopback_host())
        self.stack.callback(monitor.stop)
        monitor.start()
        self.monitor_host = monitor.host
        self.started["rbd"] = f"ceph-mon on {monitor.host}:{ceph.V2_PORT} (msgr2) and :{ceph.V1_PORT} (msgr1)"

    def start_iscsi(self) -> None:
        why = tgtd_missing()
        if why:
            raise Unavailable(why)
        port, default = _loopback_port(DEFAULT_PORTS["iscsi"])
        self.tgtd = self.stack.enter_context(running_tgtd((), port=port))
        self._listening("iscsi", port, default)

    def start_gluster(self) -> None:
        why = glusterd.missing()
        if why:
            raise Unavailable(why)
        port, default = _loopback_port(DEFAULT_PORTS["gluster"])
        server = glusterd.Glusterd(self.tmp / "glusterd", port)
        self.stack.callback(server.stop)
        server.start()
        self._listening("gluster", port, default)

    def start_storpool(self) -> None:
        """This host as StorPool sets one up (tests/integration/backends/test_storpool.py
        make_host): storpool.conf, and the two tools asking the API emulator."""
        api = self.stack.enter_context(StorPoolEmulator(
            free_port(), token=SP_TOKEN, clients={1: "running", OUR_ID: "running"},
            servers={1: "running", 2: "running"}))
        tools = StorPoolTools(self.tmp / "storpool-bin")
        tools.ask_api(LOOPBACK, api.port, SP_TOKEN)
        tools.confget({"SP_API_HTTP_HOST": LOOPBACK, "SP_API_HTTP_PORT": str(api.port),
                       "SP_OURID": str(OUR_ID)})
        conf = self.tmp / "storpool.conf"
        conf.write_text(f"SP_API_HTTP_HOST={LOOPBACK}\nSP_API_HTTP_PORT={api.port}\n"
                        f"SP_AUTH_TOKEN={SP_TOKEN}\nSP_OURID={OUR_ID}\n", encoding="utf-8")
        conf.chmod(0o600)
        self.storpool = {"conf": str(conf), "cli": tools.cli, "confget": tools.confget_path}
        self.started["storpool"] = f"API emulator on {api.address}, stand-in tools in {tools.directory}"

    def start_powerflex(self) -> None:
        """The gateway over HTTPS with a certificate of the throwaway CA, the SDC's drv_cfg
        stand-in, and the gateway credentials in a 0600 file (test_powerflex.py)."""
        if shutil.which("openssl") is None:
            raise Unavailable("the openssl command is not installed (needed for the gateway's certificate)")
        pki = make_test_pki(self.tmp / "pki")
        port, default = _loopback_port(DEFAULT_PORTS["powerflex"])
        self.stack.enter_context(PowerFlexGatewayEmulator(
            pki["server_cert"], pki["server_key"], username=PF_USER, password=PF_PASSWORD, port=port))
        sdc = StandInDrvCfg(self.tmp / "sdc")
        credentials = self.tmp / "powerflex.ini"
        credentials.write_text(f"[powerflex]\nusername = {PF_USER}\npassword = {PF_PASSWORD}\n",
                               encoding="utf-8")
        credentials.chmod(0o600)
        self.powerflex = {"credentials": str(credentials), "ca": str(pki["ca"]), "sdc_home": str(sdc.home)}
        self._listening("powerflex", port, default)

    def _listening(self, kind: str, port: int, default: bool) -> None:
        self.ports[kind] = port
        if default:
            self.on_default_port.add(kind)
        self.started[kind] = f"{LOOPBACK}:{port}" + ("" if default else
                                                      f" ({DEFAULT_PORTS[kind]} was taken: not in the check)")

    def start_all(self) -> None:
        steps: dict[str, Callable[[], None]] = {
            "nfs": self.start_nfs, "rbd": self.start_rbd, "iscsi": self.start_iscsi,
            "gluster": self.start_gluster, "storpool": self.start_storpool,
            "powerflex": self.start_powerflex,
        }
        for kind, step in steps.items():
            began = time.monotonic()
            try:
                step()
            except (Unavailable, *_PEER_FAILURES) as exc:
                self.skipped[kind] = str(exc).strip().splitlines()[0][:300] if str(exc).strip() \
                    else type(exc).__name__
                log(f"  {kind}: SKIPPED ({self.skipped[kind]})")
                continue
            log(f"  {kind}: {self.started[kind]} ({time.monotonic() - began:.1f} s)")
        self.started["linstor"] = "LINSTOR controller emulators, in this process"

    @property
    def available(self) -> list[str]:
        return [kind for kind in TYPES if kind not in self.skipped]

    def add_linstor(self, count: int) -> None:
        while len(self.linstor) < count:
            self.linstor.append(self.stack.enter_context(LinstorEmulator(nodes=[HOSTNAME])))
        self.started["linstor"] = f"{len(self.linstor)} controller emulators on {LOOPBACK}, in this process"

    def add_iqns(self, count: int) -> list[str]:
        iqns = [f"{IQN_PREFIX}:t{n}" for n in range(1, count + 1)]
        assert self.tgtd is not None
        for iqn in iqns[len(self.tgtd.tids):]:
            self.tgtd.add_target(iqn)
        return iqns

    def add_hanging(self, count: int) -> None:
        while len(self.hanging) < count:
            self.hanging.append(self.stack.enter_context(hanging_listener()))

    def healthy_url(self, kind: str, index: int, iqns: list[str]) -> str:
        """A distinct endpoint of `kind`'s peer for each index."""
        n = index + 1
        if kind == "linstor":
            return self.linstor[index].url
        if kind == "nfs":
            return f"nfs://{LOOPBACK}:{self.ports['nfs']}/export/{n}"
        if kind == "rbd":
            port = ceph.V2_PORT if index % 2 == 0 else ceph.V1_PORT
            return f"rbd://{self.monitor_host}:{port}/pool{n}"
        if kind == "iscsi":
            return f"iscsi://{LOOPBACK}:{self.ports['iscsi']}/{iqns[index]}/1"
        if kind == "gluster":
            return f"gluster://{LOOPBACK}:{self.ports['gluster']}/vol{n}"
        if kind == "storpool":
            return "storpool:"
        if kind == "powerflex":
            return f"powerflex://{LOOPBACK}:{self.ports['powerflex']}/pool{n}"
        raise ValueError(kind)

    def config_sections(self) -> str:
        text = ""
        if self.storpool:
            text += "[storpool]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.storpool.items())
        if self.powerflex:
            text += "[powerflex]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.powerflex.items())
        return text


def hanging_url(kind: str, port: int, n: int) -> str:
    if kind == "linstor":
        return f"http://{LOOPBACK}:{port}/{n}"
    if kind == "nfs":
        return f"nfs://{LOOPBACK}:{port}/export/hang{n}"
    if kind == "rbd":
        return f"rbd://{LOOPBACK}:{port}/hang{n}"
    if kind == "iscsi":
        return f"iscsi://{LOOPBACK}:{port}/{IQN_PREFIX}:hang{n}"
    if kind == "gluster":
        return f"gluster://{LOOPBACK}:{port}/hang{n}"
    if kind == "powerflex":
        return f"powerflex://{LOOPBACK}:{port}/hang{n}"
    raise ValueError(kind)


def write_config(peers: Peers) -> Path:
    state = peers.tmp / "state"
    state.mkdir()
    config = peers.tmp / "guard.toml"
    config.write_text(
        f"state_dir = {json.dumps(str(state))}\n"
        # No agent.properties: nothing of this machine's own agent is read.
        f"[agent]\nproperties = {json.dumps(str(peers.tmp / 'no-agent.properties'))}\n"
        f'[probes]\ntimeout = "{TIMEOUT_S:g}s"\n'
        f"[linstor]\nauth_json = {json.dumps(str(peers.tmp / 'no-auth.json'))}\n"
        + peers.config_sections(), encoding="utf-8")
    config.chmod(0o644)
    return config


# -- 1. fan-out ----------------------------------------------------------------------------


def _probe_cli(urls: list[str], config: Path, env: dict[str, str]) -> tuple[float, float, dict[str, Any]]:
    """Wall time, CPU of the child and its children, and the JSON document."""
    argv = [sys.executable, "-m", "guard.cli", "probe", *urls, "--timeout", f"{TIMEOUT_S:g}", "--json",
            "--config", str(config)]
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          check=False)
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"probe exited {done.returncode} without JSON:\n"
                           f"{done.stdout}{done.stderr}") from None
    return wall, cpu, doc


def fanout(peers: Peers, config: Path, env: dict[str, str], iqns: list[str],
           counts: dict[str, int]) -> dict[str, Any]:
    healthy = [(kind, peers.healthy_url(kind, i, iqns))
               for kind, count in counts.items() for i in range(count)]
    hanging = [(HANG_SCHEMES[i % len(HANG_SCHEMES)], port) for i, port in enumerate(peers.hanging)]
    targets = [url for _, url in healthy] + [hanging_url(kind, port, i + 1)
                                             for i, (kind, port) in enumerate(hanging)]
    expected = ["healthy"] * len(healthy) + ["timeout"] * len(hanging)
    assert len(set(targets)) == len(targets), "fan-out endpoints must be distinct"

    refused = [f"http://{LOOPBACK}:{free_port()}/"]
    _probe_cli(refused, config, env)  # warm-up: bytecode cache, page cache
    floor_walls, floor_doc = [], {}
    for _ in range(FLOOR_RUNS):
        wall, _, floor_doc = _probe_cli(refused, config, env)
        floor_walls.append(wall)
    floor_status = floor_doc["probes"][0]["status"]

    walls, cpus, docs = [], [], []
    for run in range(FANOUT_RUNS):
        wall, cpu, doc = _probe_cli(targets, config, env)
        log(f"  fan-out run {run + 1}: {wall:.3f} s, {doc['status']}")
        walls.append(wall)
        cpus.append(cpu)
        docs.append(doc)
    statuses: dict[str, int] = {}
    unexpected = []
    for doc in docs:
        for want, entry in zip(expected, doc["probes"]):
            if entry["status"] != want:
                unexpected.append(f"{entry['target']}: {entry['status']} (want {want}): "
                                  f"{entry['detail'][:200]}")
    for entry in docs[-1]["probes"]:
        statuses[entry["status"]] = statuses.get(entry["status"], 0) + 1
    by_type: dict[str, int] = {}
    for kind, _ in healthy:
        by_type[kind] = by_type.get(kind, 0) + 1
    hang_types: dict[str, int] = {}
    for kind, _ in hanging:
        hang_types[kind] = hang_types.get(kind, 0) + 1
    median = statistics.median(walls)
    floor = statistics.median(floor_walls)
    last = docs[-1]["probes"]
    slowest_by_type: dict[str, float] = {}
    for (kind, _), entry in zip(healthy, last):
        slowest_by_type[kind] = max(slowest_by_type.get(kind, 0.0), entry["latency_s"])
    return {
        "targets": len(targets), "healthy_targets": by_type, "hanging_targets": hang_types,
        "runs": FANOUT_RUNS, "walls_s": walls, "wall_median_s": median,
        "cpu_median_s": statistics.median(cpus),
        "slowest_healthy_latency_s": max(e["latency_s"] for e, w in zip(last, expected) if w == "healthy"),
        "slowest_healthy_latency_by_type_s": slowest_by_type,
        "slowest_timeout_latency_s": max((e["latency_s"] for e, w in zip(last, expected) if w == "timeout"),
                                         default=0.0),
        "exit_status": docs[-1]["status"], "statuses": statuses, "unexpected": unexpected[:20],
        "unexpected_count": len(unexpected),
        "floor_runs": FLOOR_RUNS, "floor_walls_s": floor_walls, "floor_median_s": floor,
        "floor_status": floor_status,
        "difference_s": median - floor, "over_deadline_s": median - floor - TIMEOUT_S,
        "goal_s": FANOUT_GOAL_S, "goal_met": median <= FANOUT_GOAL_S,
    }


# -- 2. one probe per type -----------------------------------------------------------------


def per_type(peers: Peers, config_path: Path, iqns: list[str], counts: dict[str, int],
             repeat: int) -> dict[str, Any]:
    config = load_config(str(config_path))
    figures: dict[str, Any] = {}
    for kind in TYPES:
        if not counts.get(kind):
            continue
        url = peers.healthy_url(kind, 0, iqns)
        backend = backend_named(kind)
        assert backend is not None, kind
        asyncio.run(probe_bounded(backend, url, config, TIMEOUT_S))  # warm-up
        latencies, walls, statuses = [], [], {}
        cpu, thread, children = time.process_time(), time.thread_time(), _children_cpu()
        for _ in range(repeat):
            started = time.perf_counter()
            result = asyncio.run(probe_bounded(backend, url, config, TIMEOUT_S))
            walls.append(time.perf_counter() - started)
            latencies.append(result.latency_s)
            statuses[result.status] = statuses.get(result.status, 0) + 1
        cpu, thread = time.process_time() - cpu, time.thread_time() - thread
        children = _children_cpu() - children
        figures[kind] = {
            "url": url, "n": repeat, "statuses": statuses,
            "detail": "" if statuses == {"healthy": repeat} else result.detail[:300],
            "latency_median_s": statistics.median(latencies),
            "wall_median_s": statistics.median(walls), "wall_p90_s": percentile(walls, 90),
            "cpu_process_ms": cpu / repeat * 1000, "cpu_thread_ms": thread / repeat * 1000,
            "cpu_children_ms": children / repeat * 1000,
        }
        log(f"  {kind}: median {figures[kind]['wall_median_s'] * 1000:.1f} ms, {statuses}")
    return figures


# -- 3. check with 100 pools ---------------------------------------------------------------


def _check_run(config: Path, env: dict[str, str]) -> tuple[float, int, dict[str, Any]]:
    argv = [sys.executable, "-m", "guard.cli", "check", "--json", "--config", str(config)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          check=False)
    wall = time.perf_counter() - started
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"check exited {done.returncode} without JSON:\n"
                           f"{done.stdout}{done.stderr}") from None
    return wall, done.returncode, doc


def check_host(peers: Peers, env: dict[str, str], iqns: list[str], counts: dict[str, int],
               left_out: dict[str, str]) -> dict[str, Any]:
    """GuardHost on a private libvirtd (bench_check's pattern), its management server
    listing the pools; the host's guard.toml gains the [storpool] and [powerflex]
    sections that point at this benchmark's stand-ins."""
    if os.geteuid() != 0:
        return {"done": False, "reason": "needs root (the private libvirtd)"}
    try:
        from tests.support.host import GuardHost
        from tests.support.libvirtd import PrivateLibvirtd
    except ImportError as exc:
        return {"done": False, "reason": f"cannot import the host harness: {exc}"}
    root = peers.tmp / "check"
    (root / "libvirtd").mkdir(parents=True)
    (root / "host").mkdir()
    walls, codes, in_process, not_healthy = [], [], [], []
    try:
        with contextlib.ExitStack() as stack:
            daemon = stack.enter_context(PrivateLibvirtd(root / "libvirtd"))
            host = stack.enter_context(GuardHost(root / "host", daemon.uri))
            host.write_config(host.config.read_text(encoding="utf-8") + peers.config_sections())
            for kind, count in counts.items():
                for i in range(count):
                    n = i + 1
                    pool_type = CHECK_POOL_TYPES[kind]
                    if kind == "linstor":
                        host.mgmt.add_pool(f"linstor-{n}", pool_type=pool_type, scope="ZONE",
                                           hypervisor="KVM", ipaddress=peers.linstor[i].url,
                                           path="/cloudstack", provider="Linstor")
                    elif kind == "storpool":
                        host.mgmt.add_pool(f"sp-{n}", pool_type=pool_type, pool_id=f"bench{n};{uuid.uuid4()}")
                    else:
                        address = peers.monitor_host if kind == "rbd" else LOOPBACK
                        path = f"/{iqns[i]}/1" if kind == "iscsi" else {
                            "nfs": f"/export/{n}", "rbd": f"pool{n}", "gluster": f"/vol{n}",
                            "powerflex": f"pool{n}"}[kind]
                        host.mgmt.add_pool(f"{kind}-{n}", pool_type=pool_type, ipaddress=address, path=path)
            _check_run(host.config, env)  # warm-up: history written, bytecode and page cache
            doc: dict[str, Any] = {}
            for run in range(CHECK_RUNS):
                wall, code, doc = _check_run(host.config, env)
                log(f"  check run {run + 1}: {wall:.3f} s, exit {code}")
                walls.append(wall)
                codes.append(code)
                not_healthy += [f"run {run + 1}: {p.get('backend')} {p.get('target')}: {p.get('status')} "
                                f"after {p.get('latency_s')} s: {str(p.get('detail'))[:160]}"
                                for p in doc.get("probes", []) if p.get("status") != "healthy"]
                match = _CHECK_TIME.search(doc.get("perfdata", ""))
                if match:
                    in_process.append(float(match.group(1)))
    except _PEER_FAILURES as exc:
        return {"done": False, "reason": f"the host harness failed: {str(exc).strip()[:400]}"}
    statuses: dict[str, int] = {}
    slowest: dict[str, float] = {}
    for probe in doc.get("probes", []):
        statuses[probe.get("status", "?")] = statuses.get(probe.get("status", "?"), 0) + 1
        backend = str(probe.get("backend", "?"))
        slowest[backend] = max(slowest.get(backend, 0.0), float(probe.get("latency_s") or 0.0))
    findings = sorted({f"{f.get('severity')} {f.get('kind')}" for f in doc.get("findings", [])})
    return {
        "done": True, "pools": sum(counts.values()), "pool_types": counts, "left_out": left_out,
        "runs": CHECK_RUNS, "walls_s": walls, "wall_median_s": statistics.median(walls),
        "check_time_median_s": statistics.median(in_process) if in_process else None,
        "exit_codes": codes, "status": doc.get("status"), "probes": len(doc.get("probes", [])),
        "probe_statuses": statuses, "slowest_probe_by_type_s": slowest, "findings": findings,
        "not_healthy": not_healthy[:20],
    }


# -- the whole run -------------------------------------------------------------------------


def run(repeat: int) -> dict[str, Any]:
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="guard-bench-probe-", dir="/tmp"))
    env = compiled_env(tmp / "pycache")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    result: dict[str, Any] = {"repeat": repeat, "timeout_s": TIMEOUT_S}
    try:
        with contextlib.ExitStack() as stack:
            peers = Peers(tmp, stack)
            log("starting peers")
            peers.start_all()
            available = peers.available
            # Fan-out: StorPool once (one endpoint per host), the other healthy targets spread.
            fan_counts = {"storpool": 1} if "storpool" in available else {}
            fan_counts.update(spread(FANOUT_TARGETS - HANGING_TARGETS - len(fan_counts),
                                     [k for k in available if k != "storpool"]))
            # The check: types whose pools, listed without ports, reach their peer.
            in_check = [k for k in available
                        if k in ("linstor", "rbd", "storpool") or k in peers.on_default_port]
            left_out = {k: f"{DEFAULT_PORTS[k]} on {LOOPBACK} was taken"
                        for k in available if k not in in_check}
            left_out.update(peers.skipped)
            check_counts = {"storpool": 1} if "storpool" in in_check else {}
            check_counts.update(spread(CHECK_POOLS - len(check_counts),
                                       [k for k in in_check if k != "storpool"]))
            peers.add_linstor(max(fan_counts.get("linstor", 0), check_counts.get("linstor", 0)))
            iqns = peers.add_iqns(max(fan_counts.get("iscsi", 0), check_counts.get("iscsi", 0))) \
                if peers.tgtd is not None else []
            peers.add_hanging(HANGING_TARGETS)
            config = write_config(peers)
            result["peers"] = {k: ({"skipped": peers.skipped[k]} if k in peers.skipped
                                   else {"started": peers.started[k]}) for k in TYPES}
            result["setup_s"] = time.monotonic() - began

            log(f"1. fan-out: {FANOUT_TARGETS} targets, {FANOUT_RUNS} runs, and the one-refused-target floor")
            result["fanout"] = fanout(peers, config, env, iqns, fan_counts)
            log(f"2. one probe per type, {repeat} each")
            result["per_type"] = per_type(peers, config, iqns, fan_counts, repeat)
            log(f"3. check with {CHECK_POOLS} pools")
            result["check"] = check_host(peers, env, iqns, check_counts, left_out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["total_s"] = time.monotonic() - began
    return result


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def report(r: dict[str, Any]) -> None:
    print("peers:")
    for kind, state in r["peers"].items():
        print(f"  {kind:<9} " + (state["started"] if "started" in state else f"SKIPPED: {state['skipped']}"))

    f = r["fanout"]
    spread_text = ", ".join(f"{k} {v}" for k, v in f["healthy_targets"].items())
    hang_text = ", ".join(f"{k} {v}" for k, v in f["hanging_targets"].items())
    print(f"\n1. fan-out: `cloudstack-guard probe` with {f['targets']} targets, --timeout {r['timeout_s']:g}")
    print(f"   healthy: {spread_text}; accept-and-hang: {hang_text}")
    print(_table([
        ("figure", "value", "goal"),
        (f"wall, median of {f['runs']}", f"{f['wall_median_s']:.3f} s", f"<= {f['goal_s']:g} s: "
         + ("met" if f["goal_met"] else "NOT MET")),
        ("wall, each run", ", ".join(f"{w:.3f}" for w in f["walls_s"]) + " s", ""),
        (f"one refused target (floor), median of {f['floor_runs']}", f"{f['floor_median_s']:.3f} s",
         f"status {f['floor_status']}"),
        ("difference fan-out - floor", f"{f['difference_s']:.3f} s", ""),
        (f"  of which beyond the {r['timeout_s']:g} s deadline", f"{f['over_deadline_s']:.3f} s", ""),
        ("CPU of one fan-out run (child + its children)", f"{f['cpu_median_s']:.3f} s", ""),
        ("slowest healthy probe (latency_s)", f"{f['slowest_healthy_latency_s'] * 1000:.0f} ms", ""),
        ("slowest timeout probe (latency_s)", f"{f['slowest_timeout_latency_s']:.3f} s", ""),
        ("statuses (last run)", ", ".join(f"{k} {v}" for k, v in sorted(f["statuses"].items())),
         f"exit {f['exit_status']}"),
    ]))
    print("   slowest healthy probe by type (last run, latency_s): " + ", ".join(
        f"{k} {v * 1000:.0f}" for k, v in f["slowest_healthy_latency_by_type_s"].items()) + " ms")
    if f["unexpected_count"]:
        print(f"   {f['unexpected_count']} answers other than expected (healthy / timeout), e.g.:")
        for line in f["unexpected"][:5]:
            print(f"     {line}")

    print(f"\n2. one probe per type, {r['repeat']} in-process probes each after 1 warm-up "
          "(asyncio.run(probe_bounded(...)))")
    rows = [("type", "latency_s med", "wall med", "wall p90", "CPU process", "CPU thread", "CPU children",
             "statuses")]
    for kind, t in r["per_type"].items():
        rows.append((kind, f"{t['latency_median_s'] * 1000:.1f} ms", f"{t['wall_median_s'] * 1000:.1f} ms",
                     f"{t['wall_p90_s'] * 1000:.1f} ms", f"{t['cpu_process_ms']:.1f} ms",
                     f"{t['cpu_thread_ms']:.1f} ms", f"{t['cpu_children_ms']:.1f} ms",
                     ", ".join(f"{k} {v}" for k, v in t["statuses"].items())))
    print(_table(rows))
    print("   CPU per probe. process: this process, so the in-process LINSTOR/StorPool/PowerFlex emulators'\n"
          "   server threads too; thread: the probing thread alone; children: the stand-in tools the\n"
          "   probe runs (drv_cfg; storpool and storpool_confget), Python scripts here.")
    for kind, t in r["per_type"].items():
        if t["detail"]:
            print(f"   {kind} not healthy every time: {t['detail']}")

    c = r["check"]
    print(f"\n3. `cloudstack-guard check --json` with {CHECK_POOLS} pools listed by the management server")
    if not c["done"]:
        print(f"   not done: {c['reason']}")
    else:
        print(f"   pools: {', '.join(f'{k} {v}' for k, v in c['pool_types'].items())}")
        if c["left_out"]:
            print(f"   left out: {'; '.join(f'{k}: {v}' for k, v in c['left_out'].items())}")
        check_time = (f"{c['check_time_median_s']:.3f} s" if c["check_time_median_s"] is not None else "n/a")
        print(_table([
            ("figure", "value"),
            (f"wall, median of {c['runs']} (after 1 warm-up)", f"{c['wall_median_s']:.3f} s"),
            ("wall, each run", ", ".join(f"{w:.3f}" for w in c["walls_s"]) + " s"),
            ("check_time in-process (perfdata), median", check_time),
            ("status, exit codes", f"{c['status']}, {c['exit_codes']}"),
            ("probe results (one per pool, last run)", f"{c['probes']}: "
             + ", ".join(f"{k} {v}" for k, v in sorted(c["probe_statuses"].items()))),
            ("findings (last run)", "; ".join(c["findings"]) or "none"),
        ]))
        print("   slowest probe by type (last run, latency_s): " + ", ".join(
            f"{k} {v * 1000:.0f}" for k, v in c["slowest_probe_by_type_s"].items()) + " ms")
        for line in c["not_healthy"][:5]:
            print(f"   not healthy: {line}")
    print(f"\nsetup {r['setup_s']:.0f} s, total {r['total_s']:.0f} s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="in-process probes per type (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    result = run(args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
