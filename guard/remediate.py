"""Carries a restart decision out through systemd and verifies it.

Everything here does I/O; deciding is guard.policy's job. The restart goes through
systemd so the unit's own limits and ordering apply, as a queued job (--no-block): a
restart asked for while the agent is already restarting merges into that job, which
is what the operator wanted anyway.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from guard.config import Config
from guard.elapsed import boot_clock
from guard.history import History, RestartRecord
from guard.model import AgentProcess, Incarnation
from guard.policy import Decision
from guard.record import open_breaker, record_restart
from guard.sources.agent import find_agent
from guard.sources.agentconf import read_agent_properties
from guard.sources.management import read_management

SYSTEMCTL_TIMEOUT_S = 30.0
STABLE_S = 3.0
"""How long the new agent must stay connected, the same process, before the restart
counts as verified: one restarting in a loop under Restart=always connects, crashes and
comes back as another process, and must fail the verification."""
VERIFY_POLL_S = 0.5
MANAGEMENT_VERIFY_POLL_S = 5.0


def request_restart(unit: str) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            ["systemctl", "restart", "--no-block", unit],
            capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"systemctl restart {unit} did not return within {SYSTEMCTL_TIMEOUT_S:g}s"
    except OSError as exc:
        return False, f"cannot run systemctl: {exc.strerror}"
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        return False, f"systemctl restart {unit} failed: {message[0] if message else result.returncode}"
    return True, f"systemctl restart {unit} queued"


@dataclass(frozen=True)
class Verification:
    ok: bool
    detail: str
    incarnation: Optional[Incarnation] = None
    seconds: float = 0.0


async def verify(config: Config, old: Optional[Incarnation], deadline_s: float) -> Verification:
    """A new incarnation, connected to its management server, the same process for
    STABLE_S, and Up in the API when one is configured, within the deadline."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    last_api = 0.0
    seen = "no new agent process"
    since: dict[str, float] = {}
    while time.monotonic() - started < deadline_s:
        props, _ = await loop.run_in_executor(None, read_agent_properties, config.agent.properties)
        agent, _ = await loop.run_in_executor(None, find_agent, props, config.agent.unit)
        if agent is not None and (old is None or agent.incarnation.key != old.key):
            first_seen = since.setdefault(agent.incarnation.key, time.monotonic())
            seen = f"new agent pid {agent.incarnation.pid}, {agent.connection}"
            if len(since) > 1:
                seen += f" ({len(since)} agent processes since the restart: is it restarting in a loop?)"
            # One that crashes after connecting (Restart=always) must not pass.
            if agent.connected and time.monotonic() - first_seen >= STABLE_S:
                if config.management is None:
                    return Verification(True, seen, agent.incarnation, time.monotonic() - started)
                if time.monotonic() - last_api >= MANAGEMENT_VERIFY_POLL_S:
                    last_api = time.monotonic()
                    host, _, _, status = await loop.run_in_executor(
                        None, read_management, config.management, socket.gethostname(), props)
                    state = host.state if host else status.detail
                    seen = f"new agent pid {agent.incarnation.pid} connected; management says {state}"
                    if host is not None and host.state == "Up":
                        return Verification(True, seen, agent.incarnation, time.monotonic() - started)
        await asyncio.sleep(VERIFY_POLL_S)
    elapsed = time.monotonic() - started
    return Verification(False, f"not verified within {deadline_s:g}s: {seen}", None, elapsed)


async def carry_out(
    config: Config, decision: Decision, agent: Optional[AgentProcess], history: History,
    log: Any, now: float, persist: Callable[[History], Awaitable[None]],
) -> tuple[History, Verification]:
    """Restart, verify, and record the outcome; a failed restart opens the breaker. The
    intent is persisted before systemctl runs: a guard killed while verifying must find
    the restart counted against the limits when it comes back, not restart again."""
    reason = "; ".join(f"{r.gate}: {r.reading}" for r in decision.readings)
    old = agent.incarnation if agent else None
    boot = boot_clock()
    record = RestartRecord(at=now, reason=reason, old_pid=old.pid if old else 0, pools=decision.pools,
                           boot_id=boot.boot_id, boot_s=boot.seconds)
    history = record_restart(history, record)
    await persist(history)
    ok, detail = request_restart(config.agent.unit)
    log("restart-requested", ok=ok, detail=detail, old_pid=record.old_pid)
    if not ok:
        history = record_restart(history, replace(record, outcome="failed", detail=detail))
        return open_breaker(history, now, detail), Verification(False, detail)
    result = await verify(config, old, config.remediation.verify_deadline)
    if result.ok and result.incarnation is not None:
        outcome = replace(record, outcome="verified", detail=result.detail, new_pid=result.incarnation.pid)
        return record_restart(history, outcome), result
    history = record_restart(history, replace(record, outcome="failed", detail=result.detail))
    return open_breaker(history, time.time(), f"agent restart not verified: {result.detail}"), result
