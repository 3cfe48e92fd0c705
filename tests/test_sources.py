"""Evidence sources against real parts: libvirt (private libvirtd and the test driver),
the management emulator through the real cs client, real processes for the agent
source, and the history store on a real filesystem."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guard import store
from guard.config import Credentials, ManagementConfig
from guard.history import SCHEMA_VERSION, Held, History
from guard.sources.agent import find_agent
from guard.sources.agentconf import AgentProperties, agent_properties
from guard.sources.libvirt import parse_pool_xml, read_libvirt_pools
from guard.sources.management import read_management
from guard.urls import without_userinfo
from tests.emulators.management import ManagementEmulator
from tests.harness.histories import UUID_A, UUID_B, sample_history
from tests.harness.libvirtd import define_dir_pool, define_netfs_pool
from tests.harness.unprivileged import python_as_nobody

KEY, SECRET = "src-key-1d9f", "src-secret-88aa"

TEST_DRIVER_XML = f"""<node>
  <pool type='netfs'>
    <name>{UUID_A}</name><uuid>{UUID_A}</uuid>
    <source><host name='10.1.1.1'/><dir path='/export'/><format type='nfs'/></source>
    <target><path>/mnt/{UUID_A}</path></target>
  </pool>
  <pool type='dir'><name>operators-own-pool</name><target><path>/var/lib/images</path></target></pool>
