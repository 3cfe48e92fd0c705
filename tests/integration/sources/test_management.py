"""The management source through the real cs client against the management emulator:
what it scopes to this host, how it finds the host, and failures in one line without secrets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from guard.config import Credentials, ManagementConfig
from guard.sources.agentconf import AgentProperties, agent_properties
from guard.sources.management import read_management
from tests.support.emulators.management import ManagementEmulator

KEY, SECRET = "src-key-1d9f", "src-secret-88aa"


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
