"""`cloudstack-guard restart-agent`: every gate printed with its reading, and the exit
codes of the contract (0 done or would do, 1 refused by a gate, 2 failed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.host import REPO


@pytest.fixture
def stale_host(host):
    """A host whose agent holds a deleted LINSTOR pool whose controller is gone."""
    pool = host.add_linstor_pool()
    assert host.check().returncode == 0
    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    return host


def set_mode(host, mode: str) -> None:
    host.write_config(f'mode = "{mode}"\n' + host.config.read_text())


def test_dry_run_in_observe_mode_is_refused_by_the_mode_gate(stale_host):
    run = stale_host.run_cli("restart-agent", "--dry-run", "--config", str(stale_host.config))
    assert run.returncode == 1, run.stdout
    out = run.stdout
    assert "CRITICAL stale-pool" in out
    assert "[pass  ] finding" in out and "[REFUSE] mode" in out
    for gate in ("in-flight", "rate", "cluster", "window"):
        assert f"] {gate}" in out, out
    assert "decision: no restart (refused by mode)" in out


def test_dry_run_in_remediate_mode_would_restart(stale_host):
    set_mode(stale_host, "remediate")
    run = stale_host.run_cli("restart-agent", "--dry-run", "--config", str(stale_host.config))
    assert run.returncode == 0, run.stdout
    assert "[REFUSE]" not in run.stdout
    assert "decision: restart cloudstack-agent.service" in run.stdout
    assert "dry run: nothing done" in run.stdout
    assert stale_host.agent.poll() is None, "a dry run touched the agent"


def test_force_passes_the_mode_gate_but_not_in_flight_work(stale_host):
    run = stale_host.run_cli("restart-agent", "--dry-run", "--force", "--config", str(stale_host.config))
    assert run.returncode == 0 and "overridden by --force" in run.stdout


def test_nothing_to_fix_is_refused(host):
    host.add_linstor_pool()
    run = host.run_cli("restart-agent", "--dry-run", "--config", str(host.config))
    assert run.returncode == 1
    assert "[REFUSE] finding   no finding that an agent restart fixes" in run.stdout


def test_config_error_is_a_failure(tmp_path):
    config = tmp_path / "guard.toml"
    config.write_text("mode = 3\n")
    config.chmod(0o644)
    result = subprocess.run([sys.executable, "-m", "guard.cli", "restart-agent", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2 and "key 'mode'" in result.stdout


def test_the_restart_intent_is_persisted_before_systemctl_runs(tmp_path):
    """A guard killed between asking systemd and verifying must find the restart counted
    when it comes back (it would otherwise restart the agent again for the same finding)."""
    import asyncio

    from guard.config import AgentConfig, Config
    from guard.history import History
    from guard.policy import Decision, GateReading
    from guard.remediate import carry_out

    seen: list = []

    async def persist(history):
        seen.append([r.outcome for r in history.restarts])

    config = Config(agent=AgentConfig(unit="guard-test-no-such-unit.service"), state_dir=str(tmp_path))
    decision = Decision(True, (GateReading("finding", True, "test"),))
    history, result = asyncio.run(carry_out(config, decision, None, History(), lambda *a, **k: None,
                                            1000.0, persist))
    assert seen[0] == ["requested"]
    assert not result.ok and history.restarts[-1].outcome == "failed"
