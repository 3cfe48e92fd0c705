"""Following the agent log as it grows, across rotation, without losing or repeating a
line.

The daemon calls poll() when the log's directory changes (guard/inotify.py), or every
few tens of milliseconds where it cannot be watched; each poll sees every rotation style
the same way, so both paths share all of this.

- rename rotation (logrotate's default): the old file is read to its end through the
  descriptor still open, then the new file from its start;
- copytruncate: the file shrinks under us; what was written between our last read and
  the copy is read from the copy (`<log>.1`) before starting again at offset 0.
"""

from __future__ import annotations

import os
from typing import BinaryIO, NamedTuple, Optional

from guard.sources.agentlog.cursor import HEAD_BYTES as CURSOR_HEAD_BYTES
from guard.sources.agentlog.reading import not_found
from guard.sources.agentlog.rotation import copytruncate_copy

READ_CHUNK = 1024 * 1024
MAX_PER_POLL = 8 * READ_CHUNK
"""A huge log (read from its start when the guard starts) is caught up in slices, so one
poll never holds megabytes of lines at once; the rest comes on the next polls."""
HEAD_BYTES = 256
"""What tells a truncation followed by new writes past our offset."""


class Place(NamedTuple):
    """Where a file was read to: its identity, the bytes of its complete lines read, and
    its first bytes (guard/sources/agentlog/cursor.py finds the file again by them)."""

    identity: tuple[int, int]
    offset: int
    head: bytes


def _place(identity: tuple[int, int], handle: BinaryIO, offset: int) -> Place:
    return Place(identity, offset, os.pread(handle.fileno(), min(offset, CURSOR_HEAD_BYTES), 0))


class Follower:
    def __init__(self, path: str, from_start: bool = True,
                 at: Optional[tuple[tuple[int, int], int]] = None) -> None:
        """`at`: (device and inode, offset) to go on from when that file is still the
        one at `path` (the place a LogCursor names); from the start otherwise."""
        self.path = path
        self._handle: Optional[BinaryIO] = None
        self._identity: Optional[tuple[int, int]] = None
        self._partial = b""
        self._from_start = from_start
        self._head = b""
        self.rotations = 0
        self.problem = ""
        self.caught_up = True
        """False after a poll that stopped at MAX_PER_POLL with more to read."""
        self.left: Optional[Place] = None
        """The file the last rotation left behind (or copytruncate's copy), read to its end."""
        self._open()
        if at is not None and self._handle is not None and at[0] == self._identity:
            self._handle.seek(at[1])

    @property
    def offset(self) -> int:
        return self._handle.tell() if self._handle else 0

    def place(self) -> Optional[Place]:
        """Where the current file's complete lines end; None before it was opened."""
        if self._handle is None or self._identity is None:
            return None
        return _place(self._identity, self._handle, self._handle.tell() - len(self._partial))

    def _open(self) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls on purpose
        except FileNotFoundError:
            self.problem = not_found(self.path)
            return False
        except OSError as exc:
            self.problem = f"{self.path}: cannot open ({exc.strerror})"
            return False
        info = os.fstat(handle.fileno())
        if not self._from_start:
            handle.seek(0, os.SEEK_END)
            self._from_start = True
        self._handle, self._identity, self.problem = handle, (info.st_dev, info.st_ino), ""
        self._head = os.pread(handle.fileno(), HEAD_BYTES, 0)
        return True

    def _file(self) -> BinaryIO:
        """The open file; every caller runs after _open() succeeded."""
        if self._handle is None:
            raise OSError(f"{self.path}: not open")
        return self._handle

    def _truncated(self) -> bool:
        """The size alone misses a truncation followed by new writes past our offset;
        the file's first bytes changing does not."""
        current = os.pread(self._file().fileno(), HEAD_BYTES, 0)
        if not current.startswith(self._head):
            return True
        self._head = current
        return False

    def _read(self, to_end: bool = False) -> bytes:
        """One poll's slice, or (for a file about to be let go) everything left."""
        chunks: list[bytes] = []
        total = 0
        while to_end or total < MAX_PER_POLL:
            chunk = self._file().read(READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        self.caught_up = to_end or total < MAX_PER_POLL
        return b"".join(chunks)

    def _lines(self, data: bytes, final: bool = False) -> list[str]:
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", "replace") for line in complete]

    def _from_copy(self, offset: int) -> bytes:
        """The tail a copytruncate moved into the copy before we could read it."""
        self.left = None
        try:
            with open(copytruncate_copy(self.path), "rb") as copy:
                info = os.fstat(copy.fileno())
                if info.st_size <= offset:
                    return b""
                copy.seek(offset)
                data = copy.read()
                self.left = _place((info.st_dev, info.st_ino), copy, copy.tell())
                return data
        except OSError:
            return b""

    def quiet(self) -> bool:
        """Nothing to read and no rotation: cheap enough (one stat) for every tick of the
        event loop, so the loop only hands real work to a thread."""
        if self._handle is None:
            return not os.path.exists(self.path)
        try:
            info = os.stat(self.path)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) == self._identity and info.st_size == self._handle.tell()

    def poll(self) -> tuple[list[str], bool]:
        """New complete lines, and whether the next poll's lines start a new file."""
        if self._handle is None and not self._open():
            return [], False
        try:
            info = os.stat(self.path)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                self.problem = f"{self.path}: cannot stat ({exc.strerror})"
            return self._lines(self._read()), False
        if (info.st_dev, info.st_ino) != self._identity:
            lines = self._lines(self._read(to_end=True), final=True)
            if self._identity is not None:
                self.left = _place(self._identity, self._file(), self._file().tell())
            self._file().close()
            self._handle = None
            self.rotations += 1
            self._open()
            return lines, True
        if self._truncated():
            lines = self._lines(self._from_copy(self._file().tell()), final=True)
            self._file().seek(0)
            self._head = b""
            self.rotations += 1
            return lines, True
        return self._lines(self._read()), False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
