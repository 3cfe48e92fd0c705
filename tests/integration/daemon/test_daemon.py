"""`cloudstack-guard run` outside systemd: sd_notify to a socket the test owns, JSON logs,
real libvirtd events, the agent log written as the real agent writes it, signals."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import threading
import time

import pytest

from tests.support.agent_lines import LINSTOR_STOP_FAILURE, create
from tests.support.daemon import RunningDaemon
from tests.support.libvirtd import define_dir_pool
from tests.support.mounts import remount, tmpfs

NFS_UUID = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def daemon(host, tmp_path):
    running = RunningDaemon(host.config, tmp_path)
    yield running
    running.stop()


def test_ready_after_first_full_evaluation_then_watchdog_and_clean_stop(host, daemon):
    host.add_linstor_pool()
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    ready_at = next(t for t, f in daemon.notifications if f == "READY=1")
    status_before = [f for t, f in daemon.notifications if f.startswith("STATUS=") and t <= ready_at]
    assert status_before and "agent pid" in status_before[-1]
    daemon.wait_for(lambda: len(daemon.notified("WATCHDOG=1")) >= 3, what="three watchdog pings")
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5.0
    assert daemon.notified("STOPPING=1")


def test_findings_logged_once_when_they_appear_and_when_they_clear(host, daemon):
    pool = host.add_linstor_pool()
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    critical = daemon.wait_event("finding", kind="stale-pool", severity="CRITICAL")
    assert critical["pool"] == pool and "refused" in critical["evidence"]
    decision = daemon.wait_event("restart-decision")
    assert decision["act"] is False and decision["refused_by"] == "mode"
    assert "in-flight=pass" in decision["gates"]
    time.sleep(2.5)
    assert len(daemon.events("finding", kind="stale-pool", severity="CRITICAL")) == 1
    assert len(daemon.events("restart-decision")) == 1
    assert any("CRITICAL: stale-pool" in f for f in daemon.notified("STATUS="))
    host.restart_agent()
    cleared = daemon.wait_event("finding-cleared", kind="stale-pool")
    assert cleared["pool"] == pool


def test_libvirt_pool_event_reaches_the_daemon(host, daemon, libvirt_conn, tmp_path):
    nfs = host.mgmt.add_pool("local", pool_type="Filesystem", scope="CLUSTER", pool_id=NFS_UUID)["id"]
    pool = define_dir_pool(libvirt_conn, nfs, tmp_path / "pool")
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    pool.destroy()
    finding = daemon.wait_event("finding", kind="pool-inactive", timeout=5)
    assert finding["pool"] == nfs


def test_an_undefined_pool_leaves_the_daemons_picture_at_its_event(host, daemon, libvirt_conn, tmp_path):
    """Each event re-reads only the pool it names: an undefined pool is gone from libvirt,
    and the finding about it clears, with no listing of the others in between."""
    nfs = host.mgmt.add_pool("local", pool_type="Filesystem", scope="CLUSTER", pool_id=NFS_UUID)["id"]
    pool = define_dir_pool(libvirt_conn, nfs, tmp_path / "pool")
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    pool.destroy()
    daemon.wait_event("finding", kind="pool-inactive", pool=nfs, timeout=5)
    pool.undefine()
    cleared = daemon.wait_event("finding-cleared", kind="pool-inactive", timeout=5)
    assert cleared["pool"] == nfs


def test_stop_failure_line_in_the_log_reaches_the_daemon(host, daemon):
    pool = host.add_linstor_pool()
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    daemon.wait_event("finding", kind="stale-pool", severity="CRITICAL")
    host.append_log(LINSTOR_STOP_FAILURE.format(ts=time.strftime("%Y-%m-%d %H:%M:%S,000")))
    failure = daemon.wait_event("finding", kind="stop-failure", timeout=5)
    assert failure["pool"] == pool and "ConnectException" in failure["evidence"]


def test_storpool_adaptor_log_lines_reach_the_daemon_as_they_are_written(host, daemon):
    """Nothing lists these StorPool pools: StorPool's own log is the only sign that the
    running agent was given them, and so heartbeats them; the StorPool probe says whether
    that heartbeat would pass."""
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    first, second = "tpl;5f0e8c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b", "tpl;0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    for uuid in (first, second):
        with open(host.storpool_log, "a", encoding="utf-8") as out:
            out.write(create(time.time(), uuid))
        # No StorPool runs on this host: what the heartbeat checks fails, so it would reboot.
        finding = daemon.wait_event("finding", kind="stale-pool", pool=uuid, severity="CRITICAL", timeout=10)
        assert "storpool-agent.log" in finding["evidence"] and "rebooted" in finding["action"]
        assert "StorPool is not configured on this host" in finding["evidence"]


def test_log_rotation_under_the_daemon(host, daemon):
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    os.rename(host.log, str(host.log) + ".1")
    host.append_log(LINSTOR_STOP_FAILURE.format(ts=time.strftime("%Y-%m-%d %H:%M:%S,000")))
    daemon.wait_event("finding", kind="stop-failure", timeout=5)
    shutil.copyfile(host.log, str(host.log) + ".1")
    os.truncate(host.log, 0)
    time.sleep(0.5)
    assert len(daemon.events("finding", kind="stop-failure")) == 1, "a line was read twice"


def test_sighup_with_broken_config_keeps_running_on_the_old_one(host, daemon):
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    good = host.config.read_text()
    host.config.write_text(good + "\n[remediation]\nmax_restarts = \"two\"\n")
    daemon.signal(signal.SIGHUP)
    refused = daemon.wait_event("reload-refused")
    assert "remediation.max_restarts" in refused["error"] and refused["keeping"] == str(host.config)
    pings = len(daemon.notified("WATCHDOG=1"))
    daemon.wait_for(lambda: len(daemon.notified("WATCHDOG=1")) > pings + 1, what="watchdog after reload")
    host.config.write_text('mode = "remediate"\n' + good)
    daemon.signal(signal.SIGHUP)
    assert daemon.wait_event("reloaded")["mode"] == "remediate"


def test_libvirtd_restart_under_the_daemon(host, daemon, libvirtd):
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    connects = len(daemon.events("libvirt-connected"))
    libvirtd.stop()
    daemon.wait_event("libvirt-disconnected", timeout=10)
    libvirtd.start()
    daemon.wait_for(lambda: len(daemon.events("libvirt-connected")) > connects, timeout=15,
                    what="reconnect")
    time.sleep(0.5)
    assert daemon.proc.poll() is None
    assert not daemon.events("task-failed")
    assert not [e for e in daemon.events("finding") if e["severity"] != "UNKNOWN"]


def test_bad_config_exits_78(tmp_path):
    config = tmp_path / "guard.toml"
    config.write_text("[agent]\nlogg = 1\n")
    running = RunningDaemon(config, tmp_path)
    assert running.proc.wait(30) == 78
    running.stop()
    refused = running.events("config-refused")
    assert refused and "agent.logg" in refused[0]["error"]
    assert not running.notified("READY=1")


def test_a_log_directory_that_appears_later_is_polled_then_watched(host, tmp_path):
    """Before the agent is installed its log directory may not exist: inotify cannot
    watch it, the daemon says so once and polls, and watches it once it is there."""
    later = tmp_path / "later"
    host.write_config(host.config.read_text().replace(f'log = "{host.log}"', f'log = "{later / "agent.log"}"'))
    daemon = RunningDaemon(host.config, tmp_path)
    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        polled = daemon.wait_event("agent-log-polled", timeout=5)
        assert str(later) in polled["reason"]
        pool = host.add_linstor_pool()
        later.mkdir()
        host.mgmt.remove_pool(pool)
        host.linstor.stop()
        (later / "agent.log").write_text(LINSTOR_STOP_FAILURE.format(ts=time.strftime("%Y-%m-%d %H:%M:%S,000")))
        failure = daemon.wait_event("finding", kind="stop-failure", timeout=10)
        assert "ConnectException" in failure["evidence"]
        time.sleep(3)
        assert len(daemon.events("agent-log-polled")) == 1, "said once, not every look"
    finally:
        daemon.stop()


@pytest.fixture
def tiny_state_dir(tmp_path):
    """state_dir on a 64 KiB tmpfs, which a test can fill or make read-only."""
    with tmpfs(tmp_path / "tiny-state") as state:
        yield state


def test_a_full_or_deleted_state_dir_is_one_clear_finding_and_never_fatal(host, tmp_path, tiny_state_dir):
    host.write_config(host.config.read_text().replace(f'state_dir = "{host.state_dir}"',
                                                      f'state_dir = "{tiny_state_dir}"'))
    daemon = RunningDaemon(host.config, tmp_path)
    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        filler = tiny_state_dir / "filler"
        with open(filler, "wb") as out, contextlib.suppress(OSError):
            out.write(b"\0" * 128 * 1024)
        pool = host.add_linstor_pool()  # the history changes: it must be saved
        finding = daemon.wait_event("finding", kind="source-unavailable", timeout=15)
        assert "cannot save history" in finding["evidence"] and "state_dir" in finding["action"]
        host.mgmt.remove_pool(pool)
        host.linstor.stop()
        daemon.wait_event("finding", kind="stale-pool", severity="CRITICAL", timeout=15)
        filler.unlink()
        host.linstor.start()
        daemon.wait_event("finding-cleared", kind="source-unavailable", timeout=20)
        for entry in list(tiny_state_dir.iterdir()):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        host.add_linstor_pool("another")
        daemon.wait_for(lambda: (tiny_state_dir / "history.json").exists(), 15, what="history written again")
        assert daemon.proc.poll() is None
        assert len(daemon.events("finding", kind="source-unavailable")) == 1, "said once"
    finally:
        assert daemon.stop() == 0


def test_a_state_dir_made_read_only_under_the_daemon_is_one_finding_and_never_fatal(
        host, tmp_path, tiny_state_dir):
    """A state_dir remounted read-only (a failing disk the kernel turned read-only, an
    operator's mistake): the history cannot be saved, which is said once; the daemon
    stays up, still judges what it sees, and saves again once the mount is writable."""
    host.write_config(host.config.read_text().replace(f'state_dir = "{host.state_dir}"',
                                                      f'state_dir = "{tiny_state_dir}"'))
    daemon = RunningDaemon(host.config, tmp_path)
    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        daemon.wait_for(lambda: (tiny_state_dir / "history.json").exists(), 15, what="a first history")
        saved = (tiny_state_dir / "history.json").read_bytes()
        remount(tiny_state_dir, "ro")
        pool = host.add_linstor_pool()  # the history changes: it must be saved
        finding = daemon.wait_event("finding", kind="source-unavailable", timeout=15)
        assert "cannot save history" in finding["evidence"] and "Read-only" in finding["evidence"]
        assert "state_dir" in finding["action"]
        assert (tiny_state_dir / "history.json").read_bytes() == saved, "the last good history is kept"
        host.mgmt.remove_pool(pool)
        host.linstor.stop()
        daemon.wait_event("finding", kind="stale-pool", severity="CRITICAL", timeout=15)
        remount(tiny_state_dir, "rw")
        host.linstor.start()
        daemon.wait_event("finding-cleared", kind="source-unavailable", timeout=20)
        daemon.wait_for(lambda: (tiny_state_dir / "history.json").read_bytes() != saved, 15,
                        what="the history saved again")
        assert daemon.proc.poll() is None
        assert len(daemon.events("finding", kind="source-unavailable")) == 1, "said once"
    finally:
        remount(tiny_state_dir, "rw")
        assert daemon.stop() == 0


def test_every_pool_the_agent_takes_is_seen_while_the_log_rotates_every_way(host, daemon):
    """logrotate's three ways, while the agent writes: rename, copytruncate, and the
    rotated file gzipped. Each pool the log says the agent took is found, none lost."""
    daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
    uuids = [f"{n:08x}-aaaa-4bbb-8ccc-dddddddddddd" for n in range(1, 41)]
    written = threading.Event()

    def write() -> None:
        for uuid in uuids:
            host.append_log(time.strftime("%Y-%m-%d %H:%M:%S,000") + " INFO  [kvm.storage.LibvirtStorageAdaptor] "
                            f"(agentRequest-Handler-1:null) (logid:1) Attempting to create storage pool {uuid} "
                            "(Linstor) in libvirt\n")
            time.sleep(0.02)
        written.set()

    writer = threading.Thread(target=write)
    writer.start()
    log, rotated = str(host.log), str(host.log) + ".1"
    time.sleep(0.2)
    os.rename(log, rotated)                      # rename: the agent goes on in a new file
    time.sleep(0.2)
    os.rename(rotated, rotated.replace(".1", ".2"))
    with open(rotated.replace(".1", ".2"), "rb") as src, gzip.open(rotated.replace(".1", ".2.gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)             # the rotated file gzipped, the plain one gone
    os.unlink(rotated.replace(".1", ".2"))
    time.sleep(0.2)
    shutil.copyfile(log, rotated)                # copytruncate
    os.truncate(log, 0)
    writer.join(10)
    assert written.is_set()

    def all_found() -> bool:
        return {e["pool"] for e in daemon.events("finding", kind="stale-pool")} >= set(uuids)
    daemon.wait_for(all_found, 20, what="a finding for each of the 40 pools")
