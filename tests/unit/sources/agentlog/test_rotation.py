"""Which files make up the rotated log set, and in which order they were written."""

from __future__ import annotations

from pathlib import Path

from guard.sources.agentlog import iter_events, log_set
from tests.support.logtext import (
    start_line,
    versions,
    write,
)


def test_log_set_numbered_gz_and_current_last(tmp_path):
    base = tmp_path / "agent.log"
    for name, text, gz in (("agent.log", "4", False), ("agent.log.1", "3", False),
                           ("agent.log.2.gz", "2", True), ("agent.log.10.gz", "1", True)):
        write(tmp_path / name, start_line(text), compress=gz)
    write(tmp_path / "agent.log.bak", "x")
    write(tmp_path / "other.log.1", "x")
    files = log_set(str(base))
    assert [Path(f).name for f in files] == [
        "agent.log.10.gz", "agent.log.2.gz", "agent.log.1", "agent.log"]
    assert versions(iter_events(files)) == ["1", "2", "3", "4"]


def test_log_set_dateext_and_log4j_dates(tmp_path):
    base = tmp_path / "agent.log"
    names = ["agent.log-20240102.gz", "agent.log-20231231", "agent.log.2024-01-03.gz"]
    for name in names:
        write(tmp_path / name, "", compress=name.endswith(".gz"))
    assert [Path(f).name for f in log_set(str(base))] == [
        "agent.log-20231231", "agent.log-20240102.gz", "agent.log.2024-01-03.gz"]


def test_log_set_mixed_schemes_follow_mtime_and_missing_base(tmp_path):
    base = tmp_path / "agent.log"
    write(tmp_path / "agent.log-20240101.gz", start_line("1"), mtime=1_000, compress=True)
    write(tmp_path / "agent.log.2.gz", start_line("2"), mtime=2_000, compress=True)
    write(tmp_path / "agent.log.1", start_line("3"), mtime=3_000)
    files = log_set(str(base))
    assert [Path(f).name for f in files] == ["agent.log-20240101.gz", "agent.log.2.gz",
                                             "agent.log.1"]
    assert versions(iter_events(files)) == ["1", "2", "3"]
    write(base, start_line("4"))
    assert versions(iter_events(log_set(str(base)))) == ["1", "2", "3", "4"]
