"""The agent log read on from a cursor: a run reads only what was written since the last
one, and over any sequence of writes, rotations (rename, gzip, copytruncate), truncations
and agent restarts it sees exactly the events a whole read would: nothing lost, nothing
twice."""

from __future__ import annotations

import gzip
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from guard.history import History, from_json, to_json
from guard.model import LogEvent
from guard.sources.agentlog import read_log
from tests.support.agent_lines import LINSTOR_STOP_FAILURE

T0 = time.mktime((2026, 3, 2, 9, 0, 0, 0, 0, -1))
UUID = "0c4e5b8a-9f3d-4c1e-8a7b-{:012d}"


def stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f",{int(ts * 1000) % 1000:03d}"


def chatter(ts: float) -> str:
    return f"{stamp(ts)} DEBUG [cloud.agent.Agent] (AgentOutRequest-Handler-1:null) (logid:) Ping\n"


def pool_add(ts: float, n: int) -> str:
    return (f"{stamp(ts)} INFO  [kvm.storage.LibvirtStorageAdaptor] (agentRequest-Handler-2:null) "
            f"(logid:ab12) Attempting to create storage pool {UUID.format(n)} (NetworkFilesystem) in libvirt\n")


def stop_failure(ts: float) -> str:
    return LINSTOR_STOP_FAILURE.format(ts=stamp(ts))


def agent_restart(ts: float) -> str:
    return (f"{stamp(ts)} INFO  [cloud.agent.Agent] (main:null) (logid:) Stopping the agent: Reason = "
            "Agent shutdown\n"
            f"{stamp(ts + 5)} INFO  [cloud.agent.AgentShell] (main:null) (logid:) Agent started\n"
            f"{stamp(ts + 5)} INFO  [cloud.agent.AgentShell] (main:null) (logid:) Implementation "
            "Version is 4.20.1.0\n")


def comparable(events: list[LogEvent], since: float) -> list[tuple]:
    """What a check judges: the events from `since` on, wherever their line now lives."""
    return [(e.kind, e.ts, e.line, e.pool_uuid, e.exception, e.detail)
            for e in events if e.ts is not None and e.ts >= since]


def failures(events: list[LogEvent], since: float) -> list[LogEvent]:
    return [e for e in events if e.kind == "storage-failure" and e.ts is not None and e.ts >= since]


def through_history(cursor):
    """The cursor as the next run finds it: saved in the history and read back."""
    return from_json(to_json(History(log_cursor=cursor))).log_cursor


