"""Reading log files whole or as they grow: plain or gzip (told by magic bytes), lines
decoded leniently and capped, a read error ending a file quietly (the events before it
still count), and the SourceStatus `check` reports for the rotated set."""

from __future__ import annotations

import gzip
import io
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Optional

from guard.model import LogEvent, SourceStatus

from .rotation import log_set
from .scanner import Scanner
from .stamps import when

SOURCE_NAME = "agent-log"
MAX_LINE_BYTES = 64 * 1024
"""Longer physical lines are cut here (the rest is skipped): a binary file or a runaway
JSON line must not make the reader hold megabytes for one line."""

_GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


class _ReadReport:
    """What a read covered and what went wrong, for the SourceStatus."""

    def __init__(self, problems: Optional[list[str]] = None) -> None:
        self.files: list[str] = []
        self.lines = 0
        self.problems: list[str] = [] if problems is None else problems


def _numbered_lines(stream: io.BufferedIOBase, report: _ReadReport, name: str
                   ) -> Iterator[tuple[int, str]]:
    """Physical lines, decoded leniently and capped; a read error ends the file quietly
    (recorded in the report) so the events before it still count."""
    n = 0
    readline = stream.readline
    try:
        while True:
            raw = readline(MAX_LINE_BYTES)
            if not raw:
                break
            n += 1
            if raw[-1:] != b"\n" and len(raw) >= MAX_LINE_BYTES:
                while True:
                    rest = readline(MAX_LINE_BYTES)
                    if not rest or rest[-1:] == b"\n":
                        break
            yield n, raw.decode("utf-8", "replace").rstrip()
    except _READ_ERRORS as exc:
        report.problems.append(f"{name}: read stopped at line {n + 1} ({_reason(exc)})")
    finally:
        report.lines += n


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed file is truncated"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _open(path: str, report: _ReadReport) -> Optional[io.BufferedReader]:
    try:
        return open(path, "rb")
    except OSError as exc:
        report.problems.append(f"{path}: cannot open ({_reason(exc)})")
        return None


def _iter_file(path: str, report: _ReadReport, now: float) -> Iterator[LogEvent]:
    raw = _open(path, report)
    if raw is None:
        return
    with raw:
        try:
            magic = raw.peek(2)[:2]
        except _READ_ERRORS as exc:
            report.problems.append(f"{path}: cannot read ({_reason(exc)})")
            return
        report.files.append(path)
        if magic != _GZIP_MAGIC:
            yield from Scanner(path, now).run(_numbered_lines(raw, report, path))
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield from Scanner(path, now).run(_numbered_lines(unzipped, report, path))


def iter_events(paths: Iterable[str], problems: Optional[list[str]] = None, *,
                now: Optional[float] = None) -> Iterator[LogEvent]:
    """Events of the files in the order given (plain or gzip, told by magic bytes).

    Never raises for content or I/O: a file that cannot be opened or read to its end is
    described in `problems` (when given, as soon as it happens) and the events before the
    fault still come out. `now` anchors the year of syslog stamps that lack one; default:
    the current time.
    """
    report = _ReadReport(problems)
    when = time.time() if now is None else now
    for path in paths:
        yield from _iter_file(path, report, when)


def parse_lines(lines: Iterable[str], file: str = "", *,
                now: Optional[float] = None) -> Iterator[LogEvent]:
    """Events of in-memory lines (stdin, tests); each item is one physical line."""
    cap = MAX_LINE_BYTES
    numbered = ((n, line[:cap].rstrip()) for n, line in enumerate(lines, 1))
    return Scanner(file, time.time() if now is None else now).run(numbered)


class IncrementalParser:
    """For a log that is still being written: lines go in as they arrive, and the
    follower flushes when the file goes quiet, since the last event's stack trace has
    no next header line to end it."""

    def __init__(self, file: str) -> None:
        self._scanner = Scanner(file, time.time())
        self._line = 0

    def feed(self, lines: Iterable[str]) -> list[LogEvent]:
        self._scanner.now = time.time()
        numbered = []
        for line in lines:
            self._line += 1
            numbered.append((self._line, line[:MAX_LINE_BYTES].rstrip()))
        return list(self._scanner.feed(numbered))

    def flush(self) -> list[LogEvent]:
        return self._scanner.close()

    def restart(self, file: str) -> list[LogEvent]:
        """A new file (rotation): what was pending belongs to the old one."""
        pending = self.flush()
        self._scanner = Scanner(file, time.time())
        self._line = 0
        return pending


def read_agent_log(path: str, since: Optional[float] = None
                   ) -> tuple[list[LogEvent], SourceStatus]:
    """Events of the whole rotated set, for `check`.

    `since` only lets whole rotated files be skipped when they were last written before
    it (their modification time bounds their last line); events are not filtered by it.
    The status is ok only when the current file was read to its end: without it, the
    absence of an event proves nothing.
    """
    files = log_set(path)
    skipped = 0
    if since is not None:
        kept = []
        for name in files:
            try:
                old = name != path and os.stat(name).st_mtime < since
            except OSError:
                old = False
            if old:
                skipped += 1
            else:
                kept.append(name)
        files = kept
    report = _ReadReport()
    now = time.time()
    events: list[LogEvent] = []
    for name in files:
        events.extend(_iter_file(name, report, now))
    current_problem = next((p for p in report.problems if p.startswith(f"{path}:")), "")
    parts = []
    if report.files:
        rotated = len([f for f in report.files if f != path])
        parts.append(f"read {len(report.files)} file(s) ({rotated} rotated): "
                     f"{report.lines} lines, {len(events)} events")
    if skipped and since is not None:
        parts.append(f"skipped {skipped} rotated file(s) last written before {when(since)}")
    if report.problems:
        parts.append("problems: " + "; ".join(report.problems))
    if not os.path.lexists(path):
        parts.insert(0, f"{path} not found: is cloudstack-agent installed and logging there? "
                        "If it logs elsewhere, set [agent] log in /etc/cloudstack-guard/guard.toml")
        return events, SourceStatus(SOURCE_NAME, False, "; ".join(parts))
    if path not in report.files or current_problem:
        fix = ("run cloudstack-guard as root (the agent log is readable by root only)"
               if "ermission" in current_problem else "check the file and the disk")
        parts.append(fix)
        return events, SourceStatus(SOURCE_NAME, False, "; ".join(parts))
    return events, SourceStatus(SOURCE_NAME, True, "; ".join(parts))
