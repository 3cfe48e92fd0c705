"""Reading log files whole or as they grow: plain or gzip (told by magic bytes), lines
decoded leniently and capped, a read error ending a file quietly (the events before it
still count), and the SourceStatus `check` reports for the rotated set."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Optional

from guard.model import LogEvent, SourceStatus

from .scanner import Scanner

SOURCE_NAME = "agent-log"
MAX_LINE_BYTES = 64 * 1024
"""Longer physical lines are cut here (the rest is skipped): a binary file or a runaway
JSON line must not make the reader hold megabytes for one line."""

READ_CHUNK = 1024 * 1024
SIEVE_MIN_BYTES = 64 * 1024 * 1024
"""A smaller file is read in this process: starting the workers would cost more."""
GZIP_MAGIC = b"\x1f\x8b"
READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)


class ReadReport:
    """What a read covered and what went wrong, for the SourceStatus."""

    def __init__(self, problems: Optional[list[str]] = None) -> None:
        self.files: list[str] = []
        self.lines = 0
        self.problems: list[str] = [] if problems is None else problems

    def stopped(self, name: str, line: int, reason: str) -> None:
        self.problems.append(f"{name}: read stopped at line {line} ({reason})")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed file is truncated"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class LogFile:
    """A log file opened for reading, decompressed when it is gzip (told by its magic
    bytes): what every reader of a rotated set opens files with."""

    def __init__(self, name: str, raw: io.BufferedReader, gzipped: bool) -> None:
        self.name, self.raw, self.gzipped = name, raw, gzipped
        self.stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw

    def head(self, size: int) -> bytes:
        """The first bytes, decompressed; called once the file has been read."""
        if not self.gzipped:
            return os.pread(self.raw.fileno(), size, 0)
        self.raw.seek(0)
        with gzip.GzipFile(fileobj=self.raw, mode="rb") as again:
            return again.read(size)

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def open_log(path: str, report: Optional[ReadReport] = None) -> Optional[LogFile]:
    """None when it cannot be opened or its first bytes read (said in `report`)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - LogFile.close closes it
    except OSError as exc:
        if report is not None:
            report.problems.append(f"{path}: cannot open ({_reason(exc)})")
        return None
    try:
        magic = raw.peek(2)[:2]
    except READ_ERRORS as exc:
        raw.close()
        if report is not None:
            report.problems.append(f"{path}: cannot read ({_reason(exc)})")
        return None
    return LogFile(path, raw, magic == GZIP_MAGIC)


def _iter_file(path: str, report: ReadReport, now: float, workers: int) -> Iterator[LogEvent]:
    opened = open_log(path, report)
    if opened is None:
        return
    try:
        report.files.append(path)
        if workers > 1 and not opened.gzipped and os.fstat(opened.raw.fileno()).st_size >= SIEVE_MIN_BYTES:
            from .sieve import sieved_events

            yield from sieved_events(opened.raw, path, report, Scanner(path, now), workers)
        else:
            yield from Scanner(path, now).run(_numbered(opened.stream, report, path))
    finally:
        opened.close()


def _chunks(stream: io.BufferedIOBase, report: ReadReport, name: str,
            limit: Optional[int] = None) -> Iterator[list[str]]:
    """The lines of a file read whole (analyze, rotated files), a megabyte at a time,
    split and decoded in C: most of `analyze`'s speed on a log of gigabytes. Decoded
    leniently and capped as Lines does; the place of each line is not kept (a reader
    that must go on later uses Lines). With `limit`, no more than that many bytes are
    read (a range of whole lines, guard/sources/agentlog/sieve.py)."""
    count = 0
    left = -1 if limit is None else limit
    carry = b""
    skipping = False
    """In a line longer than MAX_LINE_BYTES, whose start was already given."""
    try:
        while left != 0:
            chunk = stream.read1(READ_CHUNK if left < 0 else min(READ_CHUNK, left))
            if not chunk:
                break
            left = left - len(chunk) if left > 0 else left
            if skipping:
                end = chunk.find(b"\n")
                if end < 0:
                    continue
                chunk, skipping = chunk[end + 1:], False
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) >= MAX_LINE_BYTES:
                    lines = [data[:MAX_LINE_BYTES].decode("utf-8", "replace")]
                    carry, skipping = b"", True
                    count += 1
                    yield lines
                else:
                    carry = data
                continue
            carry = data[cut + 1:]
            lines = data[:cut].decode("utf-8", "replace").split("\n")
            if max(map(len, lines)) > MAX_LINE_BYTES:
                lines = [line[:MAX_LINE_BYTES] for line in lines]
            count += len(lines)
            yield lines
        if carry:
            count += 1
            yield [carry[:MAX_LINE_BYTES].decode("utf-8", "replace")]
    except READ_ERRORS as exc:
        report.stopped(name, count + 1, _reason(exc))
    finally:
        report.lines += count


