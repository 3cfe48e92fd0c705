"""The cloudstack-agent simulator reproduces apache/cloudstack#10465 for real.

Real sockets only: the management emulator's agent port, LINSTOR controller emulators on
127.0.0.1, a control socket, and the guard's own `analyze` reading the simulator's log.
If these pass, the guard's end-to-end tests rest on an agent that fails the way the real
one does, logs it the way the real one does, and recovers the way the real one does.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from guard.sources.agentlog import read_agent_log
from tests.support.emulators.agent_sim import (
    CONNECT_TIMED_OUT,
    CONNECTION_REFUSED,
    READ_TIMED_OUT,
    SimClient,
    sim_argv,
    start_sim,
    stop_sim,
)
from tests.support.emulators.linstor import LinstorEmulator
from tests.support.emulators.management import ManagementEmulator
from tests.support.net import established_to
from tests.support.paths import REPO
from tests.support.polling import wait_for

NODE = "kvm-sim-1"
NFS_POOL = "b7e2c0d4-1a9f-3e55-8c2d-6f0a4b19e372"
NFS_DISK = f"/mnt/{NFS_POOL}/6a4d7c1e-2b3f-4e5a-9d8c-7b6a5f4e3d2c"
STALE_POOL = "3f1c9a52-7d4e-4b8a-9c11-52e0d7a6b901"
LIVE_POOL = "897897da-8664-4cb0-8514-90eaa9b38f20"
"""After STALE_POOL in a Java HashMap (a higher bucket), whatever the insertion order."""
SHIELD_POOL = "1f49e090-3284-45a7-b886-8e9b5a124b1d"
"""Before STALE_POOL in a Java HashMap: LinstorStorageAdaptor asks it first."""
STOPPED_BY_SIGTERM = 143
REPO_ROOT = REPO

LOG4J_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO |WARN |ERROR) \[\w+\.\w+\.\w+\] "
    r"\([\w-]+:null\) \(logid:[0-9a-f]*\) \S.*$"
)
TRACE_LINE = re.compile(r"^(\tat \S+\(.*\)|\t\.\.\. \d+ more|(Caused by: )?[\w.$]+(Exception|Error): .*)$")
REQUIRED_FRAMES = (
    "org.glassfish.jersey.client.internal.HttpUrlConnector.apply(",
    "org.glassfish.jersey.client.ClientRuntime.invoke(",
    "com.linbit.linstor.api.DevelopersApi.viewResources(",
    "com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor.tryDisconnectLinstor(",
    "com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath(",
    "com.cloud.hypervisor.kvm.storage.KVMStoragePoolManager.disconnectPhysicalDiskByPath(",
    "com.cloud.hypervisor.kvm.resource.LibvirtComputingResource.cleanupDisk(",
    "com.cloud.hypervisor.kvm.resource.wrapper.LibvirtStopCommandWrapper.execute(",
    "com.cloud.agent.Agent.processRequest(",
)

SimFactory = Callable[..., subprocess.Popen]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths must stay under 108 bytes; pytest's tmp_path can be longer."""
    with tempfile.TemporaryDirectory(prefix="agsim-") as name:
        yield Path(name)


@pytest.fixture
def management() -> Iterator[ManagementEmulator]:
    with ManagementEmulator(agent_port=0) as emulator:
        yield emulator


@pytest.fixture
def controller() -> Iterator[LinstorEmulator]:
    with LinstorEmulator(nodes=[NODE]) as emulator:
        yield emulator


@pytest.fixture
def properties(short_dir: Path, management: ManagementEmulator) -> Path:
    path = short_dir / "agent.properties"
    path.write_text(
        "guid=2a9e4b6c-7f3d-4d1e-9b0a-5c8e1f2d3a4b\n"
        f"host=127.0.0.1,192.0.2.10@roundrobin\nport={management.agent_port}\n"
        "hypervisor.type=kvm\n"
    )
    return path


@pytest.fixture
def log(short_dir: Path) -> Path:
    return short_dir / "log" / "agent.log"