@settings(max_examples=150, stateful_step_count=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
class LogUnderRotation(RuleBasedStateMachine):
    """The agent writes, logrotate rotates, checks run in between; each check with a
    cursor must see what a check without one sees."""

    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cursor-"))
        self.log = self.dir / "agent.log"
        self.log.write_text("")
        self.ts = T0
        self.since = T0 - 2
        self.cursor = None
        self.pools = 0
        self.failures: list[float] = []
        self.pending = ""
        self.record_split = False
        """A rotation between a record's two halves leaves its header in one file and the
        rest in the next: no reader can join them (the whole read cannot either)."""

    def failures_since(self) -> int:
        """Written and still in the rotated set: a copytruncate keeps every line."""
        return len([ts for ts in self.failures if ts >= self.since])

    def teardown(self) -> None:
        for name in os.listdir(self.dir):
            os.unlink(self.dir / name)
        os.rmdir(self.dir)

    def _write(self, text: str) -> None:
        """The writer finishes the record it is in the middle of first."""
        with open(self.log, "a") as out:
            out.write(self.pending + text)
        self.pending = ""
        self.ts += 1.0

    @rule(lines=st.integers(1, 40))
    def chatter(self, lines: int) -> None:
        self._write("".join(chatter(self.ts + i / 100) for i in range(lines)))

    @rule()
    def add_pool(self) -> None:
        self.pools += 1
        self._write(pool_add(self.ts, self.pools))

    @rule(cut=st.integers(0, 9))
    def trace_written_in_two_goes(self, cut: int) -> None:
        """A stop failure's trace, the check running between its two halves when `cut`
        falls inside it (a line cut in the middle, even)."""
        text = stop_failure(self.ts)
        self.failures.append(self.ts)
        split = len(text) * cut // 10
        self._write(text[:split])
        self.pending = text[split:]

    @rule()
    def rest_of_trace(self) -> None:
        self._write("")

    @rule()
    def agent_restarts(self) -> None:
        self._write(agent_restart(self.ts))
        self.since = self.ts - 1 + 5 - 2
        self.ts += 6

    @rule()
    def rename_rotation(self) -> None:
        self.record_split = self.record_split or bool(self.pending)
        rotated = sorted(self.dir.glob("agent.log.*"), key=lambda p: -int(p.name.split(".")[2]))
        for old in rotated:
            number = int(old.name.split(".")[2])
            os.rename(old, self.dir / old.name.replace(f".{number}", f".{number + 1}", 1))
        os.rename(self.log, self.dir / "agent.log.1")
        self.log.write_text("")

    @rule()
    def gzip_older(self) -> None:
        """logrotate's compress with delaycompress: the second-newest file is gzipped."""
        for plain in self.dir.glob("agent.log.[2-9]"):
            with open(plain, "rb") as src, gzip.open(str(plain) + ".gz", "wb") as dst:
                dst.write(src.read())
            os.unlink(plain)

    @rule()
    def copytruncate(self) -> None:
        if any(self.dir.glob("agent.log.*")):
            return  # keep one scheme: copytruncate's copy is agent.log.1 as well
        self.record_split = self.record_split or bool(self.pending)
        data = self.log.read_bytes()
        (self.dir / "agent.log.1").write_bytes(data)
        with open(self.log, "r+b") as out:
            out.truncate(0)

    @rule()
    def check(self) -> None:
        whole = read_log(str(self.log), self.since)
        on = read_log(str(self.log), self.since, self.cursor)
        assert on.status.ok and whole.status.ok, on.status.detail
        assert comparable(on.events, self.since) == comparable(whole.events, self.since), on.status.detail
        self.cursor = through_history(on.cursor)

    @invariant()
    def every_failure_counted_once(self) -> None:
        if self.cursor is None or self.pending:
            return
        on = failures(read_log(str(self.log), self.since, self.cursor).events, self.since)
        assert len(on) == len(failures(read_log(str(self.log), self.since).events, self.since))
        if not self.record_split:
            assert len(on) == self.failures_since()


TestLogUnderRotation = LogUnderRotation.TestCase


def test_a_run_reads_only_what_was_written_since_the_last(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text("".join(chatter(T0 + i / 1000) for i in range(20000)) + pool_add(T0 + 30, 1))
    first = read_log(str(log), T0 - 2)
    assert "20001 lines" in first.status.detail
    with open(log, "a") as out:
        out.write(chatter(T0 + 40) + stop_failure(T0 + 41))
    second = read_log(str(log), T0 - 2, through_history(first.cursor))
    assert second.status.ok and "read on from line 20002" in second.status.detail
    assert "11 lines" in second.status.detail, second.status.detail
    assert [e.kind for e in second.events] == ["pool-add", "storage-failure"]


def test_a_cursor_of_another_log_or_an_earlier_start_is_not_used(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text(pool_add(T0 + 10, 1))
    cursor = read_log(str(log), T0).cursor
    other = read_log(str(log), T0, replace(cursor, path=str(tmp_path / "other.log")))
    assert "read from the agent's start: the last read was of" in other.status.detail
    earlier = read_log(str(log), T0 - 3600, cursor)
    assert "needs lines from before" in earlier.status.detail
    assert [e.kind for e in earlier.events] == ["pool-add"]


def test_a_deleted_log_is_read_again_from_the_start_not_counted_twice(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text(pool_add(T0 + 10, 1))
    cursor = read_log(str(log), T0).cursor
    log.unlink()
    log.write_text(pool_add(T0 + 20, 2))
    again = read_log(str(log), T0, cursor)
    assert "in no file of the rotated set" in again.status.detail
    assert [e.pool_uuid for e in again.events] == [UUID.format(2)]


def test_a_log_that_cannot_be_read_keeps_no_new_cursor(tmp_path):
    log = tmp_path / "agent.log"
    missing = read_log(str(log), T0)
    assert not missing.status.ok and missing.cursor is None


def test_a_malformed_saved_state_reads_again_from_the_start(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text(pool_add(T0 + 10, 1))
    cursor = read_log(str(log), T0).cursor
    broken = replace(cursor, scanner='{"mode": 7}')
    again = read_log(str(log), T0, broken)
    assert again.status.ok and [e.kind for e in again.events] == ["pool-add"]
    assert "in no file of the rotated set" in again.status.detail


def test_the_cursor_keeps_the_running_agents_events_and_the_stop_before(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text(pool_add(T0 + 1, 1) + agent_restart(T0 + 10) + pool_add(T0 + 20, 2))
    cursor = read_log(str(log), T0 + 13).cursor
    assert [e.kind for e in cursor.events] == ["agent-stop", "agent-start", "agent-version", "pool-add"]
