"""The agent-log follower across real rotations on a real filesystem."""

from __future__ import annotations

import os
import shutil

from guard.follow import Follower
from guard.sources.agentlog import read_agent_log


def write(path, text, mode="a"):
    with open(path, mode) as handle:
        handle.write(text)


def drain(follower, rounds=3):
    seen, starts = [], []
    for _ in range(rounds):
        lines, rotated = follower.poll()
        seen += lines
        if rotated:
            starts.append(len(seen))
    return seen, starts


def test_grows_and_holds_back_partial_lines(tmp_path):
    log = tmp_path / "agent.log"
    write(log, "one\ntw")
    follower = Follower(str(log))
    assert drain(follower)[0] == ["one"]
    write(log, "o\nthree\n")
    assert drain(follower)[0] == ["two", "three"]


def test_rename_rotation_loses_and_repeats_nothing(tmp_path):
    log = tmp_path / "agent.log"
    write(log, "a1\na2\n")
    follower = Follower(str(log))
    assert drain(follower)[0] == ["a1", "a2"]
    write(log, "a3\na4-without-newline")
    os.rename(log, tmp_path / "agent.log.1")
    write(log, "b1\n")
    seen, starts = drain(follower)
    assert seen == ["a3", "a4-without-newline", "b1"] and starts == [2]
    assert follower.rotations == 1


def test_copytruncate_recovers_lines_written_before_the_copy(tmp_path):
    log = tmp_path / "agent.log"
    write(log, "a1\n")
    follower = Follower(str(log))
    assert drain(follower)[0] == ["a1"]
    write(log, "a2\na3\n")
    shutil.copyfile(log, tmp_path / "agent.log.1")
    os.truncate(log, 0)
    write(log, "b1\n")
    seen, starts = drain(follower)
    assert seen == ["a2", "a3", "b1"] and starts == [2]


def test_missing_file_then_created(tmp_path):
    log = tmp_path / "agent.log"
    follower = Follower(str(log))
    assert follower.poll() == ([], False)
    _, check_says = read_agent_log(str(log))
    assert follower.problem == check_says.detail, "the daemon and check word a missing log alike"
    write(log, "x\n")
    assert drain(follower)[0] == ["x"] and follower.problem == ""


def test_start_at_end(tmp_path):
    log = tmp_path / "agent.log"
    write(log, "old\n")
    follower = Follower(str(log), from_start=False)
    write(log, "new\n")
    assert drain(follower)[0] == ["new"]


def test_a_big_backlog_is_caught_up_in_slices_without_loss(tmp_path, monkeypatch):
    monkeypatch.setattr("guard.follow.MAX_PER_POLL", 1000)
    monkeypatch.setattr("guard.follow.READ_CHUNK", 100)
    log = tmp_path / "agent.log"
    write(log, "".join(f"line {i:05d}\n" for i in range(1000)))
    follower = Follower(str(log))
    first, _ = follower.poll()
    assert 0 < len(first) < 1000
    os.rename(log, tmp_path / "agent.log.1")
    write(log, "after\n")
    seen, _ = drain(follower, rounds=20)
    assert first + seen == [f"line {i:05d}" for i in range(1000)] + ["after"]


def test_quiet_tells_when_there_is_nothing_to_read(tmp_path):
    log = tmp_path / "agent.log"
    write(log, "a\npartial")
    follower = Follower(str(log))
    assert not follower.quiet()
    drain(follower)
    assert follower.quiet()
    write(log, "b\n")
    assert not follower.quiet()
    drain(follower)
    os.rename(log, tmp_path / "agent.log.1")
    write(log, "")
    assert not follower.quiet()