@pytest.fixture
def control(short_dir: Path) -> Path:
    return short_dir / "control.sock"


@pytest.fixture
def sim(properties: Path, log: Path, control: Path) -> Iterator[SimFactory]:
    """Starts simulators on the test's files (a restart is a second start); all are
    stopped at the end."""
    started: list[subprocess.Popen] = []

    def start(**options: Any) -> subprocess.Popen:
        options.setdefault("hostname", NODE)
        options.setdefault("linstor_timeout", 0.5)
        proc = start_sim(properties, log, control, **options)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_sim(proc)


def messages(log: Path) -> list[str]:
    return [line.split(") ", 2)[2] for line in log.read_text().splitlines()
            if LOG4J_LINE.match(line)]


def status_or_none(control: Path) -> dict[str, Any] | None:
    """None until the control socket is bound and listening."""
    try:
        return SimClient(control, timeout=2).call("status")
    except OSError:
        return None


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused, like a dead controller's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def caught_record(log: Path, logid: str) -> list[str]:
    """The `Caught:` line of one command and the trace lines after it."""
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines)
                 if f"(logid:{logid}) Caught: " in line and " WARN  " in line)
    end = start + 1
    while end < len(lines) and not LOG4J_LINE.match(lines[end]):
        end += 1
    return lines[start:end]


