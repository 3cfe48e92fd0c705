"""The bug and its relatives, end to end through `cloudstack-guard check` as a subprocess,
on a real libvirtd, real sockets, the LINSTOR and management emulators, and a stand-in
agent process."""

from __future__ import annotations

import time

from tests.support.agent_lines import LINSTOR_STOP_FAILURE
from tests.support.host import API_KEY, API_SECRET, PROBE_TIMEOUT_S
from tests.support.libvirtd import define_netfs_pool
from tests.support.mounts import remount, tmpfs


def stale(run):
    return run.findings("stale-pool")


def test_healthy_host_is_ok(host):
    pool = host.add_linstor_pool()
    run = host.check()
    assert run.returncode == 0, run.stdout + run.stderr
    doc = run.doc
    assert doc["status"] == "OK" and doc["findings"] == []
    assert doc["agent"]["connected"] is True and doc["agent"]["pid"] == host.agent.pid
    held = {p["uuid"]: p for p in doc["pools"]}
    assert held[pool]["held"] and held[pool]["type"] == "Linstor"
    assert [p["status"] for p in doc["probes"]] == ["healthy"]
    assert all(s["ok"] for s in doc["sources"].values()), doc["sources"]


def test_nagios_text_first_line(host):
    host.add_linstor_pool()
    out = host.check_text()
    first = out.stdout.splitlines()[0]
    assert out.returncode == 0
    assert first.startswith("CLOUDSTACK-GUARD OK - ") and " | critical=0;;1;0 warning=0;1;;0" in first


def test_the_bug_removal_then_controller_gone_then_restart(host):
    pool = host.add_linstor_pool()
    assert host.check().returncode == 0

    host.mgmt.remove_pool(pool)
    run = host.check()
    assert run.returncode == 1, run.stdout
    assert run.kinds() == ["stale-pool"]
    finding = stale(run)[0]
    assert finding["severity"] == "WARNING" and finding["pool_uuid"] == pool
    assert finding["pool_type"] == "Linstor" and finding["restart_helps"] is True

    host.linstor.stop()
    run = host.check()
    assert run.returncode == 2, run.stdout
    finding = stale(run)[0]
    assert finding["severity"] == "CRITICAL"
    assert any("refused" in e["fact"] for e in finding["evidence"]), finding["evidence"]
    assert "restart cloudstack-agent" in finding["action"]

    host.restart_agent()
    run = host.check()
    assert run.returncode == 0, run.stdout
    assert run.doc["findings"] == []


def test_hung_controller_is_a_timeout_within_the_probe_deadline(host):
    pool = host.add_linstor_pool()
    assert host.check().returncode == 0
    host.mgmt.remove_pool(pool)
    host.linstor.set_hang(True)
    run = host.check()
    assert run.returncode == 2, run.stdout
    finding = stale(run)[0]
    assert any("timeout" in e["fact"] for e in finding["evidence"]), finding["evidence"]
    assert run.elapsed < PROBE_TIMEOUT_S + 1.0, run.elapsed


def test_live_pool_with_controller_down_is_an_outage_not_stale(host):
    host.add_linstor_pool()
    assert host.check().returncode == 0
    host.linstor.stop()
    run = host.check()
    assert run.returncode == 2
    assert run.kinds() == ["backend-unreachable"]
    finding = run.findings("backend-unreachable")[0]
    assert finding["restart_helps"] is False and "will not help" in finding["action"]


def test_stop_failure_in_log_is_tied_to_the_stale_pool(host):
    pool = host.add_linstor_pool()
    assert host.check().returncode == 0
    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
    host.append_log(LINSTOR_STOP_FAILURE.format(ts=stamp))
    run = host.check()
    assert run.returncode == 2
    assert run.kinds() == ["stale-pool", "stop-failure"]
    failure = run.findings("stop-failure")[0]
    assert failure["adaptor"] == "LinstorStorageAdaptor" and failure["pool_uuid"] == pool
    assert failure["restart_helps"] is True


def test_libvirtd_stopped_reports_source_unavailable_and_keeps_other_findings(host, libvirtd):
    pool = host.add_linstor_pool()
    assert host.check().returncode == 0
    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    libvirtd.stop()
    try:
        run = host.check()
    finally:
        libvirtd.start()
    assert run.returncode == 2
    assert run.kinds() == ["source-unavailable", "stale-pool"]
    unavailable = run.findings("source-unavailable")[0]
    assert unavailable["severity"] == "UNKNOWN" and unavailable["source"] == "libvirt"
    assert run.doc["sources"]["libvirt"]["ok"] is False


