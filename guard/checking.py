"""One `check`: the history loaded under its lock, every source read (without the lock:
it can take seconds), the snapshot judged, and the history saved merged with whatever the
daemon saved meanwhile. `check` and `restart-agent` run it; the daemon keeps its own
picture (guard/daemon/) and judges it with the same guard/judge.py."""

from __future__ import annotations

from dataclasses import replace

from guard import store as history_store
from guard.collect import collect
from guard.config import Config
from guard.elapsed import boot_ages, boot_clock
from guard.evaluate import evaluate
from guard.history import History
from guard.judge import judge
from guard.model import Finding, Snapshot, SourceStatus


def check_once(config: Config) -> tuple[list[Finding], Snapshot, History]:
    """Evidence is gathered without the history lock (it can take seconds); the result
    is merged with whatever the daemon saved meanwhile."""
    try:
        with history_store.locked(config.state_dir):
            base, status = history_store.load(config.state_dir)
        keep = True
    except (OSError, TimeoutError) as exc:
        base, keep = History(), False
        reason = getattr(exc, "strerror", None) or exc
        status = SourceStatus("history", False, f"{config.state_dir}: {reason}; "
                              "without history, removals cannot be seen")
    snap = collect(config, base)
    judged = replace(snap, sources=snap.sources + (status,))
    findings, history = judge(judged, base, config.remediation.settle, boot_ages(base, boot_clock()))
    if keep:
        try:
            history = history_store.save_merged(config.state_dir, history, base)
        except (OSError, TimeoutError) as exc:
            failed = SourceStatus("history", False,
                                  f"cannot save history: {getattr(exc, 'strerror', None) or exc}")
            judged = replace(snap, sources=snap.sources + (failed,))
            findings = evaluate(judged, history)
    return findings, judged, history
