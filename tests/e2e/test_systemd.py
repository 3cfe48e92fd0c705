"""End to end under a real systemd (systemd-nspawn): the agent simulator runs as
cloudstack-agent.service, the emulators as services, and the guard as
cloudstack-guard.service from systemd/ with the real unit file; only ExecStart (the
venv's console script instead of /usr/bin) and a short WatchdogSec are overridden."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import nspawn
from tests.support.emulators import agent_sim
from tests.support.emulators.agent_sim import sim_argv
from tests.support.paths import REPO
from tests.support.real_parts import real_part_unavailable

E2E = REPO / "tests" / "support" / "scenarios"
VENV_BIN = Path(sys.executable).parent
UNIT_FILE = REPO / "systemd" / "cloudstack-guard.service"
# Paths inside the container: the checkout and the venv are bound at fixed places there.
ENV = f"Environment=PYTHONPATH={nspawn.CHECKOUT} PYTHONDONTWRITEBYTECODE=1\nWorkingDirectory={nspawn.CHECKOUT}\n"


@pytest.fixture(autouse=True)
def _nspawn_available():
    reason = nspawn.unavailable_reason()
    if reason:
        real_part_unavailable("systemd-nspawn", reason)


def units(debug_agent: bool = False) -> dict[str, str]:
    agent = " ".join(sim_argv("/etc/cloudstack/agent/agent.properties",
                              "/var/log/cloudstack/agent/agent.log", "/run/agent-sim.sock",
                              debug=debug_agent, python=nspawn.PYTHON,
                              script=nspawn.inside(agent_sim.__file__)))
    return {
        "cloudstack-agent.service": (
            "[Unit]\nDescription=CloudStack agent (simulator)\n"
            f"[Service]\nType=simple\n{ENV}ExecStart={agent}\nRestart=always\nRestartSec=1s\n"),
        "linstor-emulator.service": (
            "[Unit]\nDescription=LINSTOR controller emulator\n"
            f"[Service]\n{ENV}ExecStart={nspawn.PYTHON} -m tests.support.emulators.linstor --port 3370 --node %H\n"),
        "management-emulator.service": (
            "[Unit]\nDescription=CloudStack management server emulator\n"
            f"[Service]\n{ENV}ExecStart={nspawn.PYTHON} -m tests.support.emulators.management --port 8080 "
            "--agent-port 8250 --key e2e-key-51c2 --secret e2e-secret-9d0b\n"),
        "cloudstack-guard.service": UNIT_FILE.read_text(),
        # The checkout is bound at /opt inside (see tests/support/nspawn.py), where the
        # unit's ProtectHome= and PrivateTmp= do not hide it, so every hardening option
        # stays on. The venv's console script names the host's interpreter path in its #!
        # line; the module runs the same main().
        "cloudstack-guard.service.d/test.conf": (
            f"[Service]\nExecStart=\nExecStart={nspawn.PYTHON} -m guard.cli run\nWatchdogSec=4s\n"
            f"ExecReload=\nExecReload={nspawn.PYTHON} -m guard.cli check-config\n"
            "ExecReload=/bin/kill -HUP $MAINPID\n"
            f"{ENV}"),
    }


def run(name: str, tmp_path: Path, libvirtd, debug_agent: bool = False, timeout: float = 150.0,
        during=None) -> dict:
    if not libvirtd.running:
        libvirtd.start()
    out = tmp_path / "out"
    args = dict(
        out_dir=out, units=units(debug_agent),
        start=["management-emulator.service", "linstor-emulator.service"],
        journal_units=["cloudstack-guard.service", "cloudstack-agent.service"],
        binds_rw=[(libvirtd.run_dir, Path("/run/test-libvirt"))], timeout=timeout,
    )
    if during is None:
        result = nspawn.run_scenario(E2E / f"scenario_{name}.py", **args)
    else:
        box: dict = {}
        worker = threading.Thread(target=lambda: box.update(r=nspawn.run_scenario(
            E2E / f"scenario_{name}.py", **args)))
        worker.start()
        during(out)
        worker.join(timeout + 10)
        result = box["r"]
    if not result.ok:
        journal = (out / "journal.txt").read_text()[-6000:] if (out / "journal.txt").exists() else ""
        pytest.fail(f"scenario {name} failed (rc {result.returncode}):\n{result.tail(80)}\n{journal}")
    return json.loads((out / f"{name}.json").read_text())


def test_unit_file_verifies(tmp_path, capsys):
    """systemd-analyze verify checks that ExecStart and ExecReload exist; until the package
    installs /usr/bin/cloudstack-guard, the copy points at the venv's console script."""
    unit = tmp_path / "cloudstack-guard.service"
    unit.write_text(UNIT_FILE.read_text().replace("=/usr/bin/cloudstack-guard", f"={VENV_BIN}/cloudstack-guard"))
    ok, output = nspawn.systemd_analyze_verify(unit)
    assert ok, output
    score, _ = nspawn.systemd_analyze_security(unit)
    with capsys.disabled():
        print(f"\nsystemd-analyze security: cloudstack-guard.service exposure {score} (kept <= 2.4)")
    assert score <= 2.4, f"hardening regressed: exposure {score}"