def analyze(log: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "guard.cli", "analyze", "--json", str(log)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    document: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == document["exit_code"], result.stderr
    return document


# --- the process ------------------------------------------------------------------


def test_looks_like_the_agent_and_stops_like_the_jvm(
    sim: SimFactory, management: ManagementEmulator, properties: Path, log: Path, control: Path
) -> None:
    proc = sim(version="4.19.1.2")
    client = SimClient(control)
    assert "com.cloud.agent.AgentShell" in psutil.Process(proc.pid).cmdline()
    port = management.agent_port
    assert wait_for(lambda: client.call("status")["connected"])
    assert established_to(proc.pid, port)
    assert management.agent_connection_count == 1
    status = client.call("status")
    assert status["pid"] == proc.pid
    assert (status["pools"], status["linstor_pools"], status["children"]) == ([], [], [])

    assert client.call("bogus") == {
        "ok": False, "error": "unknown op 'bogus'; known: "
        "['add-pool', 'delete-pool', 'heartbeat', 'status', 'stop-vm', 'storage-work']"}
    assert client.call("add-pool", type="Linstor") == {
        "ok": False, "error": "add-pool: missing 'uuid'"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(5)
        raw.connect(str(control))
        raw.sendall(b"{not json\n")
        assert json.loads(raw.makefile("rb").readline())["ok"] is False

    assert stop_sim(proc) == STOPPED_BY_SIGTERM
    assert not control.exists()
    assert [p.name for p in control.parent.iterdir() if p.name.startswith(".agent-sim-")] == []
    lines = log.read_text().splitlines()
    assert all(LOG4J_LINE.match(line) for line in lines), lines
    assert messages(log) == [
        "Agent started",
        "Implementation Version is 4.19.1.2",
        f"agent.properties found at {properties}",
        f"Connecting to 127.0.0.1:{port}",
        f"Connected to 127.0.0.1:{port}",
        "Process agent startup answer, agent id = 1",
        "Set agent id 1",
        "Startup Response Received: agent id = 1",
        "Processing agent ready command, agent id = 1",
        "Set agent id 1",
        "Ready command is processed for agent id = 1",
        "Stopping the agent: Reason = sig.kill",
    ]
    assert lines[-1].endswith(" INFO  [cloud.agent.Agent] (AgentShutdownThread:null) (logid:) "
                              "Stopping the agent: Reason = sig.kill")


def test_reconnects_when_the_management_server_drops_it(
    sim: SimFactory, management: ManagementEmulator, log: Path, control: Path
) -> None:
    sim()
    client = SimClient(control)
    assert wait_for(lambda: client.call("status")["connected"])
    management.stop_agent_port()
    assert wait_for(lambda: not client.call("status")["connected"])
    management.start_agent_port()
    assert wait_for(lambda: client.call("status")["connected"], timeout=10)
    assert wait_for(lambda: messages(log).count("Ready command is processed for agent id = 1") == 2)
    assert management.agent_connection_count == 1
    text = log.read_text()
    assert re.search(r" INFO  \[cloud\.agent\.Agent\] \(Agent-Handler-1:null\) \(logid:[0-9a-f]{8}\) "
                     r"Lost connection to host: 127\.0\.0\.1\. ", text)
    assert text.index("Connected to the host: 127.0.0.1") < text.rindex("Ready command is processed")


def test_storage_work_is_a_qemu_img_child(sim: SimFactory, control: Path) -> None:
    proc = sim()
    client = SimClient(control)
    started = time.monotonic()
    short = client.call("storage-work", seconds=1)
    long = client.call("storage-work", seconds=30)
    assert short["ok"] and long["ok"]
    for pid in (short["pid"], long["pid"]):
        child = psutil.Process(pid)
        assert child.name() == "qemu-img"
        assert os.path.basename(child.cmdline()[0]) == "qemu-img"
        assert child.ppid() == proc.pid
    assert {c.pid for c in psutil.Process(proc.pid).children()} == {short["pid"], long["pid"]}
    assert sorted(client.call("status")["children"]) == sorted([short["pid"], long["pid"]])

    assert wait_for(lambda: not psutil.pid_exists(short["pid"]), timeout=5)
    assert time.monotonic() - started >= 1.0
    assert client.call("status")["children"] == [long["pid"]]

    # Stopped like a systemd unit: the whole process group gets SIGTERM.
    assert stop_sim(proc) == STOPPED_BY_SIGTERM
    assert wait_for(lambda: not psutil.pid_exists(long["pid"]))


def test_runs_on_the_system_python_by_file_path(
    properties: Path, log: Path, control: Path, tmp_path: Path
) -> None:
    """As a container's unit runs it: Debian's python3, isolated from site-packages,
    started by file path from another directory."""
    system_python = "/usr/bin/python3"
    if not os.access(system_python, os.X_OK):
        pytest.skip(f"{system_python} not installed")
    argv = sim_argv(properties, log, control, hostname=NODE, python=system_python)
    argv[1:1] = ["-I", "-S"]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        status = wait_for(lambda: status_or_none(control))
        assert status and status["pid"] == proc.pid
        wait_for(lambda: "Ready command is processed" in log.read_text())
    finally:
        assert stop_sim(proc) == STOPPED_BY_SIGTERM
    assert messages(log)[-1] == "Stopping the agent: Reason = sig.kill"


# --- the pools and the adaptor loop -------------------------------------------------


def test_a_cached_linstor_pool_is_asked_about_every_disk(
    sim: SimFactory, controller: LinstorEmulator, log: Path, control: Path
) -> None:
    sim()
    client = SimClient(control)
    assert client.call("add-pool", uuid=NFS_POOL, type="NetworkFilesystem", url="127.0.0.1",
                       path="/export/primary")["ok"]
    answer = client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])
    assert answer["ok"] and answer["disks"] == [{"path": NFS_DISK, "claimed_by": None}]
    assert controller.requests == []

    assert client.call("add-pool", uuid=STALE_POOL, type="Linstor", url=controller.url)["ok"]
    answer = client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])
    assert answer["ok"] and answer["disks"] == [{"path": NFS_DISK, "claimed_by": None}]
    assert [(r.method, r.path, r.query) for r in controller.requests] == [
        ("GET", "/v1/view/resources", {"nodes": [NODE]})]

    # A disk that is LINSTOR's own is found and claimed: no warning for it.
    device = controller.add_resource("cs-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", NODE)
    answer = client.call("stop-vm", name="i-2-11-VM", disks=[device])
    assert answer["disks"] == [{"path": device, "claimed_by": "LinstorStorageAdaptor"}]

    deleted = client.call("delete-pool", uuid=STALE_POOL)
    assert deleted["ok"] and deleted["removed"] is True
    assert client.call("status")["linstor_pools"] == []
    controller.clear_requests()
    assert client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])["ok"]
    assert controller.requests == []

    found = messages(log)
    assert f"Attempting to create storage pool {NFS_POOL} (NetworkFilesystem) in libvirt" in found
    assert found.count(f"Linstor: Couldn't find resource for this path: {NFS_DISK}") == 1
    assert " DEBUG " not in log.read_text()
    warn = (r" WARN  \[kvm\.storage\.LinstorStorageAdaptor\] \(agentRequest-Handler-\d:null\) "
            r"\(logid:[0-9a-f]{8}\) Linstor: Couldn't find resource for this path: ")
    assert re.search(warn + re.escape(NFS_DISK), log.read_text())