</node>"""


# ------------------------------------------------------------------------ libvirt

def test_libvirt_test_driver(tmp_path):
    (tmp_path / "node.xml").write_text(TEST_DRIVER_XML)
    pools, status = read_libvirt_pools(f"test://{tmp_path}/node.xml", 3)
    assert status.ok and [p.uuid for p in pools] == [UUID_A]
    assert pools[0].type == "NetworkFilesystem" and pools[0].source_hosts == ("10.1.1.1",)
    assert pools[0].state == "running" and pools[0].target == f"/mnt/{UUID_A}"
    default, status = read_libvirt_pools("test:///default", 3)
    assert status.ok and default == []


def test_libvirt_private_daemon_pools(libvirtd, libvirt_conn, tmp_path):
    define_dir_pool(libvirt_conn, UUID_A, tmp_path / "local")
    define_netfs_pool(libvirt_conn, UUID_B, "127.0.0.1", "/export/primary", str(tmp_path / "mnt"))
    libvirt_conn.storagePoolDefineXML(
        f"<pool type='dir'><name>operators-own</name><target><path>{tmp_path}</path></target></pool>", 0)
    pools, status = read_libvirt_pools(libvirtd.uri, 3)
    assert status.ok
    found = {p.uuid: p for p in pools}
    assert set(found) == {UUID_A, UUID_B}
    assert found[UUID_A].state == "running" and found[UUID_A].type == "Filesystem"
    assert found[UUID_B].state == "inactive" and found[UUID_B].type == "NetworkFilesystem"
    assert found[UUID_B].source_hosts == ("127.0.0.1",)


def test_libvirt_down_is_one_line_and_silent(capfd):
    pools, status = read_libvirt_pools("qemu+unix:///system?socket=/nonexistent/sock", 3)
    assert pools == [] and not status.ok
    assert "\n" not in status.detail and "/nonexistent/sock" in status.detail
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("xml", ["", "<pool", "<pool><name>x</name></pool>", "<network/>",
                                 f"<pool type='rbd'><name>{UUID_A}</name><source><host/></source></pool>"])
def test_malformed_or_foreign_pool_xml(xml):
    pool = parse_pool_xml(xml, "running")
    assert pool is None or (pool.uuid == UUID_A and pool.source_hosts == ())


# ----------------------------------------------------------------- management

@pytest.fixture
def mgmt():
    with ManagementEmulator({KEY: SECRET}) as emulator:
        yield emulator


def mgmt_config(emulator: ManagementEmulator, secret: str = SECRET, **extra) -> ManagementConfig:
    return ManagementConfig("/dev/null", Credentials(emulator.endpoint, KEY, secret), timeout=2.0, **extra)


def props(tmp_path: Path, local: str = "") -> AgentProperties:
    values = {"host": "127.0.0.1", "port": "8250"}
    if local:
        values["local.storage.uuid"] = local
    return agent_properties(str(tmp_path / "agent.properties"), values)


def test_management_scope(mgmt, tmp_path):
    host = mgmt.add_host("kvm-a")
    other = mgmt.add_cluster("other")
    mine = mgmt.add_pool("nfs", scope="CLUSTER")["id"]
    mgmt.add_pool("nfs-other-cluster", scope="CLUSTER", cluster_id=other["id"])
    zone_kvm = mgmt.add_pool("lin", pool_type="Linstor", scope="ZONE", hypervisor="KVM",
                             ipaddress="http://10.0.0.9:3370")["id"]
    mgmt.add_pool("vmware-zone", scope="ZONE", hypervisor="VMware")
    local = mgmt.add_pool("local", pool_type="Filesystem", scope="HOST")["id"]
    mgmt.add_pool("someone-elses-local", pool_type="Filesystem", scope="HOST")
    maint = mgmt.add_pool("maint", scope="CLUSTER", state="Maintenance")["id"]
    found, pools, elsewhere, status = read_management(mgmt_config(mgmt), "kvm-a", props(tmp_path, local))
    assert status.ok, status.detail
    assert len(elsewhere) == 3 and not set(elsewhere) & {p.uuid for p in pools}
    assert found.id == host["id"] and found.state == "Up"
    by_id = {p.uuid: p for p in pools}
    assert set(by_id) == {mine, zone_kvm, local, maint}
    assert by_id[zone_kvm].url == "http://10.0.0.9:3370" and by_id[zone_kvm].type == "Linstor"
    assert by_id[maint].state == "Maintenance"


def test_management_host_lookup(mgmt, tmp_path):
    mgmt.add_host("kvm1.example.com", ipaddress="192.0.2.10")
    mgmt.add_host("kvm10", ipaddress="192.0.2.11")
    found, _, _, status = read_management(mgmt_config(mgmt), "kvm1.example.com", props(tmp_path))
    assert status.ok and found.name == "kvm1.example.com"
    short, _, _, status = read_management(mgmt_config(mgmt), "kvm1", props(tmp_path))
    assert not status.ok and "host_id" in status.detail
    by_ip = mgmt.add_host("renamed-in-ui", ipaddress="127.0.0.1")
    found, _, _, status = read_management(mgmt_config(mgmt), "no-such-name", props(tmp_path))
    assert status.ok and found.id == by_ip["id"]
    pinned, _, _, status = read_management(mgmt_config(mgmt, host_id=by_ip["id"]), "x", props(tmp_path))
    assert status.ok and pinned.id == by_ip["id"]
    _, _, _, status = read_management(mgmt_config(mgmt, host_id="nope"), "x", props(tmp_path))
    assert not status.ok and "host_id nope" in status.detail


def test_management_failures_are_one_line_without_secrets(mgmt, tmp_path):
    mgmt.add_host("kvm-a")
    cases = {}
    _, _, _, cases["bad secret"] = read_management(mgmt_config(mgmt, secret="wrong"), "kvm-a", props(tmp_path))
    mgmt.garbage()
    _, _, _, cases["garbage"] = read_management(mgmt_config(mgmt), "kvm-a", props(tmp_path))
    mgmt.fail(530, "internal error")
    _, _, _, cases["error"] = read_management(mgmt_config(mgmt), "kvm-a", props(tmp_path))
    mgmt.hang()
    started = time.monotonic()
    _, _, _, cases["hang"] = read_management(mgmt_config(mgmt), "kvm-a", props(tmp_path))
    assert time.monotonic() - started < 4.0
    mgmt.normal()
    mgmt.stop()
    _, _, _, cases["refused"] = read_management(mgmt_config(mgmt), "kvm-a", props(tmp_path))
    assert "401" in cases["bad secret"].detail
    assert "refused" in cases["refused"].detail and "no answer" in cases["hang"].detail
    for name, status in cases.items():
        assert not status.ok, name
        assert "\n" not in status.detail, name
        for secret in (KEY, SECRET, "wrong", "signature="):
            assert secret not in status.detail, (name, status.detail)


def test_management_not_configured():
    host, pools, _, status = read_management(None, "kvm", None)
    assert host is None and pools == [] and status.ok and not status.configured


# ---------------------------------------------------------------------- agent

def spawn(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_agent_found_with_connection_and_children(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = ("import socket, subprocess, sys, time\n"
            f"s = socket.create_connection(('127.0.0.1', {port}))\n"
            "child = subprocess.Popen(['sleep', '60'])\n"
            "time.sleep(60)\n")
    proc = spawn([sys.executable, "-c", code, "com.cloud.agent.AgentShell"])
    try:
        conf = agent_properties("x", {"host": "127.0.0.1", "port": str(port)})
        wait_for(lambda: (find_agent(conf)[0] or None) is not None and find_agent(conf)[0].children)
        agent, status = find_agent(conf)
        assert status.ok and agent.incarnation.pid == proc.pid
        assert agent.connected is True and f"127.0.0.1:{port}" in agent.connection
        assert [c.name for c in agent.children] == ["sleep"]
        elsewhere = agent_properties("x", {"host": "127.0.0.2", "port": str(port)})
        agent, _ = find_agent(elsewhere)
        assert agent.connected is False and "127.0.0.2" in agent.connection
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)
        listener.close()


def test_jsvc_parent_and_child_are_one_incarnation():
    """jsvc leaves a parent and a child that both carry the main class."""
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
            "'com.cloud.agent.AgentShell'])\n"
            "time.sleep(60)\n")
    proc = spawn([sys.executable, "-c", code, "com.cloud.agent.AgentShell"])
    try:
        wait_for(lambda: find_agent(None)[0] is not None)
        time.sleep(0.3)
        agent, status = find_agent(None)
        assert agent.incarnation.pid == proc.pid and agent.children == ()
        assert agent.connected is None
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)


def test_no_agent():
    agent, status = find_agent(None)
    assert agent is None and status.ok and "no com.cloud.agent.AgentShell" in status.detail


# -------------------------------------------------------------------- history

def test_history_round_trip_and_private_dir(tmp_path):
    state = tmp_path / "state"
    store.save(str(state), sample_history())
    loaded, status = store.load(str(state))
    assert status.ok and loaded == sample_history()
    assert (state.stat().st_mode & 0o777) == 0o700
    assert sorted(p.name for p in state.iterdir()) == ["history.json"]


@pytest.mark.parametrize("content", ["{", "[]", '{"version": 99}', '{"version": 1, "pools": [{"x": 1}]}',
                                     '{"version": 1, "pools": [], "incarnations": [{"pid": "a"}]}'])
def test_corrupt_history_moved_aside(tmp_path, content):
    (tmp_path / "history.json").write_text(content)
    loaded, status = store.load(str(tmp_path))
    assert loaded == History() and status.ok and "corrupt" in status.detail
    assert not (tmp_path / "history.json").exists()
    assert len(list(tmp_path.glob("history.json.corrupt-*"))) == 1


def test_history_write_is_atomic(tmp_path):
    """A reader never sees a partial file while the writer replaces it."""
    store.save(str(tmp_path), sample_history())
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom guard import store as s\nfrom tests.harness.histories import sample_history\n"
        "for _ in range(300): s.save(sys.argv[1], sample_history())\n"), str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1])
    reads = 0
    while writer.poll() is None:
        data = json.loads((tmp_path / "history.json").read_text())
        assert data["version"] == SCHEMA_VERSION
        reads += 1
    assert writer.wait(timeout=60) == 0 and reads > 0


def test_agent_sockets_hidden_from_unprivileged_user_is_unknown_not_disconnected(world_tmp):
    """A monitoring user without root cannot read root's sockets: that is not a disconnect."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = f"import socket, time\ns = socket.create_connection(('127.0.0.1', {port}))\ntime.sleep(60)\n"
    proc = spawn([sys.executable, "-c", code, "com.cloud.agent.AgentShell"])
    try:
        (world_tmp / "agent.properties").write_text(f"host=127.0.0.1\nport={port}\n")
        (world_tmp / "agent.properties").chmod(0o644)
        probe = ("import json, sys\nfrom guard.sources.agent import find_agent\n"
                 "from guard.sources.agentconf import read_agent_properties\n"
                 "props, _ = read_agent_properties(sys.argv[1])\nagent, _ = find_agent(props)\n"
                 "print(json.dumps([props is not None, agent.incarnation.pid, agent.connected, "
                 "agent.connection]))\n")
        wait_for(lambda: find_agent(None)[0] is not None)
        result = python_as_nobody(probe, str(world_tmp / "agent.properties"))
        assert result.returncode == 0, result.stderr
        read_props, pid, connected, how = json.loads(result.stdout)
        assert read_props, "the unprivileged child must read agent.properties to know the port"
        assert pid == proc.pid and connected is None and "root" in how
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)
        listener.close()


