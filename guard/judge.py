"""Judging one snapshot, the same way for `check`, `restart-agent`, the daemon and the
model-based tests: fold it into the history, evaluate it, and judge the last restart by
what is left (guard.record.judge_last_restart opens the breaker for one that did not
help). Pure."""

from __future__ import annotations

from typing import Optional

from guard.elapsed import Ages
from guard.evaluate import evaluate
from guard.history import History
from guard.model import Finding, Snapshot
from guard.record import judge_last_restart, record


def judge(
    snap: Snapshot, history: History, settle: float, ages: Optional[Ages] = None
) -> tuple[list[Finding], History]:
    history = record(history, snap)
    findings = evaluate(snap, history)
    return findings, judge_last_restart(history, findings, snap.now, settle, ages)
