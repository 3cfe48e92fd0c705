"""The history store: loading and saving the history under state_dir, under a lock.

Written atomically (guard/atomic.py) so a crash or a power cut leaves either the old or
the new file, never half of one; a file that is
corrupt anyway is moved aside with a warning, because losing history must never stop
the guard from reporting what it can see now.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from typing import Optional

from guard.atomic import write_atomic
from guard.history import History, from_json, to_json
from guard.model import SourceStatus
from guard.record import merge

FILE_NAME = "history.json"
LOCK_NAME = "history.lock"


def history_path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE_NAME)


def ensure_state_dir(state_dir: str) -> None:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)


LOCK_WAIT_S = 10.0


@contextlib.contextmanager
def locked(state_dir: str, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """Serialise read-modify-write between the daemon and on-demand checks. Held only
    around reading or writing the file, never while evidence is gathered; a holder stuck
    longer than `wait` raises TimeoutError rather than hanging the caller.

    On a read-only state_dir (a disk the kernel remounted read-only) nobody can change
    the history: the lock is taken on the file as it is, for reading, or not at all when
    there is none, and the caller's save fails, saying why, rather than the history it
    could still read being lost."""
    ensure_state_dir(state_dir)
    path = os.path.join(state_dir, LOCK_NAME)
    fd: Optional[int]
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        fd = _read_only_lock(path)
    if fd is None:
        yield
        return
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{state_dir}/{LOCK_NAME} held by another process "
                                       f"for over {wait:g}s") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def _read_only_lock(path: str) -> Optional[int]:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def load(state_dir: str) -> tuple[History, SourceStatus]:
    path = history_path(state_dir)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return History(), SourceStatus("history", True, f"{path}: none yet, starting fresh")
    except OSError as exc:
        return History(), SourceStatus("history", False, f"{path}: cannot read ({exc.strerror})")
    try:
        # UnicodeDecodeError and json's errors are ValueErrors; a pathologically nested
        # document exhausts the parser's recursion instead
        return from_json(json.loads(raw.decode("utf-8"))), SourceStatus("history", True, path)
    except (ValueError, RecursionError) as exc:
        aside = f"{path}.corrupt-{int(time.time())}"
        try:
            os.replace(path, aside)
            where = f"moved to {aside}"
        except OSError as move_error:
            where = f"could not move it aside ({move_error.strerror})"
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        return History(), SourceStatus(
            "history", True, f"WARNING {path} was corrupt ({reason}); {where}; starting fresh"
        )


def save(state_dir: str, history: History) -> None:
    ensure_state_dir(state_dir)
    write_atomic(history_path(state_dir), json.dumps(to_json(history), indent=1, sort_keys=True))


def save_merged(state_dir: str, mine: History, base: History) -> History:
    """Save under the lock, merged with whatever another writer saved since `base` was
    loaded; returns what was written, the new base."""
    with locked(state_dir):
        disk, _ = load(state_dir)
        merged = merge(disk, mine, base)
        save(state_dir, merged)
    return merged