# ------------------------------------------------- history of the wrong types or bytes

def _valid_history() -> dict:
    """A history document with every field of every record, as `save` writes it."""
    return {
        "version": 1,
        "pools": [{"uuid": UUID_A, "type": "Linstor", "name": "lin", "url": "http://c:3370",
                   "first_listed": 1.0, "last_listed": 2, "last_state": "Up", "removed_at": 5.0,
                   "removed_via": "test", "maintenance_at": None}],
        "incarnations": [{"pid": 42, "start_time": 100.5, "first_seen": 101,
                          "held": [{"uuid": UUID_A, "since": 102.0, "via": "log"}],
                          "dropped": [UUID_B]}],
        "restarts": [{"at": 200.0, "reason": "stale-pool", "old_pid": 42, "pools": [UUID_A],
                      "outcome": "verified", "detail": "", "new_pid": 43}],
        "breaker_open_since": 300,
        "breaker_reason": "two restarts failed",
    }


def test_history_with_every_field_loads(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(_valid_history()))
    loaded, status = store.load(str(tmp_path))
    assert status.ok and "corrupt" not in status.detail
    assert loaded.pools[0].last_listed == 2.0 and loaded.pools[0].maintenance_at is None
    assert loaded.incarnations[0].held == (Held(UUID_A, 102.0, "log"),)
    assert loaded.restarts[0].new_pid == 43 and loaded.restarts[0].pools == (UUID_A,)
    assert loaded.breaker_open_since == 300.0
    store.save(str(tmp_path), loaded)
    assert store.load(str(tmp_path))[0] == loaded