def test_stale_pool_fails_every_stop_until_the_agent_restarts(
    sim: SimFactory, management: ManagementEmulator, controller: LinstorEmulator,
    log: Path, control: Path,
) -> None:
    proc = sim()
    client = SimClient(control)
    pool = management.add_pool("linstor-primary", pool_type="Linstor", provider="Linstor",
                               ipaddress=controller.url, path="", pool_id=STALE_POOL)
    assert client.call("add-pool", uuid=pool["id"], type="Linstor", url=controller.url)["ok"]
    assert client.call("add-pool", uuid=NFS_POOL, type="NetworkFilesystem", url="127.0.0.1",
                       path="/export/primary")["ok"]
    assert client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])["ok"]

    # Deleted on the management server (4.19.1.2: the agent is never told), then the
    # controller goes away.
    management.remove_pool(pool["id"])
    assert management.snapshot()["pools"] == []
    controller.stop()

    failed = client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])
    assert failed["ok"] is False
    assert failed["error"] == f"javax.ws.rs.ProcessingException: {CONNECTION_REFUSED}"
    record = caught_record(log, failed["logid"])
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARN  \[cloud\.agent\.Agent\] "
        r"\(agentRequest-Handler-\d:null\) \(logid:[0-9a-f]{8}\) Caught: ", record[0])
    assert record[1] == ("javax.ws.rs.ProcessingException: java.net.ConnectException: "
                         "Connection refused (Connection refused)")
    assert all(TRACE_LINE.match(line) for line in record[1:]), record
    frames = [line[4:] for line in record if line.startswith("\tat ")]
    positions = [next(i for i, f in enumerate(frames) if f.startswith(needle))
                 for needle in REQUIRED_FRAMES]
    assert positions == sorted(positions)
    assert "Caused by: java.net.ConnectException: Connection refused (Connection refused)" in record
    assert re.fullmatch(r"\t\.\.\. \d+ more", record[-1])

    # A healthy LINSTOR pool added after the stale one does not help: the first wins.
    with LinstorEmulator(nodes=[NODE]) as healthy:
        assert client.call("add-pool", uuid=LIVE_POOL, type="Linstor", url=healthy.url)["ok"]
        assert client.call("status")["linstor_pools"] == [STALE_POOL, LIVE_POOL]
        again = client.call("stop-vm", name="i-2-12-VM", disks=[NFS_DISK])
        assert again["ok"] is False and again["logid"] != failed["logid"]
        assert healthy.requests == []

        # One that the HashMap puts first is asked instead, and the stop passes: which
        # cached pool breaks stops is the map's order, not the order they were added.
        assert client.call("add-pool", uuid=SHIELD_POOL, type="Linstor", url=healthy.url)["ok"]
        assert client.call("status")["linstor_pools"] == [SHIELD_POOL, STALE_POOL, LIVE_POOL]
        assert client.call("stop-vm", name="i-2-13-VM", disks=[NFS_DISK])["ok"]
        asked = len(healthy.requests)
        assert asked == 1
        assert client.call("delete-pool", uuid=SHIELD_POOL)["ok"]

        report = analyze(log)
        assert report["status"] == "CRITICAL"
        stop_failures = [f for f in report["findings"] if f["kind"] == "stop-failure"]
        assert len(stop_failures) == 1
        assert stop_failures[0]["severity"] == "CRITICAL"
        assert stop_failures[0]["adaptor"] == "LinstorStorageAdaptor"
        assert "2 failure(s) in LinstorStorageAdaptor" in stop_failures[0]["evidence"][0]["fact"]

        # A restart is a new JVM: empty caches, and the management server re-sends only
        # the pools it still has (here: none), so the stop succeeds without LINSTOR.
        assert stop_sim(proc) == STOPPED_BY_SIGTERM
        restarted = sim()
        assert restarted.pid != proc.pid
        status = client.call("status")
        assert (status["pools"], status["linstor_pools"]) == ([], [])
        assert client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])["ok"]
        assert len(healthy.requests) == asked, "the restarted agent asked a LINSTOR controller"

    assert messages(log).count("Agent started") == 2
    assert [f for f in analyze(log)["findings"] if f["kind"] == "stop-failure"] == []


