"""Reading the agent log on from where the last reader stopped.

A host whose agent has run for weeks at DEBUG has gigabytes of log since the agent
started; a monitoring check every minute must not read them every minute. The history
keeps a LogCursor (guard/model.py): the file's identity, how far it was read, the
reader's state there, and the events learned up to it. The next reader, `check` or the
daemon, reads only what was written since and adds it to what was learned.

Rotation moves the place: logrotate renames the file (`agent.log.1`, the same inode),
gzips it later (`agent.log.2.gz`, a new inode, the same first bytes), or copies and
truncates it (`copytruncate`: the copy has the lines, the file starts again). The place
is found in whichever file of the rotated set starts with the same bytes as the file the
cursor was made in, then that file is read on from the offset and every newer one whole.
When it is found nowhere (the file was deleted, or the cursor belongs to another log),
the whole log since the agent started is read again, as without a cursor: what was
learned is dropped rather than counted twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Optional

from guard.model import LogCursor, LogEvent, SourceStatus

from .reading import READ_ERRORS, Lines, LogFile, ReadReport, log_status, open_log, read_on
from .rotation import log_set
from .scanner import Scanner
from .stamps import when

HEAD_BYTES = 4096
MAX_KEPT_EVENTS = 5000
"""Events a cursor carries. They are the ones of the running agent (since its start);
beyond this many, the oldest go, as the daemon's own window does (guard/daemon/state.py),
so a history file stays small enough to load in milliseconds."""


class LogRead(NamedTuple):
    events: list[LogEvent]
    status: SourceStatus
    cursor: Optional[LogCursor]
    """Where this read stopped; None when the current file could not be read to its end
    (the last cursor stays in force)."""
    tail: int = 0
    """How many of the last events are the end's for now (a line still being written, a
    trace still open): a follower going on from the cursor says them again, finished."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kept(events: Sequence[LogEvent], since: float) -> tuple[LogEvent, ...]:
    """What a cursor carries: the events from `since` on, and the last agent stop before
    it (Snapshot.current_events starts the running agent's events after that line)."""
    stop: Optional[LogEvent] = None
    recent: list[LogEvent] = []
    for event in events:
        if event.ts is None:
            continue
        if event.ts >= since:
            recent.append(event)
        elif event.kind == "agent-stop":
            stop = event
    recent = recent[-MAX_KEPT_EVENTS:]
    return tuple([stop] + recent) if stop is not None else tuple(recent)


def place(path: str, identity: tuple[int, int], offset: int, line: int, head: bytes,
          scanner: dict[str, Any], since: float, incarnation: str) -> LogCursor:
    """A cursor without its events yet: the daemon makes one after every read and adds
    the events it holds only when it saves (`with_events`)."""
    return LogCursor(path=path, device=identity[0], inode=identity[1], offset=offset, line=line,
                     head=digest(head[:HEAD_BYTES]), scanner=json.dumps(scanner, separators=(",", ":")),
                     since=since, incarnation=incarnation)


def with_events(cursor: LogCursor, events: Sequence[LogEvent], since: float) -> LogCursor:
    return replace(cursor, since=since, events=kept(events, since))


def _at_cursor(name: str, cursor: LogCursor) -> Optional[LogFile]:
    """The file positioned at the cursor's offset, if it is the file the cursor was made
    in: it starts with the same bytes and is at least that long."""
    opened = open_log(name)
    if opened is None:
        return None
    try:
        long_enough = opened.gzipped or os.fstat(opened.raw.fileno()).st_size >= cursor.offset
        if long_enough and digest(opened.stream.read(min(cursor.offset, HEAD_BYTES))) == cursor.head:
            opened.stream.seek(cursor.offset)
            if opened.stream.tell() == cursor.offset:
                return opened
    except READ_ERRORS:
        pass
    opened.close()
    return None


def _locate(cursor: LogCursor, files: list[str]) -> tuple[int, Optional[LogFile]]:
    """The file the cursor's place is in: the same inode first (renamed, or the file
    itself), else the same first bytes (gzipped, or a copytruncate's copy), newest
    first."""
    def same_inode(name: str) -> bool:
        try:
            info = os.stat(name)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == (cursor.device, cursor.inode)

    for index in sorted(range(len(files)), key=lambda i: (not same_inode(files[i]), -i)):
        opened = _at_cursor(files[index], cursor)
        if opened is not None:
            return index, opened
    return -1, None


def unusable(cursor: Optional[LogCursor], path: str, since: float) -> str:
    """Why this cursor cannot stand for the log read so far, or ""."""
    if cursor is None:
        return "no earlier read"
    if cursor.path != path:
        return f"the last read was of {cursor.path}"
    if since < cursor.since:
        return "this run needs lines from before what the last read kept"
    if cursor.offset < 0 or cursor.line < 0:
        return "the last read's place is malformed"
    return ""