def _broken(path: str, value) -> dict:
    """The valid document with the value at `path` (dotted, list indexes as numbers)
    replaced, or deleted when value is ..."""
    data = _valid_history()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


WRONG_TYPES = [
    ("pools.0.removed_at", "yesterday"), ("pools.0.first_listed", True), ("pools.0.uuid", 7),
    ("pools.0.type", 1), ("pools.0.name", None), ("pools.0.url", ["http://c"]),
    ("pools.0.last_state", {}), ("pools.0.removed_via", 0), ("pools.0.maintenance_at", [1]),
    ("pools.0.last_listed", "2"), ("pools.0.uuid", ...), ("pools.0.extra", 1), ("pools.0", "x"),
    ("pools", {}), ("incarnations.0.pid", "x"), ("incarnations.0.pid", 1.5),
    ("incarnations.0.pid", True), ("incarnations.0.start_time", "100"),
    ("incarnations.0.first_seen", None), ("incarnations.0.held", [1]),
    ("incarnations.0.held", "x"), ("incarnations.0.held.0.since", "x"),
    ("incarnations.0.held.0.via", 3), ("incarnations.0.held.0.uuid", ...),
    ("incarnations.0.dropped", [1]), ("incarnations.0.dropped", UUID_B), ("incarnations", None),
    ("restarts", [1]), ("restarts.0.at", "x"), ("restarts.0.reason", None),
    ("restarts.0.old_pid", "42"), ("restarts.0.pools", [None]), ("restarts.0.outcome", 1),
    ("restarts.0.detail", []), ("restarts.0.new_pid", 4.5), ("restarts.0.at", ...),
    ("restarts", "x"), ("breaker_open_since", "x"), ("breaker_open_since", False),
    ("breaker_reason", 5), ("pools.0.removed_at", 10 ** 400),
]