def test_the_bug_and_its_fix_under_systemd(tmp_path, libvirtd):
    r = run("bug_and_fix", tmp_path, libvirtd)
    assert r["failed_stop"]["ok"] is False and "Connection refused" in r["failed_stop"]["error"]
    assert "refused" in r["critical"]["GUARD_EVIDENCE"]
    assert r["observe_agent"] == r["agent0"], "observe mode restarted the agent"
    assert r["refused"]["returncode"] != 0, "systemctl reload with a broken config must fail"
    assert "linstor.broken" in r["refused"]["journal"] and "keeps the config" in r["refused"]["journal"]
    assert r["refused"]["guard_events"] == [], "the daemon must not even be signalled"
    assert r["after_refused"]["MainPID"] == r["guard0"]["MainPID"]
    assert r["new_agent"] != r["agent0"]
    assert r["fixed_stop"]["ok"] is True, r["fixed_stop"]
    gates = r["decision"]["GUARD_GATES"]
    for gate in ("finding=pass", "mode=pass", "in-flight=pass", "rate=pass", "cluster=pass", "window=pass"):
        assert gate in gates, gates
    assert r["result"]["GUARD_OK"] == "True"
    assert len(r["restart_requested"]) == 1
    assert r["guard1"]["MainPID"] == r["guard0"]["MainPID"] and r["guard1"]["NRestarts"] == "0"
    assert r["guard1"]["ActiveState"] == "active"
    assert int(r["guard1"]["WatchdogTimestampMonotonic"]) > int(r["guard0"]["WatchdogTimestampMonotonic"])


def test_no_restart_when_a_live_pools_backend_is_down(tmp_path, libvirtd):
    r = run("outage", tmp_path, libvirtd)
    assert r["finding"]["GUARD_SEVERITY"] == "CRITICAL" and "will not help" in r["finding"]["GUARD_ACTION"]
    assert r["agent1"] == r["agent0"] and r["restarts"] == [] and not r["stale"]
    # Under a real systemd: the agent's unit as systemctl shows it, and one not installed.
    assert r["agent_unit"] == [r["agent1"], "active/running"], r["agent_unit"]
    assert r["absent_unit"] == [None, "not-found"], r["absent_unit"]


def test_no_restart_during_storage_work_then_restart_once_it_ends(tmp_path, libvirtd):
    r = run("in_flight", tmp_path, libvirtd)
    assert "qemu-img" in r["refused"]["GUARD_GATES"]
    assert r["alive_during_work"] == r["agent0"]
    assert r["new_agent"] != r["agent0"] and r["restarted_after"] >= 8.0