def test_agent_down_is_critical(host):
    host.stop_agent()
    run = host.check()
    assert run.returncode == 2
    assert run.kinds() == ["agent-down"]


def test_inactive_nfs_pool_and_orphan_after_removal(host, libvirt_conn):
    nfs = host.mgmt.add_pool("nfs-primary", pool_type="NetworkFilesystem", scope="CLUSTER",
                             ipaddress="127.0.0.1", path="/export/primary")["id"]
    define_netfs_pool(libvirt_conn, nfs, "127.0.0.1", "/export/primary", str(host.root / "mnt"))
    run = host.check()
    assert run.returncode == 2
    # No NFS server answers on 127.0.0.1: the probe says why libvirt has the pool inactive.
    assert run.kinds() == ["backend-unreachable", "pool-inactive"]
    [outage] = run.findings("backend-unreachable")
    assert outage["pool_uuid"] == nfs and "kvmheartbeat.sh" in outage["action"]
    host.mgmt.remove_pool(nfs)
    run = host.check()
    assert run.kinds() == ["orphan-libvirt-pool"]
    assert run.returncode == 1 and "never deletes" in run.findings()[0]["action"]


def test_management_refused_is_unknown_and_leaks_no_secret(host):
    host.add_linstor_pool()
    host.mgmt.stop()
    run = host.check()
    assert run.returncode == 3
    assert run.kinds() == ["source-unavailable"]
    assert "refused" in run.doc["sources"]["management"]["detail"]
    for secret in (API_KEY, API_SECRET):
        assert secret not in run.stdout and secret not in run.stderr


def test_corrupt_history_is_moved_aside(host):
    host.add_linstor_pool()
    host.state_dir.mkdir(mode=0o700, exist_ok=True)
    (host.state_dir / "history.json").write_text("{not json")
    run = host.check()
    assert run.returncode == 0
    assert "corrupt" in run.doc["sources"]["history"]["detail"]
    assert list(host.state_dir.glob("history.json.corrupt-*"))


def test_hung_management_server_costs_one_timeout_and_keeps_other_findings(host):
    """Three API calls against a hung server must not take three timeouts: monitoring
    kills a plugin after 10 s by default, and then every finding is lost."""
    pool = host.add_linstor_pool()
    assert host.check().returncode == 0
    host.mgmt.remove_pool(pool)
    assert host.check().returncode == 1
    host.linstor.stop()
    host.mgmt.hang()
    run = host.check()
    assert run.returncode == 2, run.stdout
    assert run.kinds() == ["source-unavailable", "stale-pool"]
    assert "answer within" in run.doc["sources"]["management"]["detail"]
    assert run.elapsed < 6 + PROBE_TIMEOUT_S + 1.0, run.elapsed


def test_a_read_only_state_dir_is_still_read_and_the_check_still_judges_with_it(host, tmp_path):
    """A state_dir the kernel turned read-only still holds what the guard learned: check
    reads it (a removal needs it: the pool was listed before), judges, and says in one
    line that it could not save, instead of judging as if it had no history."""
    state = tmp_path / "ro-state"
    with tmpfs(state, "1m"):
        host.write_config(host.config.read_text().replace(f'state_dir = "{host.state_dir}"',
                                                          f'state_dir = "{state}"'))
        pool = host.add_linstor_pool()
        assert host.check().returncode == 0
        saved = (state / "history.json").read_bytes()
        remount(state, "ro")
        try:
            host.mgmt.remove_pool(pool)
            host.linstor.stop()
            run = host.check()
        finally:
            remount(state, "rw")
        assert run.returncode == 2
        assert sorted(run.kinds()) == ["source-unavailable", "stale-pool"], run.doc["findings"]
        assert run.findings("stale-pool")[0]["pool_uuid"] == pool
        history = run.doc["sources"]["history"]
        assert history["ok"] is False and "cannot save history" in history["detail"], history
        assert "Read-only" in history["detail"] and "\n" not in history["detail"]
        assert (state / "history.json").read_bytes() == saved