@pytest.mark.parametrize("path,value", WRONG_TYPES, ids=[f"{p}={v!r}"[:40] for p, v in WRONG_TYPES])
def test_history_with_wrong_types_is_moved_aside(tmp_path, path, value):
    (tmp_path / "history.json").write_text(json.dumps(_broken(path, value)))
    loaded, status = store.load(str(tmp_path))
    assert loaded == History() and status.ok and "corrupt" in status.detail, status.detail
    assert "\n" not in status.detail
    assert not (tmp_path / "history.json").exists()
    assert len(list(tmp_path.glob("history.json.corrupt-*"))) == 1


@pytest.mark.parametrize("content", [
    b'{"version": 1, "pools": [], "incarnations": [], "breaker_reason": "\xff\xfe"}',
    b"\x80" * 16,
    b"[" * 100_000 + b"]" * 100_000,
], ids=["invalid-utf8-in-a-string", "invalid-utf8", "nested-too-deep"])
def test_history_of_unreadable_bytes_is_moved_aside(tmp_path, content):
    (tmp_path / "history.json").write_bytes(content)
    loaded, status = store.load(str(tmp_path))
    assert loaded == History() and status.ok and "corrupt" in status.detail
    assert len(list(tmp_path.glob("history.json.corrupt-*"))) == 1


# ----------------------------------------------------- credentials inside URLs

def test_without_userinfo():
    assert without_userinfo("https://user:pass@cs.example/client/api") == "https://cs.example/client/api"
    assert without_userinfo("https://u:p@ss@cs.example:8443/client/api") == "https://cs.example:8443/client/api"
    assert without_userinfo("u:p@ctl:3370") == "ctl:3370"
    assert without_userinfo("http://u:p@[::1]:3370/x") == "http://[::1]:3370/x"
    for clean in ("http://cs.example:8080/client/api", "http://h/p?x=a@b", "http://h?x=a@b", "ctl"):
        assert without_userinfo(clean) == clean


def test_management_endpoint_credentials_never_shown(mgmt, tmp_path):
    mgmt.add_host("kvm-a")
    host_port = mgmt.endpoint.split("://", 1)[1].split("/", 1)[0]
    endpoint = mgmt.endpoint.replace("://", "://operator:hunter2@", 1)
    config = ManagementConfig("/dev/null", Credentials(endpoint, KEY, SECRET), timeout=2.0)
    _, _, _, answered = read_management(config, "kvm-a", props(tmp_path))
    mgmt.stop()
    _, _, _, refused = read_management(config, "kvm-a", props(tmp_path))
    assert answered.ok and not refused.ok
    for status in (answered, refused):
        assert "hunter2" not in status.detail and "operator" not in status.detail, status.detail
        assert status.detail.startswith(f"http://{host_port}/"), status.detail


def test_management_reports_its_version(mgmt, tmp_path):
    mgmt.add_host("kvm-a")
    host, _, _, status = read_management(mgmt_config(mgmt), "kvm-a", props(tmp_path))
    assert status.ok and host.server_version == "4.19.1.0"


def test_management_not_judged_without_agent_properties(mgmt):
    """Without local.storage.uuid the host's own local pool would look removed."""
    mgmt.add_host("kvm-a")
    mgmt.add_pool("local", pool_type="Filesystem", scope="HOST")
    host, pools, _, status = read_management(mgmt_config(mgmt), "kvm-a", None)
    assert host is None and pools == [] and not status.ok
    assert "agent.properties is unreadable" in status.detail


def test_a_storpool_pool_id_keeps_its_template_name(mgmt, tmp_path):
    """StorPool ids are `<template>;<uuid>` in the API, the agent's map and its heartbeat
    lines: lowercasing the whole id made a live pool look unlisted next to its log lines."""
    host = mgmt.add_host("kvm-a", ipaddress="127.0.0.1")
    sp = "SSD-Gold;5A5A5A5A-1111-2222-3333-444444444444"
    mgmt.add_pool("sp", pool_type="StorPool", scope="CLUSTER", cluster_id=host["clusterid"], pool_id=sp)
    _, pools, _, status = read_management(mgmt_config(mgmt), "kvm-a", props(tmp_path))
    assert status.ok and [p.uuid for p in pools] == ["SSD-Gold;5a5a5a5a-1111-2222-3333-444444444444"]
