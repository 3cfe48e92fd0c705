"""The agent log as evidence: which pools the agent was told to hold and to drop, when it
restarted and reconnected, and which failures a storage adaptor caused.

The agent's pool caches live inside its JVM; its log is the only record of what went in
and out of them. The guard must read that record in every shape it meets: the file itself
(log4j 1 and log4j 2 layouts, rotated, gzipped), journald and rsyslog captures, and
excerpts pasted into tickets (markdown quotes, `grep -n` prefixes, redacted host names,
traces cut short, a trace with no header at all). None of that may raise: a log the guard
cannot read is reported in a SourceStatus, never fatal to the check.

Incident logs run to gigabytes and nearly every line is INFO/DEBUG chatter that matches
nothing, so each line first meets fixed-position and substring checks; only the few that
pass reach a regular expression. Lines are streamed one at a time and stack traces are
judged as they go by (no trace is kept in memory), so memory stays flat whatever the size.

The strings matched are the agent's own (Agent.java, AgentShell.java,
LibvirtStorageAdaptor.java, LinstorStorageAdaptor.java, KVMHAMonitor.java in
apache/cloudstack), including the spellings older releases used.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, Optional

from guard.model import LogEvent, SourceStatus

SOURCE_NAME = "agent-log"
MAX_LINE_BYTES = 64 * 1024
"""Longer physical lines are cut here (the rest is skipped): a binary file or a runaway
JSON line must not make the reader hold megabytes for one line."""

_MAX_TRACE_LINES = 400
_MAX_TRACKED = 256
_GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError)

_NONE, _SKIP, _COLLECT = 0, 1, 2
_QUIET_FAST = frozenset(("DEBUG", "INFO ", "TRACE"))
_LOUD_FAST = frozenset(("WARN ", "ERROR", "FATAL"))
_LOUD = frozenset(("WARN", "ERROR", "FATAL"))

# Substrings of every INFO/DEBUG message that can make an event; a line with none of
# them is skipped without further work.
_QUIET_KEYS = (
    "torage pool",
    "Agent started",
    "Implementation Version is",
    "Stopping the agent",
    "Connected to the host",
    "Ready command is processed",
    "DeleteStoragePoolCommand",
    "Linstor createStoragePool",
    "Linstor: Using stor",
    "\\n\\tat ",
)

_HEADER = re.compile(
    r"\s*(?:(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)\s+)?"
    r"(?P<lvl>TRACE|DEBUG|INFO|WARN|ERROR|FATAL)\s+\[(?P<cat>[^\]]*)\]\s?"
    r"(?:\((?P<thr>[^()]*)\)\s?)?(?:\(logid:(?P<logid>[^()]*)\)\s?)?(?P<msg>.*)",
    re.S,
)
_SYSLOG = re.compile(
    r"(?:(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<day>\d{1,2}) "
    r"(?P<hms>\d\d:\d\d:\d\d)"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?))?"
    r"\s*(?P<host><[^<>]*>|[^\s<>\[\]]+) (?P<prog>[^\s\[\]:]+)\[(?P<pid>\d+)\]: ?(?P<rest>.*)",
    re.S,
)
_QUOTE = re.compile(r"(?:>[ ]?)+")
_GREP = re.compile(
    r"(?:[^\s:]+:)?(?:\d+[:-])?(?=\d{4}-\d\d-\d\d[ T]\d\d:)"
    r"|\d+[:-](?=\s+at |\s+\.\.\. \d+ more|(?:Caused by: )?(?:[A-Za-z_$][\w$]*\.)+[\w$]*"
    r"(?:Exception|Error|Throwable)\b)"
)
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$"
)
_EXC_START = re.compile(
    r"(?:Caused by: )?(?:[A-Za-z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)\b"
)
_EXC_IN_TEXT = re.compile(r"(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)\b[^\"]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_RX_CREATE = re.compile(r"Attempting to create storage pool (\S+) \((.*)\) in libvirt")
_RX_FOUND = re.compile(r"Found existing defined storage pool (\S+?), using it")
_RX_REMOVE = re.compile(r"Attempting to remove storage pool (\S+) from libvirt")
_RX_REMOVED = re.compile(r"Storage pool (\S+) was succ?ess?fully removed from libvirt")
_RX_LINSTOR_CREATE = re.compile(r"Linstor createStoragePool: name: '([^']*)', host: '([^']*)'")
_RX_HEARTBEAT = re.compile(r"Write heartbeat for pool \[([^\]]*)\] failed: (.*)", re.S)
_RX_TRY = re.compile(r"; try: (\d+) of (\d+)\.?$")
_RX_JSON_UUID = re.compile(r'"uuid":"([^"]*)"')
_RX_JSON_TYPE = re.compile(r'"type":"([^"]*)"')
_RX_JSON_HOST = re.compile(r'"host":"([^"]*)"')

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_AGENT_PROGRAMS = ("java", "jsvc", "cloudstack", "agent")

# Frames that say what the agent was doing when a storage call failed. Order matters
# only within one frame; the innermost (first) matching frame decides.
_OPERATION_FRAMES = (
    ("disconnectPhysicalDisk", "disk-cleanup"),
    ("cleanupDisk", "disk-cleanup"),
    ("getResourceByPath", "disk-cleanup"),
    ("tryDisconnectLinstor", "disk-cleanup"),
    ("LibvirtStopCommandWrapper", "disk-cleanup"),
    ("LibvirtMigrateCommandWrapper", "disk-cleanup"),
    (".createStoragePool(", "pool-create"),
    (".deleteStoragePool(", "pool-delete"),
    ("LibvirtDeleteStoragePoolCommandWrapper", "pool-delete"),
)
_FOREIGN_PATH = "Linstor: Couldn't find resource for this path: "
_USING_POOL = ("Linstor: Using storage pool: ", "Linstor: Using storpool: ")
_VERSION = "Implementation Version is "
_STOPPING = "Stopping the agent: Reason = "
_HB_STOPPING = "; stopping cloudstack-agent."
_JERSEY_NOTE = ("adaptor inferred from the Jersey client failure "
                "(only the LINSTOR adaptor uses that client in the agent)")


class _At(NamedTuple):
    """Where and when a record was written, shared by the events it yields."""

    line: int
    ts: Optional[float]
    pid: Optional[int]
    thread: str
    logid: str


class _ReadReport:
    """What a read covered and what went wrong, for the SourceStatus."""

    def __init__(self, problems: Optional[list[str]] = None) -> None:
        self.files: list[str] = []
        self.lines = 0
        self.problems: list[str] = [] if problems is None else problems


def _mktime(year: int, mon: int, day: int, hour: int, minute: int, sec: int) -> Optional[float]:
    try:
        return time.mktime((year, mon, day, hour, minute, sec, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _iso_ts(text: str) -> Optional[float]:
    m = _ISO.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    frac = int(m.group(7)) / 10 ** len(m.group(7)) if m.group(7) else 0.0
    zone = m.group(8)
    if not zone:
        base = _mktime(y, mo, d, h, mi, s)
        return None if base is None else base + frac
    try:
        if zone == "Z":
            tz = timezone.utc
        else:
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = timezone(-offset if zone[0] == "-" else offset)
        return datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp() + frac
    except (ValueError, OverflowError):
        return None


def _syslog_ts(m: re.Match, now: float) -> Optional[float]:
    """BSD syslog stamps carry no year: take the current one, or the previous one when
    that would put the line more than a day in the future (a log read in January)."""
    if m.group("mon"):
        hour, minute, sec = (int(x) for x in m.group("hms").split(":"))
        args = (_MONTHS[m.group("mon")], int(m.group("day")), hour, minute, sec)
        year = time.localtime(now).tm_year
        ts = _mktime(year, *args)
        if ts is not None and ts > now + 86400:
            ts = _mktime(year - 1, *args)
        return ts
    if m.group("iso"):
        return _iso_ts(m.group("iso"))
    return None


def _log4j_ts(stamp: str, hour_base: dict[str, Optional[float]]) -> Optional[float]:
    """log4j writes host-local wall time; one mktime per distinct hour, arithmetic after."""
    if len(stamp) != 23 or stamp[19] not in ",.":
        return _iso_ts(stamp)
    key = stamp[:13]
    base = hour_base.get(key, -1.0)
    if base == -1.0:
        try:
            base = _mktime(int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]),
                           int(stamp[11:13]), 0, 0)
        except ValueError:
            base = None
        if len(hour_base) > 64:
            hour_base.clear()
        hour_base[key] = base
    if base is None:
        return None
    try:
        return base + int(stamp[14:16]) * 60 + int(stamp[17:19]) + int(stamp[20:23]) / 1000
    except ValueError:
        return None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _is_agent_program(prog: str) -> bool:
    return prog.startswith(_AGENT_PROGRAMS)


class _Trace:
    """One WARN/ERROR record (or a header-less fragment) whose continuation lines are
    judged one by one: is a storage adaptor or the storage REST client in the trace?"""

    __slots__ = (
        "line", "ts", "pid", "logid", "message", "origin", "lines", "exception",
        "adaptor", "adaptor_frame", "operation", "operation_frame", "weak_operation",
        "jersey",
    )

    def __init__(self, line: int, ts: Optional[float], pid: Optional[int], logid: str,
                 message: str, origin: str) -> None:
        self.line = line
        self.ts = ts
        self.pid = pid
        self.logid = logid
        self.message = message
        self.origin = origin
        self.lines = 0
        self.exception = ""
        self.adaptor = ""
        self.adaptor_frame = ""
        self.operation = ""
        self.operation_frame = ""
        self.weak_operation = ""
        self.jersey = False

    def feed(self, text: str) -> None:
        if self.lines >= _MAX_TRACE_LINES:
            return
        self.lines += 1
        t = text.strip()
        if t.startswith("at "):
            self._frame(t)
        elif t.startswith("Caused by: "):
            self._exception_evidence(t)
        elif not self.exception and _EXC_START.match(t):
            self.exception = t[:500]
            self._exception_evidence(t)

    def feed_embedded(self, message: str) -> None:
        """A trace flattened into one line (an Answer's JSON `details`: `\\n\\tat ...`)."""
        pieces = message.split("\\n")
        found = _EXC_IN_TEXT.search(pieces[0])
        if found and not self.exception:
            self.exception = found.group(0).rstrip("\\")[:500]
            self._exception_evidence(self.exception)
        for piece in pieces[1:_MAX_TRACE_LINES]:
            self.feed(piece.replace("\\t", "\t"))

    def _exception_evidence(self, text: str) -> None:
        if "ws.rs.ProcessingException" in text:
            self.jersey = True

    def _frame(self, t: str) -> None:
        if "com.cloud.hypervisor.kvm.storage." in t:
            if not self.adaptor:
                paren = t.find("(")
                signature = t[3:paren if paren > 0 else len(t)].rsplit("/", 1)[-1]
                qualified, _, method = signature.rpartition(".")
                simple = qualified.rsplit(".", 1)[-1].split("$", 1)[0]
                if (simple.endswith(("Adaptor", "Adapter"))
                        or simple == "KVMStoragePoolManager"):
                    self.adaptor = simple
                    self.adaptor_frame = f"{simple}.{method}"
        elif "org.glassfish.jersey." in t or "com.linbit.linstor." in t:
            self.jersey = True
        if not self.operation:
            for needle, operation in _OPERATION_FRAMES:
                if needle in t:
                    self.operation = operation
                    self.operation_frame = ".".join(t[3:].split("(", 1)[0].rsplit(".", 2)[-2:])
                    return
            if not self.weak_operation and "LibvirtModifyStoragePoolCommandWrapper" in t:
                self.weak_operation = "pool-create"

    def event(self, file: str) -> Optional[LogEvent]:
        # Without an adaptor frame only the Jersey client names the storage: the agent
        # uses it for LINSTOR alone. A bare java.net.ConnectException comes as well from
        # template downloads (sun.net.www, commons-httpclient), the management-server
        # link and more, and is storage evidence only beside an adaptor frame.
        if not self.adaptor and not self.jersey:
            return None
        exception = self.exception
        if not exception:
            found = _EXC_IN_TEXT.search(self.message)
            exception = found.group(0)[:500] if found else ""
        uuid = _UUID.search(exception)
        notes = [f"{self.origin} {self.message.strip()[:200].rstrip(':')}".rstrip()]
        if self.adaptor:
            notes.append(f"in {self.adaptor_frame}")
        else:
            notes.append(_JERSEY_NOTE)
        if self.operation_frame and self.operation_frame != self.adaptor_frame:
            notes.append(f"during {self.operation_frame}")
        operation = self.operation or self.weak_operation
        return LogEvent(
            kind="storage-failure", ts=self.ts, file=file, line=self.line,
            pool_uuid=uuid.group(0) if uuid else "",
            adaptor=self.adaptor or "LinstorStorageAdaptor", exception=exception,
            detail="; ".join(notes), operation=operation, pid=self.pid,
        )


class _Scanner:
    """Turns numbered lines of one file into events; state lives only within a file."""

    def __init__(self, file: str, now: float) -> None:
        self.file = file
        self.now = now
        self.mode = _NONE
        self.pending: Optional[_Trace] = None
        self.hour_base: dict[str, Optional[float]] = {}
        self.pool_types: dict[str, str] = {}
        self.delete_logged: dict[str, int] = {}
        self.delete_waiting: dict[str, _At] = {}
        self.recent_failures: dict[tuple[str, str], int] = {}

    def run(self, numbered: Iterable[tuple[int, str]]) -> Iterator[LogEvent]:
        yield from self.feed(numbered)
        yield from self.close()

    def feed(self, numbered: Iterable[tuple[int, str]]) -> Iterator[LogEvent]:
        """Events of these lines; an event still collecting its trace stays pending."""
        quiet_keys = _QUIET_KEYS
        quiet = _QUIET_FAST
        loud = _LOUD_FAST
        for n, line in numbered:
            if (line[23:24] == " " and line[29:31] == " [" and line[4:5] == "-"
                    and line[13:14] == ":"):
                level = line[24:29]
                if level in quiet:
                    if self.pending is not None:
                        yield from self.close()
                    self.mode = _SKIP
                    for key in quiet_keys:
                        if key in line:
                            yield from self.header(n, line, None, None)
                            break
                    continue
                if level in loud:
                    if self.pending is not None:
                        yield from self.close()
                    yield from self.header(n, line, None, None)
                    continue
            yield from self.other(n, line)

    def close(self) -> list[LogEvent]:
        pending, self.pending = self.pending, None
        self.mode = _NONE
        if pending is None:
            return []
        event = pending.event(self.file)
        if event is None:
            return []
        self._remember_failure(pending.logid, event)
        return [event]

    def _remember_failure(self, logid: str, event: LogEvent) -> None:
        if len(self.recent_failures) > _MAX_TRACKED:
            self.recent_failures.clear()
        self.recent_failures[(logid, event.exception)] = event.line

    def other(self, n: int, line: str) -> list[LogEvent]:
        """Everything the fast path did not recognise as a plain log4j header."""
        first = line[:1]
        if not first:
            return self.close()
        if first == "\t" or (first == "<" and "]:" not in line):
            return self.continuation(n, line)
        text = line
        if first == ">":
            text = _QUOTE.sub("", text, 1)
        if text[:1] == "\ufeff":
            text = text[1:]
        if "#011" in text:
            text = text.replace("#011", "\t")
        pid = None
        syslog = None
        if "]:" in text:
            m = _SYSLOG.match(text)
            if m is not None:
                if not _is_agent_program(m.group("prog")):
                    return []
                pid = int(m.group("pid")[:9])
                syslog = m
                text = m.group("rest")
        if not text or text.isspace():
            return self.close()
        if text[:1].isdigit():
            m = _GREP.match(text)
            if m is not None and m.end():
                text = text[m.end():]
        if text[23:24] == " " and text[4:5] == "-" and text[29:31] == " [":
            level = text[24:29]
        elif text[5:7] == " [":
            level = text[:5]
        else:
            level = ""
        if level in _QUIET_FAST:
            events = self.close()
            self.mode = _SKIP
            for key in _QUIET_KEYS:
                if key in text:
                    events.extend(self.header(n, text, syslog, pid))
                    break
            return events
        head = text.lstrip()[:1]
        if head.isdigit() or head in ("T", "D", "I", "W", "E", "F"):
            m = _HEADER.match(text)
            if m is not None:
                events = self.close()
                events.extend(self.header(n, text, syslog, pid, m))
                return events
        return self.continuation(n, text)

    def continuation(self, n: int, text: str) -> list[LogEvent]:
        if self.mode == _COLLECT and self.pending is not None:
            self.pending.feed(text)
        elif self.mode == _NONE:
            stripped = text.lstrip()
            if _EXC_START.match(stripped):
                self.pending = _Trace(n, None, None, "", "", "header-less trace fragment")
                self.pending.feed(stripped)
                self.mode = _COLLECT
        return []

    def header(self, n: int, text: str, syslog: Optional[re.Match], pid: Optional[int],
               m: Optional[re.Match] = None) -> list[LogEvent]:
        if m is None:
            m = _HEADER.match(text)
            if m is None:
                self.mode = _SKIP
                return []
        level = m.group("lvl")
        stamp = m.group("ts")
        if stamp:
            ts = _log4j_ts(stamp, self.hour_base)
        else:
            ts = _syslog_ts(syslog, self.now) if syslog is not None else None
        at = _At(n, ts, pid, m.group("thr") or "", m.group("logid") or "")
        message = m.group("msg").lstrip()
        events = self.message_events(at, level, message)
        if level in _LOUD and not events:
            self.pending = _Trace(n, at.ts, pid, at.logid, message, f"{level} [{m.group('cat')}]")
            if "\\n\\tat " in message:
                self.pending.feed_embedded(message)
            self.mode = _COLLECT
        else:
            self.mode = _SKIP
        return events

    def _event(self, at: _At, kind: str, **fields: str) -> LogEvent:
        return LogEvent(kind=kind, ts=at.ts, file=self.file, line=at.line, pid=at.pid, **fields)

    def message_events(self, at: _At, level: str, msg: str) -> list[LogEvent]:
        if "torage pool" in msg:
            events = self._pool_events(at, msg)
            if events:
                return events
        if msg.startswith("Linstor createStoragePool: "):
            m = _RX_LINSTOR_CREATE.match(msg)
            if m is None:
                return []
            self._remember_type(m.group(1), "Linstor")
            return [self._event(at, "pool-add", pool_uuid=m.group(1), pool_type="Linstor",
                                url=m.group(2), detail=msg)]
        if msg.startswith(_USING_POOL):
            return [self._event(at, "linstor-pool", pool_type="Linstor",
                                pool_uuid=msg.rpartition(": ")[2].strip())]
        if msg.startswith(_FOREIGN_PATH):
            return [self._event(at, "linstor-foreign-path", pool_type="Linstor",
                                detail=msg[len(_FOREIGN_PATH):].strip())]
        if msg.startswith("Write heartbeat for pool ["):
            return self._heartbeat(at, msg)
        if msg.startswith("Agent started"):
            return [self._event(at, "agent-start", detail=msg.strip())]
        if msg.startswith(_VERSION):
            return [self._event(at, "agent-version", detail=msg[len(_VERSION):].strip())]
        if msg.startswith(_STOPPING):
            return [self._event(at, "agent-stop", detail=msg[len(_STOPPING):].strip())]
        if msg.startswith(("Connected to the host: ", "Ready command is processed")):
            return [self._event(at, "agent-connected", detail=msg.strip())]
        if "DeleteStoragePoolCommand" in msg:
            return self._delete_command(at, msg)
        if level not in _LOUD and "\\n\\tat " in msg and (
                '"result":false' in msg or '"result":"false"' in msg):
            return self._answer_failure(at, msg)
        return []

    def _pool_events(self, at: _At, msg: str) -> list[LogEvent]:
        """LibvirtStorageAdaptor's create/remove lines; the bare DEBUG "Attempting to
        create storage pool <uuid>" repeats the INFO line before it and is not an event."""
        m = _RX_CREATE.match(msg)
        if m is not None:
            uuid, pool_type = m.group(1), m.group(2)
            self._remember_type(uuid, pool_type)
            return [self._event(at, "pool-add", pool_uuid=uuid, pool_type=pool_type, detail=msg)]
        m = _RX_FOUND.match(msg)
        if m is not None:
            return [self._event(at, "pool-add", pool_uuid=m.group(1),
                                pool_type=self.pool_types.get(m.group(1), ""), detail=msg)]
        m = _RX_REMOVE.match(msg) or _RX_REMOVED.match(msg)
        if m is not None:
            uuid = m.group(1)
            pool_type = self.pool_types.get(uuid, "")
            events = []
            waiting = self.delete_waiting.pop(at.thread, None) if m.re is _RX_REMOVE else None
            if waiting is not None:
                events.append(LogEvent(
                    kind="pool-delete-command", ts=waiting.ts, file=self.file, line=waiting.line,
                    pid=waiting.pid, pool_uuid=uuid, pool_type=pool_type,
                    detail="request line not in the log; pool named by the libvirt removal "
                           f"on the same thread (line {at.line})"))
            events.append(self._event(at, "pool-remove", pool_uuid=uuid, pool_type=pool_type,
                                      detail=msg))
            return events
        return []

    def _remember_type(self, uuid: str, pool_type: str) -> None:
        if len(self.pool_types) > 4 * _MAX_TRACKED:
            self.pool_types.clear()
        self.pool_types[uuid] = pool_type

    def _heartbeat(self, at: _At, msg: str) -> list[LogEvent]:
        m = _RX_HEARTBEAT.match(msg)
        if m is None:
            return []
        uuid, rest = m.group(1), m.group(2).rstrip()
        if rest.endswith(_HB_STOPPING):
            detail = f"stopping cloudstack-agent: {rest[:-len(_HB_STOPPING)]}"
        else:
            attempt = _RX_TRY.search(rest)
            detail = (f"try {attempt.group(1)} of {attempt.group(2)}: {rest[:attempt.start()]}"
                      if attempt else rest)
        return [self._event(at, "heartbeat-failure", pool_uuid=uuid,
                            pool_type=self.pool_types.get(uuid, ""), detail=detail)]

    def _delete_command(self, at: _At, msg: str) -> list[LogEvent]:
        """Request lines name the pool; a bare `Processing command:` line (its request
        line cut from an excerpt) waits for the libvirt removal on its thread to name it."""
        start = msg.find('"com.cloud.agent.api.DeleteStoragePoolCommand"')
        if start >= 0:
            start = msg.find('"_pool":{', start)
            end = msg.find("}", start)
            body = msg[start:end] if 0 <= start < end else ""
            uuid = _RX_JSON_UUID.search(body)
            if uuid is None:
                return []
            found_type = _RX_JSON_TYPE.search(body)
            pool_type = found_type.group(1) if found_type else ""
            host = _RX_JSON_HOST.search(body)
            if len(self.delete_logged) > _MAX_TRACKED:
                self.delete_logged.clear()
            self.delete_logged[at.thread] = at.line
            self._remember_type(uuid.group(1), pool_type)
            return [self._event(at, "pool-delete-command", pool_uuid=uuid.group(1),
                                pool_type=pool_type,
                                url=host.group(1) if host and pool_type == "Linstor" else "",
                                detail="DeleteStoragePoolCommand request")]
        waiting = (msg.startswith("Processing command: ")
                   and msg.rstrip().endswith("DeleteStoragePoolCommand")
                   and self.delete_logged.pop(at.thread, None) is None)
        if waiting:
            if len(self.delete_waiting) > _MAX_TRACKED:
                self.delete_waiting.clear()
            self.delete_waiting[at.thread] = at
        return []

    def _answer_failure(self, at: _At, msg: str) -> list[LogEvent]:
        """A failed Answer carries the trace the `Caught:` record already logged; it is
        an event of its own only when that record is not in the log (an excerpt)."""
        trace = _Trace(at.line, at.ts, at.pid, at.logid, "", "trace embedded in a failed Answer")
        trace.feed_embedded(msg)
        found = trace.event(self.file)
        if found is None:
            return []
        seen = self.recent_failures.get((at.logid, found.exception))
        if seen is not None and at.line - seen < 5000:
            return []
        self._remember_failure(at.logid, found)
        return [found]


def _numbered_lines(stream: io.BufferedIOBase, report: _ReadReport, name: str
                   ) -> Iterator[tuple[int, str]]:
    """Physical lines, decoded leniently and capped; a read error ends the file quietly
    (recorded in the report) so the events before it still count."""
    n = 0
    readline = stream.readline
    try:
        while True:
            raw = readline(MAX_LINE_BYTES)
            if not raw:
                break
            n += 1
            if raw[-1:] != b"\n" and len(raw) >= MAX_LINE_BYTES:
                while True:
                    rest = readline(MAX_LINE_BYTES)
                    if not rest or rest[-1:] == b"\n":
                        break
            yield n, raw.decode("utf-8", "replace").rstrip()
    except _READ_ERRORS as exc:
        report.problems.append(f"{name}: read stopped at line {n + 1} ({_reason(exc)})")
    finally:
        report.lines += n


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed file is truncated"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _open(path: str, report: _ReadReport) -> Optional[io.BufferedReader]:
    try:
        return open(path, "rb")
    except OSError as exc:
        report.problems.append(f"{path}: cannot open ({_reason(exc)})")
        return None


def _iter_file(path: str, report: _ReadReport, now: float) -> Iterator[LogEvent]:
    raw = _open(path, report)
    if raw is None:
        return
    with raw:
        try:
            magic = raw.peek(2)[:2]
        except _READ_ERRORS as exc:
            report.problems.append(f"{path}: cannot read ({_reason(exc)})")
            return
        report.files.append(path)
        if magic != _GZIP_MAGIC:
            yield from _Scanner(path, now).run(_numbered_lines(raw, report, path))
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield from _Scanner(path, now).run(_numbered_lines(unzipped, report, path))


def iter_events(paths: Iterable[str], problems: Optional[list[str]] = None, *,
                now: Optional[float] = None) -> Iterator[LogEvent]:
    """Events of the files in the order given (plain or gzip, told by magic bytes).

    Never raises for content or I/O: a file that cannot be opened or read to its end is
    described in `problems` (when given, as soon as it happens) and the events before the
    fault still come out. `now` anchors the year of syslog stamps that lack one; default:
    the current time.
    """
    report = _ReadReport(problems)
    when = time.time() if now is None else now
    for path in paths:
        yield from _iter_file(path, report, when)


def parse_lines(lines: Iterable[str], file: str = "", *,
                now: Optional[float] = None) -> Iterator[LogEvent]:
    """Events of in-memory lines (stdin, tests); each item is one physical line."""
    cap = MAX_LINE_BYTES
    numbered = ((n, line[:cap].rstrip()) for n, line in enumerate(lines, 1))
    return _Scanner(file, time.time() if now is None else now).run(numbered)


class IncrementalParser:
    """For a log that is still being written: lines go in as they arrive, and the
    follower flushes when the file goes quiet, since the last event's stack trace has
    no next header line to end it."""

    def __init__(self, file: str) -> None:
        self._scanner = _Scanner(file, time.time())
        self._line = 0

    def feed(self, lines: Iterable[str]) -> list[LogEvent]:
        self._scanner.now = time.time()
        numbered = []
        for line in lines:
            self._line += 1
            numbered.append((self._line, line[:MAX_LINE_BYTES].rstrip()))
        return list(self._scanner.feed(numbered))

    def flush(self) -> list[LogEvent]:
        return self._scanner.close()

    def restart(self, file: str) -> list[LogEvent]:
        """A new file (rotation): what was pending belongs to the old one."""
        pending = self.flush()
        self._scanner = _Scanner(file, time.time())
        self._line = 0
        return pending


_ROTATED_NUMBER = re.compile(r"\.(\d{1,6})(?:\.gz)?")
_ROTATED_DATE = re.compile(r"[.-](\d{4})-?(\d\d)-?(\d\d)(?:[-_.]?(\d{1,6}))?(?:\.gz)?")


def log_set(path: str) -> list[str]:
    """The rotated set of a log, oldest first and the current file last.

    Knows logrotate's numbered names (`agent.log.1`, `agent.log.2.gz`) and dateext names
    (`agent.log-20240101[.gz]`), and log4j's own time-based names
    (`agent.log.2024-01-01[.gz]`). When both schemes are present, modification times
    order them.
    """
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        names = []
    numbered: list[tuple[tuple[int, ...], str]] = []
    dated: list[tuple[tuple[int, ...], str]] = []
    for name in names:
        if not name.startswith(base) or name == base:
            continue
        suffix = name[len(base):]
        m = _ROTATED_NUMBER.fullmatch(suffix)
        if m:
            numbered.append(((-int(m.group(1)),), os.path.join(directory, name)))
            continue
        m = _ROTATED_DATE.fullmatch(suffix)
        if m:
            key = tuple(int(g or 0) for g in m.groups())
            dated.append((key, os.path.join(directory, name)))
    if numbered and dated:
        def age(item: tuple[tuple[int, ...], str]) -> tuple[float, str]:
            try:
                return (os.stat(item[1]).st_mtime, item[1])
            except OSError:
                return (0.0, item[1])
        rotated = [p for _, p in sorted(numbered + dated, key=age)]
    else:
        rotated = [p for _, p in sorted(numbered or dated)]
    if os.path.isfile(path):
        rotated.append(path)
    return rotated


def read_agent_log(path: str, since: Optional[float] = None
                   ) -> tuple[list[LogEvent], SourceStatus]:
    """Events of the whole rotated set, for `check`.

    `since` only lets whole rotated files be skipped when they were last written before
    it (their modification time bounds their last line); events are not filtered by it.
    The status is ok only when the current file was read to its end: without it, the
    absence of an event proves nothing.
    """
    files = log_set(path)
    skipped = 0
    if since is not None:
        kept = []
        for name in files:
            try:
                old = name != path and os.stat(name).st_mtime < since
            except OSError:
                old = False
            if old:
                skipped += 1
            else:
                kept.append(name)
        files = kept
    report = _ReadReport()
    now = time.time()
    events: list[LogEvent] = []
    for name in files:
        events.extend(_iter_file(name, report, now))
    current_problem = next((p for p in report.problems if p.startswith(f"{path}:")), "")
    parts = []
    if report.files:
        rotated = len([f for f in report.files if f != path])
        parts.append(f"read {len(report.files)} file(s) ({rotated} rotated): "
                     f"{report.lines} lines, {len(events)} events")
    if skipped and since is not None:
        parts.append(f"skipped {skipped} rotated file(s) last written before {_when(since)}")
    if report.problems:
        parts.append("problems: " + "; ".join(report.problems))
    if not os.path.lexists(path):
        parts.insert(0, f"{path} not found: is cloudstack-agent installed and logging there? "
                        "If it logs elsewhere, set [agent] log in /etc/cloudstack-guard/guard.toml")
        return events, SourceStatus(SOURCE_NAME, False, "; ".join(parts))
    if path not in report.files or current_problem:
        fix = ("run cloudstack-guard as root (the agent log is readable by root only)"
               if "ermission" in current_problem else "check the file and the disk")
        parts.append(fix)
        return events, SourceStatus(SOURCE_NAME, False, "; ".join(parts))
    return events, SourceStatus(SOURCE_NAME, True, "; ".join(parts))
