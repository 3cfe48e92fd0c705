"""The sieved read (forked workers hand back all but the quiet lines without a key) gives
what the sequential read gives: the same events in the same order, the same line count,
the same problems, for logs made of the real samples' lines in any order, cut into
ranges anywhere, with CRLF endings or without."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.sources.agentlog import reading, sieve
from tests.support.logtext import NOW_2026, samples_dir


def _blocks() -> list[str]:
    """Runs of up to 12 consecutive lines of every sample: traces, XML bodies and the
    layouts hosts write, kept whole enough to stay what they were."""
    blocks = []
    for path in sorted(samples_dir().glob("*.log")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        blocks += ["".join(lines[i:i + 12]) for i in range(0, len(lines), 12)]
    return blocks


def _read(path: Path, workers: int) -> tuple[list, list[str], int]:
    """Events, problems and the count of lines read."""
    report = reading.ReadReport()
    events = list(reading._iter_file(str(path), report, NOW_2026, workers))
    return events, report.problems, report.lines


@pytest.fixture
def forks(monkeypatch) -> list[int]:
    """The workers forked (seen in this process): a sieved read that quietly fell back
    to reading here would prove nothing."""
    import os

    made: list[int] = []
    real = os.fork

    def counted() -> int:
        pid = real()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(sieve.os, "fork", counted)
    return made


@pytest.fixture(scope="module")
def blocks() -> list[str]:
    return _blocks()


ODD = [
    "2026-11-21 10:00:00,000 INFO  [kvm.storage.LibvirtStorageAdaptor] (t:null) (logid:1) " + "é" * 40000 + "\n",
    "x" * (reading.MAX_LINE_BYTES + 100) + " Agent started\n",
    "\t" + "at com.x.Y.z(Y.java:1)" * 4000 + "\n",
]
"""Lines past MAX_LINE_BYTES (multibyte ones too), whose cut must fall where a
sequential read cuts them."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 400), crlf=st.booleans(),
       range_bytes=st.integers(512, 16384), odd=st.booleans())
def test_the_sieved_read_gives_the_sequential_read_s_events(blocks, tmp_path, monkeypatch, forks, seed,
                                                             count, crlf, range_bytes, odd):
    rng = random.Random(seed)
    chosen = [rng.choice(blocks) for _ in range(count)]
    if odd:
        for line in ODD:
            chosen.insert(rng.randrange(len(chosen) + 1), line)
    text = "".join(chosen)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = bytearray(text.encode("utf-8", "replace"))
    if odd and data:
        for _ in range(5):
            data[rng.randrange(len(data))] = rng.randrange(256)
    log = tmp_path / f"agent-{seed}.log"
    log.write_bytes(bytes(data))
    monkeypatch.setattr(reading, "SIEVE_MIN_BYTES", 0)
    monkeypatch.setattr(sieve, "RANGE_BYTES", range_bytes)
    forks.clear()
    assert _read(log, 2) == _read(log, 1)
    assert forks, "no worker was forked"


_REAL_SIEVE = sieve.sieve_range
_STOPS_AT: list[int] = []
"""The start of the range whose read stops (set by the test, read in the forked worker)."""


def _stopping(source: str, start: int, end):
    """sieve_range, but the range at _STOPS_AT stops at its 11th line as a disk error
    would stop it."""
    kept, count, _ = _REAL_SIEVE(source, start, end)
    if start not in _STOPS_AT:
        return kept, count, None
    return [(n, line) for n, line in kept if n <= 10], 10, (11, "Input/output error")


def _dying(source: str, start: int, end):
    """sieve_range, but the worker is killed (for memory, say) at the range at _STOPS_AT."""
    import os
    import signal

    if start in _STOPS_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return _REAL_SIEVE(source, start, end)


def _second_range(log: Path) -> tuple[int, int]:
    """Where the second range starts, and how many lines come before it."""
    with open(log, "rb") as raw:
        second = sieve._bounds(raw, log.stat().st_size)[1][0]
        raw.seek(0)
        return second, raw.read(second).count(b"\n")


def test_a_range_whose_read_stopped_ends_the_file_at_its_line(blocks, tmp_path, monkeypatch, forks):
    """A disk error in the middle of the file: one problem naming the line, the events
    of the lines before it, nothing after it."""
    log = tmp_path / "agent.log"
    log.write_text("".join(blocks) * 3, encoding="utf-8")
    monkeypatch.setattr(reading, "SIEVE_MIN_BYTES", 0)
    monkeypatch.setattr(sieve, "RANGE_BYTES", 4096)
    second, before = _second_range(log)
    monkeypatch.setattr(sieve, "sieve_range", _stopping)
    _STOPS_AT[:] = [second]
    try:
        events, problems, lines = _read(log, 2)
    finally:
        _STOPS_AT.clear()
    assert forks
    assert problems == [f"{log}: read stopped at line {before + 11} (Input/output error)"]
    assert lines == before + 10
    head = tmp_path / "head.log"
    head.write_text("".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[:before + 10]),
                    encoding="utf-8")
    assert [replace(e, file="") for e in events] == [replace(e, file="") for e in _read(head, 1)[0]], (
        "what a read of the lines before the error gives")


def test_a_worker_that_dies_is_read_on_here_with_the_same_events(blocks, tmp_path, monkeypatch, forks):
    log = tmp_path / "agent.log"
    log.write_text("".join(blocks) * 3, encoding="utf-8")
    monkeypatch.setattr(reading, "SIEVE_MIN_BYTES", 0)
    monkeypatch.setattr(sieve, "RANGE_BYTES", 4096)
    second, _ = _second_range(log)
    sequential = _read(log, 1)
    monkeypatch.setattr(sieve, "sieve_range", _dying)
    _STOPS_AT[:] = [second]
    try:
        sieved = _read(log, 2)
    finally:
        _STOPS_AT.clear()
    assert forks and sieved == sequential


def test_where_no_process_may_be_forked_the_file_is_read_here(blocks, tmp_path, monkeypatch):
    """RLIMIT_NPROC or a cgroup's pids.max reached: the same events, read in this process."""
    import errno
    import os

    log = tmp_path / "agent.log"
    log.write_text("".join(blocks) * 2, encoding="utf-8")
    monkeypatch.setattr(reading, "SIEVE_MIN_BYTES", 0)
    monkeypatch.setattr(sieve, "RANGE_BYTES", 4096)
    sequential = _read(log, 1)

    def refused() -> int:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(sieve.os, "fork", refused)
    assert _read(log, 2) == sequential
    open_fds = len(os.listdir("/proc/self/fd"))
    _read(log, 2)
    assert len(os.listdir("/proc/self/fd")) == open_fds, "a refused fork leaks no pipe"
