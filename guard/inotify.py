"""Being told when the agent log's directory changes, instead of asking 20 times a second.

inotify through ctypes on libc (the standard library has no binding, and the Debian and
EPEL bindings are not in both): the log's directory is watched, so writes, truncations
and every rotation style (rename, create, copytruncate) wake the follower at once, and
an idle host costs nothing between writes. Where inotify is unavailable (no libc symbol,
the per-user watch limit reached, a filesystem that does not report changes), `open()`
returns None and the caller polls as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from typing import Callable, Optional

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
        | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
_HEADER = struct.Struct("iIII")
READ_BYTES = 64 * 1024


def _libc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):
        return None


class DirWatch:
    """Changes to the files of one directory whose names `wanted` accepts. `fileno()` is
    readable when there are some; `drain()` reads them and tells whether any mattered."""

    def __init__(self, fd: int, wanted: Callable[[str], bool]) -> None:
        self._fd = fd
        self._wanted = wanted

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> bool:
        relevant = False
        while True:
            try:
                data = os.read(self._fd, READ_BYTES)
            except BlockingIOError:
                return relevant
            except OSError:
                return True
            if not data:
                return relevant
            relevant = _relevant(data, self._wanted) or relevant

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _relevant(data: bytes, wanted: Callable[[str], bool]) -> bool:
    """Whether any event in a read names a wanted file, or says events were lost."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        _, mask, _, length = _HEADER.unpack_from(data, offset)
        name = data[offset + _HEADER.size: offset + _HEADER.size + length].split(b"\0", 1)[0]
        offset += _HEADER.size + length
        if mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF) or wanted(os.fsdecode(name)):
            return True
    return False


def open_watch(directory: str, wanted: Callable[[str], bool]) -> tuple[Optional[DirWatch], str]:
    """The watch, or None and why not (said once by the caller, which then polls)."""
    libc = _libc()
    if libc is None:
        return None, "inotify is not available in this libc"
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None, f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}"
    if libc.inotify_add_watch(fd, os.fsencode(directory), MASK) < 0:
        code = ctypes.get_errno()
        os.close(fd)
        hint = " (fs.inotify.max_user_watches reached)" if code == errno.ENOSPC else ""
        return None, f"cannot watch {directory}: {os.strerror(code)}{hint}"
    return DirWatch(fd, wanted), ""
