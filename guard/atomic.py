"""Writing a file so that readers and crashes see the old one or the new one, never half
of one: a temp file beside it, fsync, rename, fsync of the directory. The history store
and the metrics textfile (read by node_exporter at any moment) both write this way.

The temp file is created here rather than by tempfile.mkstemp: tempfile's imports
(shutil, random and the compressors behind them) were a fiftieth of every `check`."""

from __future__ import annotations

import contextlib
import os

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create_beside(path: str) -> tuple[int, str]:
    """A new 0600 file beside `path`, named for this process. O_EXCL never opens what
    is there: a name left by a crashed writer whose pid came back is skipped."""
    stem = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}")
    attempt = 0
    while True:
        tmp = f"{stem}.{attempt}.tmp"
        try:
            return os.open(tmp, _FLAGS, 0o600), tmp
        except FileExistsError:
            attempt += 1


def write_atomic(path: str, text: str, mode: int = 0o600) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
