"""The history store on a real filesystem: private, atomic, and a corrupt, mistyped or
unreadable file moved aside instead of trusted or fatal."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from guard import store
from guard.history import SCHEMA_VERSION, Held, History
from tests.support.histories import UUID_A, UUID_B, sample_history
from tests.support.paths import REPO


def test_history_round_trip_and_private_dir(tmp_path):
    state = tmp_path / "state"
    store.save(str(state), sample_history())
    loaded, status = store.load(str(state))
    assert status.ok and loaded == sample_history()
    assert (state.stat().st_mode & 0o777) == 0o700
    assert sorted(p.name for p in state.iterdir()) == ["history.json"]


@pytest.mark.parametrize("content", ["{", "[]", '{"version": 99}', '{"version": 1, "pools": [{"x": 1}]}',
                                     '{"version": 1, "pools": [], "incarnations": [{"pid": "a"}]}'])
def test_corrupt_history_moved_aside(tmp_path, content):
    (tmp_path / "history.json").write_text(content)
    loaded, status = store.load(str(tmp_path))
    assert loaded == History() and status.ok and "corrupt" in status.detail
    assert not (tmp_path / "history.json").exists()
    assert len(list(tmp_path.glob("history.json.corrupt-*"))) == 1


def test_history_write_is_atomic(tmp_path):
    """A reader never sees a partial file while the writer replaces it."""
    store.save(str(tmp_path), sample_history())
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom guard import store as s\nfrom tests.support.histories import sample_history\n"
        "for _ in range(300): s.save(sys.argv[1], sample_history())\n"), str(tmp_path)],
        cwd=REPO)
    reads = 0
    while writer.poll() is None:
        data = json.loads((tmp_path / "history.json").read_text())
        assert data["version"] == SCHEMA_VERSION
        reads += 1
    assert writer.wait(timeout=60) == 0 and reads > 0


def _valid_history() -> dict:
    """A history document with every field of every record, as `save` writes it."""
    return {
        "version": 1,
        "pools": [{"uuid": UUID_A, "type": "Linstor", "name": "lin", "url": "http://c:3370",
                   "first_listed": 1.0, "last_listed": 2, "last_state": "Up", "removed_at": 5.0,
                   "removed_via": "test", "maintenance_at": None}],
        "incarnations": [{"pid": 42, "start_time": 100.5, "first_seen": 101,
                          "held": [{"uuid": UUID_A, "since": 102.0, "via": "log"}],
                          "dropped": [UUID_B]}],
        "restarts": [{"at": 200.0, "reason": "stale-pool", "old_pid": 42, "pools": [UUID_A],
                      "outcome": "verified", "detail": "", "new_pid": 43,
                      "boot_id": "8d2c6d4e-2f56-4a3c-9d1e-5b0f1e7a9c21", "boot_s": 1234.5}],
        "breaker_open_since": 300,
        "breaker_reason": "two restarts failed",
        "log_cursor": {"path": "/var/log/cloudstack/agent/agent.log", "device": 2049, "inode": 77,
                       "offset": 4096, "line": 30, "head": "ab" * 32, "scanner": "{}", "since": 98.0,
                       "incarnation": "42@100",
                       "events": [{"kind": "pool-add", "ts": 101.5, "file": "agent.log", "line": 12,
                                   "pool_uuid": UUID_A, "pid": None}]},
    }


def test_history_with_every_field_loads(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(_valid_history()))
    loaded, status = store.load(str(tmp_path))
    assert status.ok and "corrupt" not in status.detail
    assert loaded.pools[0].last_listed == 2.0 and loaded.pools[0].maintenance_at is None
    assert loaded.incarnations[0].held == (Held(UUID_A, 102.0, "log"),)
    assert loaded.restarts[0].new_pid == 43 and loaded.restarts[0].pools == (UUID_A,)
    assert loaded.restarts[0].boot_s == 1234.5
    assert loaded.breaker_open_since == 300.0
    assert loaded.log_cursor.offset == 4096 and loaded.log_cursor.events[0].pool_uuid == UUID_A
    store.save(str(tmp_path), loaded)
    assert store.load(str(tmp_path))[0] == loaded


def _broken(path: str, value) -> dict:
    """The valid document with the value at `path` (dotted, list indexes as numbers)
    replaced, or deleted when value is ..."""
    data = _valid_history()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


WRONG_TYPES = [
    ("pools.0.removed_at", "yesterday"), ("pools.0.first_listed", True), ("pools.0.uuid", 7),
    ("pools.0.type", 1), ("pools.0.name", None), ("pools.0.url", ["http://c"]),
    ("pools.0.last_state", {}), ("pools.0.removed_via", 0), ("pools.0.maintenance_at", [1]),
    ("pools.0.last_listed", "2"), ("pools.0.uuid", ...), ("pools.0.extra", 1), ("pools.0", "x"),
    ("pools", {}), ("incarnations.0.pid", "x"), ("incarnations.0.pid", 1.5),
    ("incarnations.0.pid", True), ("incarnations.0.start_time", "100"),
    ("incarnations.0.first_seen", None), ("incarnations.0.held", [1]),
    ("incarnations.0.held", "x"), ("incarnations.0.held.0.since", "x"),
    ("incarnations.0.held.0.via", 3), ("incarnations.0.held.0.uuid", ...),
    ("incarnations.0.dropped", [1]), ("incarnations.0.dropped", UUID_B), ("incarnations", None),
    ("restarts", [1]), ("restarts.0.at", "x"), ("restarts.0.reason", None),
    ("restarts.0.old_pid", "42"), ("restarts.0.pools", [None]), ("restarts.0.outcome", 1),
    ("restarts.0.detail", []), ("restarts.0.new_pid", 4.5), ("restarts.0.at", ...),
    ("restarts.0.boot_id", 7), ("restarts.0.boot_s", "1234"),
    ("restarts", "x"), ("breaker_open_since", "x"), ("breaker_open_since", False),
    ("breaker_reason", 5), ("pools.0.removed_at", 10 ** 400),
    ("log_cursor.offset", "4096"), ("log_cursor.head", ...), ("log_cursor.events", {}),
    ("log_cursor.events.0.line", "12"), ("log_cursor.events.0.kind", ...), ("log_cursor", []),
]


@pytest.mark.parametrize("path,value", WRONG_TYPES, ids=[f"{p}={v!r}"[:40] for p, v in WRONG_TYPES])
def test_history_with_wrong_types_is_moved_aside(tmp_path, path, value):
    (tmp_path / "history.json").write_text(json.dumps(_broken(path, value)))
    loaded, status = store.load(str(tmp_path))
    assert loaded == History() and status.ok and "corrupt" in status.detail, status.detail
    assert "\n" not in status.detail
    assert not (tmp_path / "history.json").exists()
    assert len(list(tmp_path.glob("history.json.corrupt-*"))) == 1


@pytest.mark.parametrize("content", [
    b'{"version": 1, "pools": [], "incarnations": [], "breaker_reason": "\xff\xfe"}',
    b"\x80" * 16,
    b"[" * 100_000 + b"]" * 100_000,
], ids=["invalid-utf8-in-a-string", "invalid-utf8", "nested-too-deep"])
def test_history_of_unreadable_bytes_is_moved_aside(tmp_path, content):
    (tmp_path / "history.json").write_bytes(content)
    loaded, status = store.load(str(tmp_path))
    assert loaded == History() and status.ok and "corrupt" in status.detail
    assert len(list(tmp_path.glob("history.json.corrupt-*"))) == 1


def test_atomic_write_skips_a_leftover_temp_name_and_leaves_none(tmp_path):
    """A crashed writer's temp file, under the name this pid would take, is neither opened
    nor overwritten; the written file is private and no temp file stays behind."""
    from guard.atomic import write_atomic

    target = tmp_path / "metrics.prom"
    leftover = tmp_path / f".metrics.prom.{os.getpid()}.0.tmp"
    leftover.write_text("a crashed writer's half file")
    write_atomic(str(target), "guard_up 1\n", mode=0o644)
    assert target.read_text() == "guard_up 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert leftover.read_text() == "a crashed writer's half file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.name, "metrics.prom"]


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temp(tmp_path):
    from guard.atomic import write_atomic

    target = tmp_path / "history.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(str(target), 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]
