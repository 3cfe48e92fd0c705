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
from typing import Any, BinaryIO, NoReturn, Optional

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


def sieve_range(source: str, start: int, end: Optional[int]) -> Sieved:
    """In a worker: the lines of [start, end) of `source` (to its end when end is None)
    that are not quiet lines without a key, numbered from 1 within the range; how many
    lines the range has; and where its read stopped, if it did."""
    report = _Stop()
    sieve = _Sieve()
    try:
        with open(source, "rb") as stream:
            stream.seek(start)
            for _ in sieve.feed(_numbered(stream, report, source, None if end is None else end - start)):
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
    lines after it are not read. Where no worker can be forked, or one dies, the file
    is read on in this process from the first range not yet read."""
    ranges = _bounds(raw, os.fstat(raw.fileno()).st_size)
    children: list[_Child] = []
    before = last = 0
    done = 0
    try:
        try:
            for i in range(min(workers, len(ranges))):
                children.append(_Child(raw.fileno(), ranges[i::workers]))
        except OSError:  # no more processes allowed (RLIMIT_NPROC, a cgroup's pids.max)
            _end(children)
        while children and done < len(ranges):
            result = children[done % len(children)].next()
            if result is None:
                _end(children)
                break
            kept, count, stopped = result
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
            done += 1
            if stopped is not None:
                report.stopped(path, before - count + stopped[0], stopped[1])
                done = len(ranges)
        if done < len(ranges):
            if before > last:
                yield from scanner.skipped_quiet()
            raw.seek(ranges[done][0])
            rest = _Offset(report, before)
            yield from scanner.feed((n + before, line) for n, line in _numbered(raw, rest, path))
            before = last = before + rest.lines
    finally:
        _end(children)
        report.lines += before
    if before > last:
        yield from scanner.skipped_quiet()
    yield from scanner.close()


class _Offset(ReadReport):
    """A report for reading on from line `before` + 1: a stop is said at its line in
    the whole file."""

    def __init__(self, report: ReadReport, before: int) -> None:
        super().__init__(report.problems)
        self.before = before

    def stopped(self, name: str, line: int, reason: str) -> None:
        super().stopped(name, self.before + line, reason)


class _Child:
    """A forked worker sieving its share of the ranges, in order, into a pipe."""

    def __init__(self, file_fd: int, ranges: list[tuple[int, Optional[int]]]) -> None:
        read_end, write_end = os.pipe()
        # Ctrl-C must not reach a child before it has stopped listening for it, nor
        # run the caller's code in it: blocked across the fork, ignored in the child.
        interrupts = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, interrupts)
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:
            _child(file_fd, ranges, write_end)
        signal.pthread_sigmask(signal.SIG_SETMASK, interrupts)
        self.pid = pid
        os.close(write_end)
        self.results: BinaryIO = os.fdopen(read_end, "rb")

    def next(self) -> Optional[Sieved]:
        """The next range's result; None when the child died before writing it (killed
        for memory, say)."""
        try:
            result: Sieved = pickle.load(self.results)  # noqa: S301 - our own child's pipe
        except (EOFError, pickle.UnpicklingError):
            return None
        return result

    def end(self) -> None:
        """Reaped, and killed first when its ranges are no longer wanted."""
        self.results.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _child(file_fd: int, ranges: list[tuple[int, Optional[int]]], write_end: int) -> NoReturn:
    """The forked worker's whole life: it keeps only its pipe and the file (reopened
    through /proc, so it reads what the parent opened whatever is at its path by now,
    at offsets of its own), never returns into the caller's code, and never flushes the
    caller's buffers."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(quiet, fd)
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2 and int(name) not in (write_end, file_fd):
                with contextlib.suppress(OSError):
                    os.close(int(name))
        source = f"/proc/self/fd/{file_fd}"
        with os.fdopen(write_end, "wb") as out:
            for start, end in ranges:
                pickle.dump(sieve_range(source, start, end), out, pickle.HIGHEST_PROTOCOL)
        status = 0
    finally:
        os._exit(status)


def _end(children: list[_Child]) -> None:
    while children:
        children.pop().end()
