"""Reading plain and gzipped log files with caps: damaged, hostile or unreadable files
cost a problem line, never an exception or the events before the damage."""

from __future__ import annotations

import gzip
import random

from guard.sources.agentlog import MAX_LINE_BYTES, iter_events, read_agent_log
from tests.support.logtext import (
    start_line,
    versions,
    write,
)
from tests.support.unprivileged import read_as_nobody


def test_gzip_is_detected_by_magic_not_name(tmp_path):
    write(tmp_path / "plain.gz", start_line("plain"))
    write(tmp_path / "zipped.txt", start_line("zipped"), compress=True)
    assert versions(iter_events([str(tmp_path / "plain.gz"), str(tmp_path / "zipped.txt")])) == [
        "plain", "zipped"]


def test_truncated_gzip_keeps_events_before_the_cut(tmp_path):
    text = "".join(start_line(str(i)) for i in range(2000))
    data = gzip.compress(text.encode())
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    problems: list[str] = []
    got = versions(iter_events([str(tmp_path / "cut.gz"), str(tmp_path / "missing")], problems))
    assert 0 < len(got) < 2000 and got == [str(i) for i in range(len(got))]
    assert "truncated" in problems[0]
    assert "missing: cannot open" in problems[1]


def test_garbage_never_raises(tmp_path):
    rnd = random.Random(4711)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(rnd.randbytes(10 * 1024 * 1024))
    nul = tmp_path / "nul.log"
    nul.write_bytes(b"\x00" * 100_000 + b"\n" + start_line("after-nul").encode() + b"\xff\xfe\n")
    giant = tmp_path / "giant.log"
    giant.write_bytes(b"x" * (3 * MAX_LINE_BYTES + 7) + b"\n" + start_line("after-giant").encode())
    directory = tmp_path / "adir"
    directory.mkdir()
    problems: list[str] = []
    events = list(iter_events([str(noise), str(nul), str(giant), str(directory)], problems))
    assert [(e.detail, e.line) for e in events if e.kind == "agent-version"] == [
        ("after-nul", 2), ("after-giant", 2)]
    assert len(problems) == 1 and "adir" in problems[0]


def test_read_agent_log_status(tmp_path):
    base = tmp_path / "agent.log"
    events, status = read_agent_log(str(base))
    assert (events, status.ok, status.name) == ([], False, "agent-log")
    assert str(base) in status.detail and "guard.toml" in status.detail

    write(tmp_path / "agent.log.2.gz", start_line("old"), mtime=1_000, compress=True)
    write(tmp_path / "agent.log.1", start_line("mid"), mtime=5_000)
    write(base, start_line("new"))
    events, status = read_agent_log(str(base))
    assert status.ok and versions(events) == ["old", "mid", "new"]
    assert "3 file(s) (2 rotated)" in status.detail

    events, status = read_agent_log(str(base), since=4_000)
    assert status.ok and versions(events) == ["mid", "new"]
    assert "skipped 1 rotated file(s)" in status.detail

    (tmp_path / "agent.log.1").write_bytes(gzip.compress(b"x" * 10_000)[:20])
    events, status = read_agent_log(str(base), since=4_000)
    assert status.ok and versions(events) == ["new"]
    assert "problems:" in status.detail


def test_read_agent_log_unreadable_current_file(world_tmp):
    base = world_tmp / "agent.log"
    write(base, start_line("x"))
    base.chmod(0)
    result = read_as_nobody("guard.sources.agentlog", "read_agent_log", str(base))
    assert not result["found"] and not result["ok"] and "root" in result["detail"]


def test_read_agent_log_current_file_is_a_directory(tmp_path):
    base = tmp_path / "agent.log"
    base.mkdir()
    write(tmp_path / "agent.log.1", start_line("rotated"))
    events, status = read_agent_log(str(base))
    assert not status.ok and versions(events) == ["rotated"]


def test_every_grouped_quiet_key_holds_its_anchor():
    """A key is tried only when its group's anchor is in the line: a key without it
    would never be found, and its events never made."""
    from guard.sources.agentlog.scanner import _QUIET_GROUPS, _QUIET_KEYS

    for anchor, keys in _QUIET_GROUPS:
        assert keys and all(anchor in key for key in keys), (anchor, keys)
    grouped = [key for _, keys in _QUIET_GROUPS for key in keys]
    assert len(set(grouped) | set(_QUIET_KEYS)) == len(grouped) + len(_QUIET_KEYS)


def test_a_quiet_line_is_an_event_by_its_key_wherever_in_the_line_it_is(tmp_path):
    """Kept from before the keys were grouped: 'removed from libvirt' alone keys a line,
    and a heartbeat message on a quiet line holding it is still read."""
    line = ("2026-01-01 10:00:00,000 INFO  [kvm.resource.KVMHAMonitor] (Thread-9:null) (logid:) "
            "Write heartbeat for pool [p1] failed: removed from libvirt; try: 1 of 5.\n")
    (tmp_path / "agent.log").write_text(line)
    kinds = [e.kind for e in iter_events([str(tmp_path / "agent.log")])]
    assert kinds == ["heartbeat-failure"]
