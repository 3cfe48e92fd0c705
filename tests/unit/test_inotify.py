"""The log's directory watch: a write, a truncation and each rotation style wake the
follower; changes to other files do not; an unwatchable directory says why and the
follower polls instead."""

from __future__ import annotations

import os
import select
from pathlib import Path

from guard.inotify import open_watch


def woke(watch, timeout: float = 1.0) -> bool:
    ready, _, _ = select.select([watch.fileno()], [], [], timeout)
    return bool(ready) and watch.drain()


def test_every_change_to_the_log_wakes_and_others_do_not(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text("start\n")
    watch, why = open_watch(str(tmp_path), lambda name: name.startswith("agent.log"))
    assert watch is not None, why
    try:
        (tmp_path / "storpool-agent.log").write_text("other\n")
        assert not woke(watch, 0.2), "a neighbour's write must not wake the follower"
        with open(log, "a") as handle:
            handle.write("line\n")
        assert woke(watch)
        os.rename(log, tmp_path / "agent.log.1")
        assert woke(watch)
        log.write_text("new file\n")
        assert woke(watch)
        os.truncate(log, 0)
        assert woke(watch)
        assert not woke(watch, 0.1), "each change is read once"
    finally:
        watch.close()


def test_a_missing_directory_is_polled_with_the_reason(tmp_path: Path) -> None:
    watch, why = open_watch(str(tmp_path / "no-such-dir"), lambda name: True)
    assert watch is None and "no-such-dir" in why and "No such file" in why