@pytest.mark.parametrize("disk,adaptor", [
    ("/dev/storpool/cs-vol-1", "StorPoolStorageAdaptor"),
    ("/dev/storpool-byid/ab12.b.c3", "StorPoolStorageAdaptor"),
    ("/dev/mapper/3600a098038303053453f463045727a4f", "FiberChannelAdapter"),
    ("/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2010-10.org.openstack:vol-1-lun-1",
     "IscsiAdmStorageAdaptor"),
])
def test_linstor_is_asked_only_about_paths_no_other_adaptor_claims(
    sim: SimFactory, control: Path, disk: str, adaptor: str
) -> None:
    sim()
    client = SimClient(control)
    dead = f"http://127.0.0.1:{closed_port()}"
    assert client.call("add-pool", uuid=STALE_POOL, type="Linstor", url=dead)["ok"]
    answer = client.call("stop-vm", name="i-2-10-VM", disks=[disk])
    assert answer == {"ok": True, "disks": [{"path": disk, "claimed_by": adaptor}],
                      "logid": answer["logid"]}
    assert client.call("stop-vm", name="i-2-10-VM", disks=[disk, NFS_DISK])["ok"] is False


def test_hung_controller_fails_the_stop_with_a_read_timeout(
    sim: SimFactory, controller: LinstorEmulator, log: Path, control: Path
) -> None:
    sim(linstor_timeout=0.3)
    client = SimClient(control)
    assert client.call("add-pool", uuid=STALE_POOL, type="Linstor", url=controller.url)["ok"]
    controller.set_hang(True)
    started = time.monotonic()
    failed = client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])
    assert time.monotonic() - started >= 0.3
    controller.set_hang(False)
    assert failed["error"] == f"javax.ws.rs.ProcessingException: {READ_TIMED_OUT}"
    record = caught_record(log, failed["logid"])
    assert record[1] == "javax.ws.rs.ProcessingException: java.net.SocketTimeoutException: Read timed out"
    assert "Caused by: java.net.SocketTimeoutException: Read timed out" in record
    assert "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)" in record


def test_unanswered_connect_fails_the_stop_with_a_connect_timeout(
    sim: SimFactory, log: Path, control: Path
) -> None:
    """A controller whose SYNs go unanswered: a listener with a full accept queue drops
    them on Linux, as a firewall or a dead host would."""
    sim(linstor_timeout=0.3)
    client = SimClient(control)
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert client.call("add-pool", uuid=STALE_POOL, type="Linstor", url=url)["ok"]
        failed = client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])
    assert failed["error"] == f"javax.ws.rs.ProcessingException: {CONNECT_TIMED_OUT}"
    record = caught_record(log, failed["logid"])
    assert "Caused by: java.net.SocketTimeoutException: connect timed out" in record
    assert "\tat java.base/java.net.PlainSocketImpl.socketConnect(Native Method)" in record


