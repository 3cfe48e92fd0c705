"""`analyze` on a big plain log, with the lines sieved on every core.

Most of an agent log at DEBUG is quiet lines without an event key, and a quiet line
without a key does one thing to the reading, however many there are in a row: it ends a
pending trace (Scanner.skipped_quiet). Which lines those are needs no state, so worker
processes each take a range of whole lines, run Scanner.feed's own fast path over it
(a Scanner that records, instead of reading, the lines it would read further) and hand
back the others, about one in five. This process reads those in order, a gap standing
for the skipped lines, with the same Scanner as a sequential read: the same events.

The workers are forked children, each taking every n-th range and writing what it kept
to its own pipe, which this process reads in the ranges' order: a child waits on its
full pipe, so memory stays that of a few ranges whatever the file's size. No pool: its
manager thread would be running while children are forked, and a lock it held would be
held in them for ever. Used only by a caller without threads of its own.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
from collections.abc import Iterator
from typing import Any, BinaryIO, Optional

from guard.model import LogEvent

from .reading import MAX_LINE_BYTES, ReadReport, _numbered
from .scanner import Scanner

RANGE_BYTES = 8 * 1024 * 1024

Kept = list[tuple[int, str]]
Sieved = tuple[Kept, int, Optional[tuple[int, str]]]


class _Sieve(Scanner):
    """Scanner.feed with every line it would read further kept instead of read: what is
    not kept is exactly the quiet lines without a key."""

    def __init__(self) -> None:
        super().__init__("", 0.0)
        self.kept: Kept = []

    def header(self, n: int, text: str, syslog: Any, pid: Optional[int],
               m: Any = None) -> list[LogEvent]:
        self.kept.append((n, text))
        return []

    def other(self, n: int, line: str) -> list[LogEvent]:
        self.kept.append((n, line))
        return []


class _Stop(ReadReport):
    """Where a range's read stopped, told back as a line of the range."""

    def __init__(self) -> None:
        super().__init__()
        self.at: Optional[tuple[int, str]] = None

    def stopped(self, name: str, line: int, reason: str) -> None:
        self.at = (line, reason)


def sieve_range(path: str, start: int, end: Optional[int]) -> Sieved:
    """In a worker: the lines of [start, end) (to the end of the file when end is None)
    that are not quiet lines without a key, numbered from 1 within the range; how many
    lines the range has; and where its read stopped, if it did."""
    report = _Stop()
    sieve = _Sieve()
    try:
        with open(path, "rb") as stream:
            stream.seek(start)
            for _ in sieve.feed(_numbered(stream, report, path, None if end is None else end - start)):
                pass
    except OSError as exc:
        report.at = (report.lines + 1, exc.strerror or type(exc).__name__)
    return sieve.kept, report.lines, report.at


def _bounds(raw: io.BufferedReader, size: int) -> list[tuple[int, Optional[int]]]:
    """Ranges of whole lines about RANGE_BYTES long; the last one open, so lines
    appended meanwhile are read as a sequential read would. A point in a line longer
    than MAX_LINE_BYTES splits nothing: the range goes on to the next point."""
    starts = [0]
    for point in range(RANGE_BYTES, size, RANGE_BYTES):
        if point <= starts[-1]:
            continue
        raw.seek(point)
        rest = raw.readline(MAX_LINE_BYTES)
        if rest.endswith(b"\n") and point + len(rest) < size:
            starts.append(point + len(rest))
    ends: list[Optional[int]] = [*starts[1:], None]
    return list(zip(starts, ends))


def sieved_events(raw: io.BufferedReader, path: str, report: ReadReport, scanner: Scanner,
                  workers: int) -> Iterator[LogEvent]:
    """The events of the plain file `raw` is open on, as Scanner.run over its lines gives
    them; a read that stops is said in `report` at the line it stopped at, and the
    lines after it are not read."""
    ranges = _bounds(raw, _size(raw))
    children: list[_Child] = []
    try:
        for i in range(min(workers, len(ranges))):
            children.append(_Child(path, ranges[i::workers]))
    except OSError:  # no more processes allowed (RLIMIT_NPROC, a cgroup's pids.max)
        for child in children:
            child.end()
        raw.seek(0)
        yield from scanner.run(_numbered(raw, report, path))
        return
    before = last = 0
    try:
        for k in range(len(ranges)):
            kept, count, stopped = children[k % len(children)].next()
            run: Kept = []
            for n, line in kept:
                n += before
                if n > last + 1:
                    yield from scanner.feed(run)
                    run = []
                    yield from scanner.skipped_quiet()
                run.append((n, line))
                last = n
            yield from scanner.feed(run)
            before += count
            if stopped is not None:
                report.stopped(path, before - count + stopped[0], stopped[1])
                break
    finally:
        for child in children:
            child.end()
    if before > last:
        yield from scanner.skipped_quiet()
    yield from scanner.close()
    report.lines += before


class _Child:
    """A forked worker sieving its share of the ranges, in order, into a pipe."""

    def __init__(self, path: str, ranges: list[tuple[int, Optional[int]]]) -> None:
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: sieve, write, and never return into the caller
            status = 0
            try:
                os.close(read_end)
                with os.fdopen(write_end, "wb") as out:
                    for start, end in ranges:
                        pickle.dump(sieve_range(path, start, end), out, pickle.HIGHEST_PROTOCOL)
            except BaseException:  # noqa: BLE001 - the parent sees the pipe end early
                status = 1
            finally:
                os._exit(status)
        os.close(write_end)
        self.results: BinaryIO = os.fdopen(read_end, "rb")

    def next(self) -> Sieved:
        """The next range's result; RuntimeError when the child died before writing it."""
        try:
            result: Sieved = pickle.load(self.results)  # noqa: S301 - our own child's pipe
        except (EOFError, pickle.UnpicklingError) as exc:
            raise RuntimeError(f"a log sieve worker (pid {self.pid}) ended early: {exc!r}") from None
        return result

    def end(self) -> None:
        """Reaped, and killed first when its ranges are no longer wanted."""
        self.results.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _size(raw: io.BufferedReader) -> int:
    raw.seek(0, io.SEEK_END)
    return raw.tell()
