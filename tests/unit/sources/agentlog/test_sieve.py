"""The sieved read (forked workers hand back all but the quiet lines without a key) gives
what the sequential read gives: the same events in the same order, the same line count,
the same problems, for logs made of the real samples' lines in any order, cut into
ranges anywhere, with CRLF endings or without."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.sources.agentlog import iter_events, reading, sieve
from tests.support.logtext import NOW_2026, samples_dir


def _blocks() -> list[str]:
    """Runs of up to 12 consecutive lines of every sample: traces, XML bodies and the
    layouts hosts write, kept whole enough to stay what they were."""
    blocks = []
    for path in sorted(samples_dir().glob("*.log")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        blocks += ["".join(lines[i:i + 12]) for i in range(0, len(lines), 12)]
    return blocks


def _read(path: Path, workers: int) -> tuple[list, list[str]]:
    problems: list[str] = []
    return list(iter_events([str(path)], problems, now=NOW_2026, workers=workers)), problems


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
def test_the_sieved_read_gives_the_sequential_read_s_events(blocks, tmp_path, monkeypatch, seed, count,
                                                             crlf, range_bytes, odd):
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
    assert _read(log, 2) == _read(log, 1)


_REAL_SIEVE = sieve.sieve_range
_STOPS_AT: list[int] = []
"""The start of the range whose read stops (set by the test, read in the forked worker)."""


def _stopping(path: str, start: int, end):
    """sieve_range, but the range at _STOPS_AT stops at its 11th line as a disk error
    would stop it; a module function, so the pool can hand it to a worker."""
    kept, count, _ = _REAL_SIEVE(path, start, end)
    if start not in _STOPS_AT:
        return kept, count, None
    return [(n, line) for n, line in kept if n <= 10], 10, (11, "Input/output error")


def test_a_range_whose_read_stopped_ends_the_file_at_its_line(blocks, tmp_path, monkeypatch):
    """A disk error in the middle of the file: as a sequential read, the events before it
    and one problem naming the line; nothing after it."""
    log = tmp_path / "agent.log"
    log.write_text("".join(blocks) * 3, encoding="utf-8")
    monkeypatch.setattr(reading, "SIEVE_MIN_BYTES", 0)
    monkeypatch.setattr(sieve, "RANGE_BYTES", 4096)
    with open(log, "rb") as raw:
        second = sieve._bounds(raw, log.stat().st_size)[1][0]
        raw.seek(0)
        before = raw.read(second).count(b"\n")
    monkeypatch.setattr(sieve, "sieve_range", _stopping)
    _STOPS_AT[:] = [second]
    try:
        events, problems = _read(log, 2)
    finally:
        _STOPS_AT.clear()
    assert problems == [f"{log}: read stopped at line {before + 11} (Input/output error)"]
    sequential, _ = _read(log, 1)
    kept = [e for e in sequential if e.line <= before + 10]
    assert events and events == kept[:len(events)] and all(e.line <= before + 10 for e in events)


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
