"""Every backend through `cloudstack-guard check`, as monitoring runs it, on real peers:
a stale StorPool pool whose API goes away is a reboot risk, a stale NFS pool is no
reason to restart, a live Ceph pool whose monitor stops is an outage a restart will not
fix, and a host with pools of all seven types answers OK with one probe each.

The management server lists pools without ports, so the peers listen on their
protocols' own ports (NFS 2049, iSCSI 3260, glusterd 24007, PowerFlex's gateway 443; the
Ceph monitor on 3300/6789 of an address of its own)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent_lines import create
from tests.support.emulators.powerflex import PowerFlexGatewayEmulator
from tests.support.emulators.storpool import StorPoolEmulator
from tests.support.peers import ceph, ganesha, glusterd
from tests.support.peers.decoys import free_port
from tests.support.peers.drv_cfg import StandInDrvCfg
from tests.support.peers.process import PeerError
from tests.support.peers.storpool_cli import StorPoolTools
from tests.support.peers.tgtd import running_tgtd, tgtd_missing
from tests.support.pki import make_test_pki
from tests.support.real_parts import real_part_unavailable

TOKEN = "4417336259051736872"
OUR_ID = 3
SP = "ssd;5f0e8c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
IQN = "iqn.2026-12.org.example:primary"


def storpool_host(host, tmp_path: Path, api_port: int) -> None:
    """This host as StorPool sets one up: storpool.conf and its two tools, which the
    guard is pointed at."""
    tools = StorPoolTools(tmp_path / "storpool-bin")
    tools.ask_api("127.0.0.1", api_port, TOKEN)
    tools.confget({"SP_API_HTTP_HOST": "127.0.0.1", "SP_API_HTTP_PORT": str(api_port), "SP_OURID": str(OUR_ID)})
    conf = tmp_path / "storpool.conf"
    conf.write_text(f"SP_API_HTTP_HOST=127.0.0.1\nSP_API_HTTP_PORT={api_port}\nSP_AUTH_TOKEN={TOKEN}\n"
                    f"SP_OURID={OUR_ID}\n")
    host.write_config(host.config.read_text() +
                      f'[storpool]\nconf = "{conf}"\ncli = "{tools.cli}"\nconfget = "{tools.confget_path}"\n')


def checked(host, expect: int):
    run = host.check()
    assert run.returncode == expect, run.stdout + run.stderr
    return run


def test_a_stale_storpool_pool_whose_api_goes_away_is_critical_naming_the_reboot(host, tmp_path):
    port = free_port()
    storpool_host(host, tmp_path, port)
    with StorPoolEmulator(port, token=TOKEN, clients={OUR_ID: "running"}) as api:
        host.mgmt.add_pool("sp", pool_type="StorPool", scope="CLUSTER", pool_id=SP)
        with open(host.storpool_log, "a", encoding="utf-8") as out:
            out.write(create(time.time(), SP))
        run = checked(host, 0)
        assert [(p["backend"], p["status"]) for p in run.doc["probes"]] == [("storpool", "healthy")]
        host.mgmt.remove_pool(SP)
        checked(host, 1)
        [warning] = checked(host, 1).findings("stale-pool")
        assert warning["severity"] == "WARNING" and "VM stops are not affected" in warning["action"]
        api.stop()
        [critical] = checked(host, 2).findings("stale-pool")
    assert critical["pool_uuid"] == SP and critical["restart_helps"] is True
    assert "rebooted" in critical["action"] and "VM stops are not affected" in critical["action"]
    assert any("refused" in e["fact"] for e in critical["evidence"]), critical["evidence"]


@pytest.fixture
def nfs_server(tmp_path: Path) -> Iterator[ganesha.Ganesha]:
    if ganesha.missing():
        real_part_unavailable("nfs-ganesha", str(ganesha.missing()))
    server = ganesha.Ganesha(tmp_path / "ganesha", 2049)
    try:
        server.start()
    except PeerError as exc:
        real_part_unavailable("nfs-ganesha on 127.0.0.1:2049", str(exc))
    yield server
    server.stop()


def test_a_stale_nfs_pool_no_longer_in_libvirt_is_no_reason_to_restart(host, nfs_server):
    uuid = host.mgmt.add_pool("nfs", pool_type="NetworkFilesystem", ipaddress="127.0.0.1", path="/export")["id"]
    run = checked(host, 0)
    assert [(p["backend"], p["status"], p["source"]) for p in run.doc["probes"]] == [
        ("nfs", "healthy", "management server")]
    host.mgmt.remove_pool(uuid)
    for _ in range(2):
        run = host.check()
    assert run.returncode != 2, run.stdout
    assert all(f["severity"] != "CRITICAL" and not f["restart_helps"] for f in run.doc["findings"]), run.doc


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[ceph.CephMonitor]:
    if ceph.missing_binaries():
        real_part_unavailable("ceph-mon", f"not installed: {ceph.missing_binaries()}")
    mon = ceph.CephMonitor(tmp_path / "ceph", ceph.free_loopback_host())
    mon.start()
    yield mon
    mon.stop()


def test_a_live_ceph_pool_whose_monitor_stops_is_an_outage_a_restart_will_not_fix(host, monitor):
    host.mgmt.add_pool("ceph", pool_type="RBD", ipaddress=monitor.host, path="cloudstack")
    run = checked(host, 0)
    assert [(p["backend"], p["status"]) for p in run.doc["probes"]] == [("rbd", "healthy")]
    monitor.stop()
    [outage] = checked(host, 2).findings("backend-unreachable")
    assert outage["severity"] == "CRITICAL" and outage["restart_helps"] is False
    assert "will not help" in outage["action"] and "Ceph monitors" in outage["action"]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        real_part_unavailable("openssl", "the openssl command is not installed")
    try:
        return make_test_pki(tmp_path / "pki")
    except (RuntimeError, subprocess.SubprocessError) as exc:
        real_part_unavailable("openssl", str(exc))


def test_a_host_with_pools_of_all_seven_types_all_answering_is_ok_with_one_probe_each(
        host, tmp_path, nfs_server, monitor, pki):
    for why in (tgtd_missing(), glusterd.missing()):
        if why:
            real_part_unavailable("tgtd and glusterd", why)
    sp_port = free_port()
    storpool_host(host, tmp_path, sp_port)
    sdc = StandInDrvCfg(tmp_path / "sdc")
    host.write_config(host.config.read_text() +
                      f'[powerflex]\nca = "{pki["ca"]}"\nsdc_home = "{sdc.home}"\n')
    gluster = glusterd.Glusterd(tmp_path / "glusterd", 24007)
    with running_tgtd((IQN,), port=3260), \
            StorPoolEmulator(sp_port, token=TOKEN, clients={OUR_ID: "running"}), \
            PowerFlexGatewayEmulator(pki["server_cert"], pki["server_key"], password="unused", port=443):
        gluster.start()
        try:
            host.add_linstor_pool()
            host.mgmt.add_pool("nfs", pool_type="NetworkFilesystem", ipaddress="127.0.0.1", path="/export")
            host.mgmt.add_pool("ceph", pool_type="RBD", ipaddress=monitor.host, path="cloudstack")
            host.mgmt.add_pool("iscsi", pool_type="Iscsi", ipaddress="127.0.0.1", path=f"/{IQN}/1")
            host.mgmt.add_pool("gluster", pool_type="Gluster", ipaddress="127.0.0.1", path="/gv0")
            host.mgmt.add_pool("sp", pool_type="StorPool", pool_id=SP)
            host.mgmt.add_pool("pf", pool_type="PowerFlex", ipaddress="127.0.0.1", path="pool1")
            run = checked(host, 0)
        finally:
            gluster.stop()
    probes = run.doc["probes"]
    assert sorted(p["backend"] for p in probes) == sorted(
        ["linstor", "nfs", "rbd", "iscsi", "gluster", "storpool", "powerflex"]), probes
    assert all(p["status"] == "healthy" for p in probes), probes
    assert run.doc["findings"] == []