def _numbered(stream: io.BufferedIOBase, report: ReadReport, name: str,
              limit: Optional[int] = None) -> Iterable[tuple[int, str]]:
    return enumerate(map(str.rstrip, itertools.chain.from_iterable(_chunks(stream, report, name, limit))), 1)


def iter_events(paths: Iterable[str], problems: Optional[list[str]] = None, *,
                now: Optional[float] = None, workers: int = 1) -> Iterator[LogEvent]:
    """Events of the files in the order given (plain or gzip, told by magic bytes).

    Never raises for content or I/O: a file that cannot be opened or read to its end is
    described in `problems` (when given, as soon as it happens) and the events before the
    fault still come out. `now` anchors the year of syslog stamps that lack one; default:
    the current time. With `workers` > 1, a big plain file's lines are sieved in that
    many processes (sieve.py): only for a caller with no threads of its own, since the
    workers are forked.
    """
    report = ReadReport(problems)
    when = time.time() if now is None else now
    for path in paths:
        yield from _iter_file(path, report, when, workers)


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

    def __init__(self, file: str, scanner: Optional[Scanner] = None, line: int = 0) -> None:
        self._scanner = scanner or Scanner(file, time.time())
        self._line = line

    @classmethod
    def resumed(cls, file: str, state: dict[str, Any], line: int) -> IncrementalParser:
        """Going on where another reader stopped (a LogCursor); raises ValueError for a
        state this code did not write."""
        return cls(file, Scanner.resumed(file, time.time(), state), line)

    @property
    def line(self) -> int:
        return self._line

    def state(self) -> dict[str, Any]:
        return self._scanner.state()

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


class Lines:
    """Numbered complete lines from where a stream stands, and the byte offset after the
    last one: a last line without its newline is still being written, so it is held
    back (`partial`) for the caller to judge now and a later reader to read whole."""

    def __init__(self, stream: io.BufferedIOBase, report: ReadReport, name: str,
                 line: int = 0, offset: int = 0) -> None:
        self.stream, self.report, self.name = stream, report, name
        self.line, self.offset = line, offset
        self.partial: Optional[tuple[int, str]] = None
        self.failed = False

    def __iter__(self) -> Iterator[tuple[int, str]]:
        readline = self.stream.readline
        read = 0
        try:
            while True:
                raw = readline(MAX_LINE_BYTES)
                if not raw:
                    break
                size = len(raw)
                whole = raw[-1:] == b"\n"
                if not whole and size >= MAX_LINE_BYTES:
                    while True:
                        rest = readline(MAX_LINE_BYTES)
                        size += len(rest)
                        if not rest or rest[-1:] == b"\n":
                            whole = bool(rest)
                            break
                text = raw.decode("utf-8", "replace").rstrip()
                if not whole:
                    self.partial = (self.line + 1, text)
                    read += 1
                    break
                self.line += 1
                self.offset += size
                read += 1
                yield self.line, text
        except READ_ERRORS as exc:
            self.failed = True
            self.report.problems.append(f"{self.name}: read stopped at line {self.line + 1} ({_reason(exc)})")
        finally:
            self.report.lines += read


class ReadOn(NamedTuple):
    """One file read from a place to its end: `events` are those of its complete lines,
    `scanner` the reader's state after them; `tail` what the held-back line and a trace
    still open at the end say now (a later reader says it again, finished)."""

    events: list[LogEvent]
    lines: Lines
    scanner: dict[str, Any]
    tail: list[LogEvent]


def read_on(stream: io.BufferedIOBase, lines: Lines, scanner: Scanner) -> ReadOn:
    events = list(scanner.feed(lines))
    state = scanner.state()
    tail = list(scanner.feed([lines.partial])) if lines.partial else []
    tail.extend(scanner.close())
    return ReadOn(events, lines, state, tail)


def not_found(path: str) -> str:
    """The one wording, in `check` and in the daemon's journal, of an agent log that is
    not there."""
    return (f"{path} not found: is cloudstack-agent installed and logging there? "
            "If it logs elsewhere, set [agent] log in /etc/cloudstack-guard/guard.toml")


def log_status(path: str, report: ReadReport, parts: list[str]) -> SourceStatus:
    """Ok only when the current file was read to its end: without it, the absence of an
    event proves nothing."""
    parts = list(parts)
    current_problem = next((p for p in report.problems if p.startswith(f"{path}:")), "")
    if report.problems:
        parts.append("problems: " + "; ".join(report.problems))
    if not os.path.lexists(path):
        parts.insert(0, not_found(path))
        return SourceStatus(SOURCE_NAME, False, "; ".join(parts))
    if path not in report.files or current_problem:
        fix = ("run cloudstack-guard as root (the agent log is readable by root only)"
               if "ermission" in current_problem else "check the file and the disk")
        parts.append(fix)
        return SourceStatus(SOURCE_NAME, False, "; ".join(parts))
    return SourceStatus(SOURCE_NAME, True, "; ".join(parts))
