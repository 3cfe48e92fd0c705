"""Writing a file so that readers and crashes see the old one or the new one, never half
of one: a temp file beside it, fsync, rename, fsync of the directory. The history store
and the metrics textfile (read by node_exporter at any moment) both write this way."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str, text: str, mode: int = 0o600) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
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
