"""The wall clock stepped under the running daemon in remediate mode while a restart is
refused: back an hour, then forward a day (libfaketime, tests/support/faketime.py). The
history keeps wall times, but a cooldown and a rate window are spans of real time: no
step may let through a restart that was refused a second before, stop the daemon, make
it spin or flood the journal, or keep it from seeing what the agent logs next."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from guard import store
from guard.elapsed import boot_clock
from guard.history import History, RestartRecord
from tests.support.agent_lines import LINSTOR_STOP_FAILURE
from tests.support.daemon import RunningDaemon
from tests.support.faketime import SteppedClock
from tests.support.paths import REPO
from tests.support.prom import families

BACK_S = -3600
FORWARD_S = 86400
RESTARTED_AGO_S = 60
"""The last restart, made before this daemon started: the cooldown (600 s by default)
holds for nine more minutes, longer than the test."""
STEP_SEEN_S = 30.0
"""The step is seen at the next evaluation, which the next listing brings: a second
away, or the management poll's back-off (a few seconds) away while it fails."""
JUDGED_S = 5.0
"""Once the step is seen, and the management server answers as it will: long enough
for several listings (one a second here), probes and restart decisions on the stepped
clock."""
SEEN_WITHIN_S = 5.0
LOG_BUDGET_BYTES = 32 * 1024
CPU_SHARE = 0.5
"""Of one core, at most, after a step: a loop that waits for a deadline in the past
spins on all of it."""
EVALUATIONS_PER_S = 5
SIGNATURE_EXPIRED = "401 unable to verify user credentials"
"""An hour behind the management server, every request's signature `expires` (ten
minutes ahead of the guard's clock) is already past for the server, which refuses it
as CloudStack does: the management source fails until the clock is right again."""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stub_systemctl(directory: Path) -> tuple[str, Path]:
    """A systemctl that only writes down how it was called: nothing on the machine that
    runs the tests is ever restarted, and a restart asked for shows where it is asked."""
    directory.mkdir()
    calls = directory / "calls"
    stub = directory / "systemctl"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\necho "stub: no systemd here" >&2\nexit 1\n')
    stub.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}", calls


