"""StorPool's own adaptor log as evidence of which StorPool pools the running agent holds.

StorPoolStorageAdaptor.SP_LOG (apache/cloudstack, plugins/storage/volume/storpool)
appends to a fixed path, /var/log/cloudstack/agent/storpool-agent.log, with a timestamp
of its own: SimpleDateFormat `yyyy-MM-dd HH:mm:ss,ms`, in the host's local time, where
the digits after the comma are the minute and the second again, not milliseconds. It
writes `StorPoolStorageAdaptor.createStoragePool: uuid=<template>;<uuid>, host=...` for
every pool the agent is sent, and KVMStoragePoolManager.createStoragePool then adds the
pool to the KVM HA monitor: such a line since the agent started proves the heartbeat
covers the pool, even when the guard never saw it listed (installed after the deletion,
or its history moved aside). The agent log has no INFO line for it.

Its `deleteStoragePool` lines are not read: the adaptor's map is not what makes a
StorPool entry dangerous, and KVMStoragePoolManager.deleteStoragePool takes only NFS
pools out of the HA monitor.

CloudStack never rotates this file, and SP_LOG writes a line for every disk operation,
so it grows for the life of the host: the reader bisects to the agent's start by the
timestamps, then scans for the create lines in blocks, at most MAX_SCAN_BYTES a read.
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import BinaryIO, Optional

from guard.drivers import driver_for
from guard.model import LogEvent, SourceStatus, pool_id

SOURCE_NAME = "storpool-log"
ADAPTOR = driver_for("StorPool").adaptor
MAX_SCAN_BYTES = 256 * 1024 * 1024
_BLOCK = 1024 * 1024
_MARK = b"StorPoolStorageAdaptor.createStoragePool: uuid="
_STAMP = re.compile(rb"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)")
_UUID_END = re.compile(rb"[,\s]")


def _stamp(line: bytes) -> Optional[float]:
    m = _STAMP.match(line)
    if m is None:
        return None
    year, mon, day, hour, minute, sec = (int(g) for g in m.groups())
    try:
        return time.mktime((year, mon, day, hour, minute, sec, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _first_stamp_after(stream: BinaryIO, offset: int) -> tuple[Optional[float], int]:
    """The timestamp of the first whole line at or after `offset`, and where it starts."""
    stream.seek(offset)
    if offset:
        stream.readline()
    for _ in range(64):
        start = stream.tell()
        line = stream.readline(4096)
        if not line:
            return None, start
        ts = _stamp(line)
        if ts is not None:
            return ts, start
    return None, stream.tell()


def _bisect(stream: BinaryIO, size: int, since: float) -> int:
    """Where the lines written at `since` or later begin, as far as the timestamps (in
    order, the file being appended to) can tell; 0 when they cannot."""
    low, high = 0, size
    while high - low > _BLOCK:
        middle = (low + high) // 2
        ts, _ = _first_stamp_after(stream, middle)
        if ts is not None and ts < since:
            low = middle
        else:
            high = middle
    return low


def _event(line: bytes, path: str, offset: int) -> Optional[LogEvent]:
    at = line.find(_MARK)
    rest = line[at + len(_MARK):]
    end = _UUID_END.search(rest)
    uuid = rest[: end.start() if end else len(rest)].decode("utf-8", "replace")
    ts = _stamp(line)
    if not uuid or ts is None:
        return None
    return LogEvent("pool-add", ts, path, offset, pool_uuid=pool_id(uuid), pool_type="StorPool",
                    adaptor=ADAPTOR, detail=f"{ADAPTOR}.createStoragePool")


def _scan(stream: BinaryIO, start: int, since: float, path: str,
          written_after: float = math.inf) -> tuple[list[LogEvent], int, bool]:
    """Create lines from `start` on, stamped at `since` or later or lying at
    `written_after` or beyond; where the last whole line read ends; whether the scan
    stopped at MAX_SCAN_BYTES with more to read. An event's `line` is its byte offset: the
    file has no line numbers worth counting."""
    events: list[LogEvent] = []
    stream.seek(start)
    carry = b""
    position = start
    while position - start < MAX_SCAN_BYTES:
        block = stream.read(_BLOCK)
        if not block:
            return events, position - len(carry), False
        data = carry + block
        base = position - len(carry)
        position += len(block)
        cut = data.rfind(b"\n") + 1
        data, carry = data[:cut], data[cut:]
        if len(carry) > _BLOCK:
            carry = b""  # not a log line: never hold a runaway one
        found = data.find(_MARK)
        while found >= 0:
            begin = data.rfind(b"\n", 0, found) + 1
            end = data.find(b"\n", found)
            event = _event(data[begin:end], path, base + begin)
            if event is not None and event.ts is not None and (
                    event.ts >= since or event.line >= written_after):
                events.append(event)
            found = data.find(_MARK, end)
    return events, position - len(carry), True


class StorPoolLog:
    """The StorPool pools the adaptor was given since the agent started, read on from
    where the last read stopped (the daemon reads it at every look). A new agent start,
    a replaced file or a truncated one starts over from the bisection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.events: list[LogEvent] = []
        self._since: Optional[float] = None
        self._identity: tuple[int, int] = (0, 0)
        self._offset = 0
        self._written_after = 0
        """The file's size when this agent's reading began: what lies beyond was written
        while it ran, whatever its stamp says."""

    def read(self, since: float) -> tuple[list[LogEvent], SourceStatus]:
        """A host without StorPool has no such file: that is not a failure, the source
        is just not there."""
        try:
            with open(self.path, "rb") as stream:
                info = os.fstat(stream.fileno())
                identity = (info.st_dev, info.st_ino)
                if since != self._since or identity != self._identity or info.st_size < self._offset:
                    self.events, self._since, self._identity = [], since, identity
                    self._offset = _bisect(stream, info.st_size, since)
                    self._written_after = info.st_size
                # A line appended since this agent's reading began is its own by its place
                # in the file, whatever its stamp says: the wall clock may have been
                # stepped back since the start was read (the daemon reads it once). What
                # was there before (the bisection can land early) goes by its stamp.
                new, self._offset, more = _scan(stream, self._offset, since, self.path, self._written_after)
        except FileNotFoundError:
            self.events, self._since = [], None
            return [], SourceStatus(SOURCE_NAME, True, f"{self.path} absent: no StorPool adaptor wrote here",
                                    configured=False)
        except OSError as exc:
            return list(self.events), SourceStatus(SOURCE_NAME, False,
                                                   f"cannot read {self.path}: {exc.strerror or exc}")
        self.events = _first_and_last(self.events + new)
        pools = len({e.pool_uuid for e in self.events})
        detail = f"{pools} StorPool pool(s) given to the agent since it started"
        if more:
            detail += (f"; stopped after {MAX_SCAN_BYTES // 2**20} MiB, later lines not read "
                       "(the daemon reads on; check reads this much each time)")
        return list(self.events), SourceStatus(SOURCE_NAME, True, detail)


def _first_and_last(events: list[LogEvent]) -> list[LogEvent]:
    """Each pool's first line (since when it is held) and its latest (a re-send after a
    removal): the agent re-logs every pool at each reconnect, for the life of the JVM."""
    first: dict[str, LogEvent] = {}
    last: dict[str, LogEvent] = {}
    for event in events:
        first.setdefault(event.pool_uuid, event)
        last[event.pool_uuid] = event
    kept = {id(e) for e in first.values()} | {id(e) for e in last.values()}
    return [e for e in events if id(e) in kept]
