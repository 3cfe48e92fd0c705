"""Structured logs: to the journal under systemd, readable lines on a terminal, JSON on
request. Every decision the daemon takes is one event with its fields, so `journalctl
-u cloudstack-guard -o json` can answer "why did (or didn't) it restart the agent?"."""

from __future__ import annotations

import os
import sys
from typing import Any

import structlog

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


def _to_journal(_logger: Any, method: str, event: dict[str, Any]) -> str:
    from systemd import journal

    message = event.pop("event", "")
    fields = {f"GUARD_{key.upper()}": str(value) for key, value in event.items() if key != "level"}
    text = " ".join([str(message)] + [f"{k}={v}" for k, v in event.items() if k not in ("level",)])
    journal.send(text, PRIORITY=str(_PRIORITY.get(method, 6)), SYSLOG_IDENTIFIER="cloudstack-guard",
                 GUARD_EVENT=str(message), **fields)
    raise structlog.DropEvent


def configure(log_format: str = "auto") -> None:
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
    return structlog.get_logger("cloudstack-guard")