class _Reading:
    """One run's reading, file after file, oldest first. Each file read whole or on
    from the cursor moves the place to its end, unless it is empty (a file just rotated
    in has no bytes to be found by; the place stays at the end of the one before).

    `final` holds the events of the lines before the place, `tail` those the last file's
    end says for now (a line still being written, a trace still open): the next reader
    says them again from the place, finished."""

    def __init__(self, path: str, since: float, incarnation: str) -> None:
        self.path, self.since, self.incarnation = path, since, incarnation
        self.report = ReadReport()
        self.now = time.time()
        self.final: list[LogEvent] = []
        self.tail: list[LogEvent] = []
        self.parts: list[str] = []
        self.place: Optional[LogCursor] = None
        self.failed = False

    def take(self, opened: LogFile, scanner: Scanner, line: int = 0, offset: int = 0) -> None:
        self.report.files.append(opened.name)
        read = read_on(opened.stream, Lines(opened.stream, self.report, opened.name, line, offset), scanner)
        self.failed = self.failed or read.lines.failed
        if read.lines.offset == offset and not read.events and not read.tail and self.place is not None:
            return
        self.final.extend(self.tail)
        self.final.extend(read.events)
        self.tail = read.tail
        info = os.fstat(opened.raw.fileno())
        self.place = place(self.path, (info.st_dev, info.st_ino), read.lines.offset, read.lines.line,
                           opened.head(min(read.lines.offset, HEAD_BYTES)), read.scanner,
                           self.since, self.incarnation)

    def whole(self, names: list[str]) -> None:
        for name in names:
            opened = open_log(name, self.report)
            if opened is not None:
                try:
                    self.take(opened, Scanner(name, self.now))
                finally:
                    opened.close()

    def result(self) -> LogRead:
        events = self.final + self.tail
        if self.report.files:
            rotated = len([f for f in self.report.files if f != self.path])
            self.parts.insert(0, f"read {len(self.report.files)} file(s) ({rotated} rotated): "
                                 f"{self.report.lines} lines, {len(events)} events")
        status = log_status(self.path, self.report, self.parts)
        cursor = None
        if status.ok and not self.failed and self.place is not None:
            cursor = with_events(self.place, self.final, self.since)
        return LogRead(events, status, cursor, len(self.tail))


def read_log(path: str, since: float, cursor: Optional[LogCursor] = None, incarnation: str = "") -> LogRead:
    """Events of the agent log written since `since` (whole rotated files older than it
    are skipped; their modification time bounds their last line), reading only what
    `cursor` has not covered; and the cursor for the next reader (None when a file
    could not be read to its end: the last one stays in force)."""
    reason = unusable(cursor, path, since)
    if cursor is not None and not reason:
        found = _read_on(path, since, cursor, incarnation)
        if found is not None:
            return found
        reason = "the last read's place is in no file of the rotated set"
    reading = _Reading(path, since, incarnation)
    files = log_set(path)
    skipped = [name for name in files if name != path and _mtime(name) < since]
    reading.whole([name for name in files if name not in skipped])
    if skipped:
        reading.parts.append(f"skipped {len(skipped)} rotated file(s) last written before {when(since)}")
    if cursor is not None:
        reading.parts.append(f"read from the agent's start: {reason}")
    return reading.result()


def _read_on(path: str, since: float, cursor: LogCursor, incarnation: str) -> Optional[LogRead]:
    files = [name for name in log_set(path) if name == path or _mtime(name) >= since]
    reading = _Reading(path, since, incarnation)
    if cursor.offset == 0:
        # A place at the start of an empty file names no bytes to find it by: no file
        # had any when it was made, so every file there is now is new.
        reading.final.extend(kept(cursor.events, since))
        reading.whole(files)
        reading.parts.append("read on from the start")
        return reading.result()
    index, opened = _locate(cursor, files)
    if opened is None:
        return None
    where = files[index]
    try:
        scanner = Scanner.resumed(where, reading.now, json.loads(cursor.scanner))
    except ValueError:
        opened.close()
        return None
    reading.final.extend(replace(e, file=where) if e.file == path and where != path else e
                         for e in kept(cursor.events, since))
    try:
        reading.take(opened, scanner, cursor.line, cursor.offset)
    finally:
        opened.close()
    reading.whole(files[index + 1:])
    if where == path:
        reading.parts.append(f"read on from line {cursor.line + 1}")
    else:
        reading.parts.append(f"rotated since the last read: {where} read on from line {cursor.line + 1}")
    return reading.result()


def read_agent_log(path: str, since: Optional[float] = None) -> tuple[list[LogEvent], SourceStatus]:
    """Events of the whole rotated set (those since `since`), without a cursor: tests
    and tools that read a log once."""
    read = read_log(path, -math.inf if since is None else since)
    return read.events, read.status


def _mtime(name: str) -> float:
    try:
        return os.stat(name).st_mtime
    except OSError:
        return math.inf