def _evaluations(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return families(answer.read().decode())["cloudstack_guard_evaluations"].samples[0].value


def _stop_failure(host: Any, clock: SteppedClock) -> None:
    """Stamped as the agent stamps it: by the host's clock, stepped like the daemon's."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000", time.localtime(clock.now()))
    host.append_log(LINSTOR_STOP_FAILURE.format(ts=stamp))


def _changes(entries: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["event"], e["kind"]) for e in entries if e.get("event") in ("finding", "finding-cleared")}


def _step_and_watch(daemon: RunningDaemon, clock: SteppedClock, port: int, step: int,
                    management: tuple[str, str]) -> list[dict[str, Any]]:
    """The step, and what the daemon does after it until the management source has
    changed as it must (`management`) and JUDGED_S more; what must hold after any step
    is asserted here."""
    logs, pings, log_bytes = len(daemon.logs), len(daemon.notified("WATCHDOG=1")), daemon.log_bytes
    cpu, evaluations, began = _cpu_seconds(daemon.proc.pid), _evaluations(port), time.monotonic()
    clock.step(step)
    daemon.wait_for(lambda: management in _changes(daemon.logs[logs:]), STEP_SEEN_S,
                    what=f"{management} after a step of {step:+d}s")
    time.sleep(JUDGED_S)
    elapsed = time.monotonic() - began
    after = daemon.logs[logs:]
    assert daemon.proc.poll() is None, f"the daemon died after a step of {step:+d}s: {after[-5:]}"
    assert len(daemon.notified("WATCHDOG=1")) >= pings + 3, f"no watchdog after a step of {step:+d}s"
    assert not [e for e in after if e.get("event") in ("restart-requested", "restart-result", "task-failed")
                or (e.get("event") == "restart-decision" and e["act"])], after
    said = [e for e in after if e.get("event") == "clock-step"]
    assert len(said) == 1 and abs(said[0]["seconds"] - step) <= 2, said
    assert ("finding-cleared", "stale-pool") not in _changes(after), after
    assert daemon.log_bytes - log_bytes < LOG_BUDGET_BYTES, f"{daemon.log_bytes - log_bytes} bytes logged"
    used = _cpu_seconds(daemon.proc.pid) - cpu
    assert used < CPU_SHARE * elapsed, f"{used:.1f}s of CPU in {elapsed:.1f}s after a step of {step:+d}s"
    evaluated = _evaluations(port) - evaluations
    assert evaluated < EVALUATIONS_PER_S * elapsed, f"{evaluated:.0f} evaluations in {elapsed:.1f}s"
    return after


def _seen_promptly(daemon: RunningDaemon, host: Any, clock: SteppedClock) -> dict[str, Any]:
    logs, written = len(daemon.logs), time.monotonic()
    _stop_failure(host, clock)
    daemon.wait_for(lambda: [e for e in daemon.logs[logs:] if e.get("event") == "finding"
                             and e["kind"] == "stop-failure" and e["severity"] == "CRITICAL"],
                    SEEN_WITHIN_S, what=f"the stop failure logged at {clock.offset:+d}s")
    assert time.monotonic() - written < SEEN_WITHIN_S
    return next(e for e in daemon.logs[logs:] if e.get("event") == "finding" and e["kind"] == "stop-failure")


def test_a_wall_clock_stepped_back_an_hour_then_forward_a_day_restarts_nothing(host, tmp_path):
    clock = SteppedClock(tmp_path)
    pool = host.add_linstor_pool()
    store.save(str(host.state_dir), History(restarts=(RestartRecord(
        at=time.time() - RESTARTED_AGO_S, reason=f"finding: a restart fixes: stale-pool {pool}",
        old_pid=1, pools=(pool,), outcome="helped", new_pid=2),)))
    host.write_config('mode = "remediate"\n' + host.config.read_text() + '[metrics]\nlisten = "127.0.0.1:0"\n')
    path, calls = _stub_systemctl(tmp_path / "bin")
    daemon = RunningDaemon(host.config, tmp_path, env={**clock.env(), "PATH": path})
    try:
        port = daemon.wait_event("metrics-listening")["port"]
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        host.mgmt.remove_pool(pool)
        host.linstor.stop()
        daemon.wait_event("finding", kind="stale-pool", severity="CRITICAL")
        refused = daemon.wait_event("restart-decision")
        assert refused["act"] is False and refused["refused_by"] == "rate", refused
        assert "rate=REFUSE (cooldown" in refused["gates"]

        back = _step_and_watch(daemon, clock, port, BACK_S, ("finding", "source-unavailable"))
        assert _changes(back) <= {("finding", "source-unavailable")}, back
        assert all(SIGNATURE_EXPIRED in e["evidence"] and "60 min behind the server's" in e["evidence"]
                   for e in back if e.get("event") == "finding"), back
        # Logged after the step, stamped an hour earlier than the agent's start read before it.
        _seen_promptly(daemon, host, clock)

        forward = _step_and_watch(daemon, clock, port, FORWARD_S, ("finding-cleared", "source-unavailable"))
        # The server answers again; the failure logged before the step is a day old now,
        # from before the agent's start as the stepped clock reads it, as `check` judges it.
        assert _changes(forward) <= {("finding-cleared", "source-unavailable"),
                                     ("finding-cleared", "stop-failure")}, forward
        failure = _seen_promptly(daemon, host, clock)
        assert failure["pool"] == pool, failure

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            served = families(answer.read().decode())
        assert {"kind": "stale-pool", "severity": "CRITICAL"} in [
            s.labels for s in served["cloudstack_guard_findings"].samples]
        time.sleep(1.0)
        decisions = daemon.events("restart-decision")
        assert decisions and not [d for d in decisions if d["act"]], decisions
        assert all(d["refused_by"] == "rate" for d in decisions), decisions
    finally:
        assert daemon.stop() == 0
    assert not calls.exists(), f"systemctl was asked: {calls.read_text()}"


def test_a_restart_made_a_minute_ago_still_holds_its_cooldown_for_a_guard_started_after_a_step(
        host, tmp_path):
    """The restart was recorded with the boot clock; then the wall clock went a day
    forward. A process that starts only now (restart-agent here; a restarted daemon
    reads the history the same way) has no earlier look to time it from: the boot clock
    says it is a minute old, and the cooldown refuses. By the wall clock it would be a
    day old, and the restart would be asked for again."""
    clock = SteppedClock(tmp_path)
    pool = host.add_linstor_pool()
    boot = boot_clock()
    store.save(str(host.state_dir), History(restarts=(RestartRecord(
        at=time.time() - RESTARTED_AGO_S, reason=f"finding: a restart fixes: stale-pool {pool}",
        old_pid=1, pools=(pool,), outcome="helped", new_pid=2, boot_id=boot.boot_id,
        boot_s=boot.seconds - RESTARTED_AGO_S),)))
    assert host.check().returncode == 0
    host.write_config('mode = "remediate"\n' + host.config.read_text())
    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    clock.step(FORWARD_S)
    path, calls = _stub_systemctl(tmp_path / "bin")
    done = subprocess.run([sys.executable, "-m", "guard.cli", "restart-agent", "--config", str(host.config)],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, **clock.env(), "PATH": path})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CRITICAL stale-pool" in done.stdout
    assert "decision: no restart (refused by rate)" in done.stdout, done.stdout
    rate = next(line for line in done.stdout.splitlines() if "] rate" in line)
    ago = re.search(r"cooldown: last restart (\d+)s ago", rate)
    assert "[REFUSE]" in rate and ago and RESTARTED_AGO_S <= int(ago.group(1)) < RESTARTED_AGO_S + 30, rate
    assert not calls.exists(), f"systemctl was asked: {calls.read_text()}"
