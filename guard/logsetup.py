"""Structured logs: to the journal under systemd, readable lines on a terminal, JSON on
request. Every decision the daemon takes is one event with its fields, so `journalctl
-u cloudstack-guard -o json` can answer "why did (or didn't) it restart the agent?"."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

FORMATS = ("auto", "journal", "console", "json")
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def _journal_available() -> bool:
    """JOURNAL_STREAM names the journal stream systemd connected our stderr to."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in stream:
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
        device, inode = (int(x) for x in stream.split(":", 1))
        import systemd.journal  # noqa: F401 - checked here so the renderer can rely on it
    except (OSError, ValueError, ImportError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


_SEVERITY_PRIORITY = {"CRITICAL": 2, "WARNING": 4, "UNKNOWN": 5, "OK": 6}
"""A finding's own urgency: a CRITICAL finding is a crit in the journal whatever level
the event was logged at, so `journalctl -p crit` shows exactly what pages someone."""


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == () or value == []


def journal_entry(method: str, event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The MESSAGE (the event, then key="value" pairs, quoted so a value with blanks or
    `=` reads as one) and the journal fields; empty fields are left out of both."""
    message = str(event.get("event", ""))
    pairs = {k: v for k, v in event.items() if k not in ("event", "level") and not _empty(v)}
    text = " ".join([message] + [f"{k}={json.dumps(str(v), ensure_ascii=False)}" for k, v in pairs.items()])
    priority = _PRIORITY.get(method, 6)
    severity = str(pairs.get("severity", "")).upper()
    priority = min(priority, _SEVERITY_PRIORITY.get(severity, priority))
    fields = {f"GUARD_{key.upper()}": str(value) for key, value in pairs.items()}
    fields.update(PRIORITY=str(priority), SYSLOG_IDENTIFIER="cloudstack-guard", GUARD_EVENT=message)
    return text, fields


def _to_journal(_logger: Any, method: str, event: dict[str, Any]) -> str:
    import structlog

    from systemd import journal

    text, fields = journal_entry(method, event)
    journal.send(text, **fields)
    raise structlog.DropEvent


def configure(log_format: str = "auto") -> None:
    """structlog is imported here, by the daemon: `check` has no use for it."""
    import structlog

    if log_format == "auto":
        log_format = "journal" if _journal_available() else "console"
    processors: list[Any] = [structlog.processors.add_log_level]
    if log_format == "journal":
        processors.append(_to_journal)
    else:
        processors.append(structlog.processors.TimeStamper(fmt="iso"))
        processors.append(structlog.processors.JSONRenderer(sort_keys=True) if log_format == "json"
                          else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    import structlog

    return structlog.get_logger("cloudstack-guard")