def test_debug_level_adds_the_request_and_linstor_lines_the_guard_reads(
    sim: SimFactory, controller: LinstorEmulator, log: Path, control: Path
) -> None:
    from guard.sources.agentlog import iter_events

    sim(debug=True)
    client = SimClient(control)
    assert client.call("add-pool", uuid=NFS_POOL, type="NetworkFilesystem", url="127.0.0.1",
                       path="/export/primary")["ok"]
    assert client.call("add-pool", uuid=STALE_POOL, type="Linstor", url=controller.url)["ok"]
    assert client.call("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])["ok"]
    for uuid in (STALE_POOL, NFS_POOL):
        assert client.call("delete-pool", uuid=uuid)["removed"] is True
    assert client.call("delete-pool", uuid=STALE_POOL)["removed"] is False

    found = messages(log)
    assert (f"Linstor createStoragePool: name: '{STALE_POOL}', host: '{controller.url}', "
            "path: , userinfo: null") in found
    assert f"Linstor: disconnectPhysicalDiskByPath {NFS_DISK}" in found
    assert f"Linstor: Using storage pool: {STALE_POOL}" in found
    assert f"Attempting to remove storage pool {NFS_POOL} from libvirt" in found
    assert f"Storage pool {NFS_POOL} was successfully removed from libvirt." in found
    assert not any(f"remove storage pool {STALE_POOL}" in m for m in found)
    delete_request = next(m for m in found if m.startswith("Request:")
                          and "DeleteStoragePoolCommand" in m and STALE_POOL in m)
    assert re.match(r"Request:Seq 1-\d+:  \{ Cmd , MgmtId: \d+, via: 1, Ver: v1, Flags: \d+, "
                    r"\[\{\"com\.cloud\.agent\.api\.DeleteStoragePoolCommand\":", delete_request)

    events = [(e.kind, e.pool_uuid, e.pool_type, e.url) for e in iter_events([str(log)])
              if e.kind in ("pool-add", "pool-delete-command", "pool-remove")]
    assert events[:2] == [("pool-add", NFS_POOL, "NetworkFilesystem", ""),
                          ("pool-add", STALE_POOL, "Linstor", controller.url)]
    assert ("pool-delete-command", STALE_POOL, "Linstor", controller.url) in events
    assert ("pool-remove", NFS_POOL, "NetworkFilesystem", "") in events


def test_ha_monitor_tries_then_reboots_and_a_restart_forgets_the_pool(sim, properties, control, log):
    """KVMHAMonitor at a compressed cadence: each failed try logged, a retry sleep after
    each, then `stopping cloudstack-agent.` and the reboot (the marker). A restarted agent
    holds nothing, so it heartbeats nothing."""
    properties.write_text(properties.read_text() + "kvm.heartbeat.update.frequency=300\n"
                          "kvm.heartbeat.update.max.tries=3\nkvm.heartbeat.update.retry.sleep=200\n")
    proc = sim()
    client = SimClient(control)
    assert client.call("add-pool", uuid=STALE_POOL, type="Linstor", url="http://127.0.0.1:9")["ok"]
    assert client.call("status")["ha_pools"] == [STALE_POOL]
    started = time.monotonic()
    assert client.call("heartbeat", uuid=STALE_POOL, reason="drbdsetup events2 failed")["ok"]
    marker = Path(f"{control}.rebooted")
    wait_for(marker.exists, 10)
    elapsed = time.monotonic() - started
    assert json.loads(marker.read_text())["pool"] == STALE_POOL
    assert 3 * 0.2 <= elapsed < 3 * 0.2 + 0.3 + 2.0
    lines = [m for m in messages(log) if m.startswith("Write heartbeat")]
    assert lines == [f"Write heartbeat for pool [{STALE_POOL}] failed: drbdsetup events2 failed; try: {i} of 3."
                     for i in (1, 2, 3)] + [
        f"Write heartbeat for pool [{STALE_POOL}] failed: drbdsetup events2 failed; stopping cloudstack-agent."]
    events, _ = read_agent_log(str(log))
    beats = [e for e in events if e.kind == "heartbeat-failure" and e.pool_uuid == STALE_POOL]
    assert [b.detail.split(":")[0] for b in beats] == ["try 1 of 3", "try 2 of 3", "try 3 of 3",
                                                       "stopping cloudstack-agent"]
    stop_sim(proc)
    marker.unlink()
    sim()
    assert client.call("status")["ha_pools"] == [] and not marker.exists()