def test_a_restart_that_does_not_help_opens_the_circuit_breaker(tmp_path, libvirtd):
    r = run("breaker", tmp_path, libvirtd, debug_agent=True)
    assert "did not clear" in r["breaker"]["GUARD_REASON"]
    assert 1 <= len(r["requested"]) <= 2, r["requested"]
    assert len(r["agent_restarts"]) == len(r["requested"])
    assert any("circuit breaker open" in d.get("GUARD_GATES", "") for d in r["decisions"])


def test_a_guard_killed_mid_restart_does_not_restart_the_agent_again(tmp_path, libvirtd):
    r = run("killed_mid_restart", tmp_path, libvirtd)
    assert r["agent1"] != r["agent0"] and r["agent_now"] == r["agent1"], "one restart of the agent, no second"
    assert r["guard1"] != r["guard0"] and int(r["guard_now"]["NRestarts"]) >= 1, "systemd restarted the guard"
    assert len(r["requested"]) == 1, r["requested"]
    assert len(r["restarts"]) == 1 and r["restarts"][0]["old_pid"] == r["agent0"], r["restarts"]


def test_an_agent_restarting_in_a_loop_fails_the_verification_and_opens_the_breaker(tmp_path, libvirtd):
    r = run("agent_loop", tmp_path, libvirtd)
    assert r["result"]["GUARD_OK"] == "False" and "not verified" in r["result"]["GUARD_DETAIL"], r["result"]
    assert "loop" in r["result"]["GUARD_DETAIL"] or len(r["killed"]) <= 1, r["result"]
    assert "not verified" in r["breaker"]["GUARD_REASON"]
    assert len(r["requested"]) == 1, "no second restart once the breaker is open"
    assert r["guard"]["ActiveState"] == "active" and r["guard"]["NRestarts"] == "0"


def test_libvirtd_restarted_under_the_running_guard(tmp_path, libvirtd):
    def restart_libvirtd(out: Path) -> None:
        nspawn.wait_for(lambda: (out / "restart-libvirtd").exists(), 90, what="scenario ready")
        libvirtd.stop()
        time.sleep(1.5)
        libvirtd.start()
        (out / "libvirtd-restarted").touch()

    r = run("libvirtd_restart", tmp_path, libvirtd, during=restart_libvirtd)
    assert len(r["connected"]) >= 2 and r["failed_tasks"] == []
    assert [f for f in r["findings"] if f["GUARD_SEVERITY"] != "UNKNOWN"] == []
    assert r["restarts"] == [] and r["agent1"] == r["agent0"]
    assert r["guard1"]["MainPID"] == r["guard0"]["MainPID"] and r["guard1"]["NRestarts"] == "0"


def test_the_guard_wins_the_race_with_the_ha_monitor(tmp_path, libvirtd):
    """A stale pool's heartbeat fails, 3 tries 5 s apart as agent.properties sets them. With
    the window closed the operator is told, with the tries left at the host's retry
    sleep, before the reboot; with it open the agent is restarted after the first failed
    try and before the last."""
    r = run("ha_race", tmp_path, libvirtd, timeout=240)
    windowed = r["windowed"]
    told_at = int(windowed["told"]["__REALTIME_TIMESTAMP"]) / 1e6
    assert windowed["told"]["GUARD_SEVERITY"] == "CRITICAL"
    assert "tries are left, 5s apart" in windowed["told"]["GUARD_ACTION"], windowed["told"]["GUARD_ACTION"]
    assert windowed["refused"]["GUARD_REFUSED_BY"] == "window"
    assert windowed["first_try"] <= told_at < windowed["rebooted"]["at"], "told only after the reboot"
    assert windowed["agent_kept"] and windowed["agent_after_reload"], "restarted for a JVM already gone"
    raced = r["raced"]
    assert raced["agent2"] != raced["agent1"] and not raced["rebooted"]
    assert raced["first_try"] < raced["restarted"] < raced["reboot_due"]
    print(f"HA race: told {windowed['rebooted']['at'] - told_at:.1f}s before the reboot; restarted "
          f"{raced['restarted'] - raced['first_try']:.1f}s after the first failed try, "
          f"{raced['margin_s']:.1f}s before the last")
