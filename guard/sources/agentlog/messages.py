"""The agent's messages that are events: pool create/remove (LibvirtStorageAdaptor,
LinstorStorageAdaptor), the LINSTOR adaptor's pool and foreign-path lines, KVMHAMonitor's
heartbeat failures, AgentShell's start/version/stop, Agent's reconnect, and
DeleteStoragePoolCommand requests. The strings are the agent's own (apache/cloudstack),
with the spellings older releases used."""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional

from guard.model import LogEvent

from .traces import Trace

MAX_TRACKED = 256
LOUD = frozenset(("WARN", "ERROR", "FATAL"))
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

_FOREIGN_PATH = "Linstor: Couldn't find resource for this path: "
_USING_POOL = ("Linstor: Using storage pool: ", "Linstor: Using storpool: ")
_VERSION = "Implementation Version is "
_STOPPING = "Stopping the agent: Reason = "
_HB_STOPPING = "; stopping cloudstack-agent."
class At(NamedTuple):
    """Where and when a record was written, shared by the events it yields."""

    line: int
    ts: Optional[float]
    pid: Optional[int]
    thread: str
    logid: str



def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _whole(value: Any) -> int:
    """A line number or a pid: a whole number, never negative."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a line number")
    return value


class Messages:
    """What one file's messages say; remembers, within the file, pool types by uuid and
    the requests and failures a later line completes or repeats."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.pool_types: dict[str, str] = {}
        self.delete_logged: dict[str, int] = {}
        self.delete_waiting: dict[str, At] = {}
        self.recent_failures: dict[tuple[str, str], int] = {}

    def state(self) -> dict[str, Any]:
        """What a later line of this file may still complete or repeat, for a reader that
        goes on from here in another run."""
        return {
            "pool_types": dict(self.pool_types),
            "delete_logged": dict(self.delete_logged),
            "delete_waiting": {thread: list(at) for thread, at in self.delete_waiting.items()},
            "recent_failures": [[logid, exception, line]
                                for (logid, exception), line in self.recent_failures.items()],
        }

    def resume(self, state: Any) -> None:
        """Raises ValueError (or TypeError) for a state this code did not write."""
        if not isinstance(state, dict):
            raise ValueError("message state is not an object")
        self.pool_types = {str(k): _text(v) for k, v in state["pool_types"].items()}
        self.delete_logged = {str(k): _whole(v) for k, v in state["delete_logged"].items()}
        self.delete_waiting = {
            str(k): At(_whole(line), None if ts is None else float(ts), None if pid is None else _whole(pid),
                       _text(thread), _text(logid))
            for k, (line, ts, pid, thread, logid) in state["delete_waiting"].items()}
        self.recent_failures = {(_text(logid), _text(exception)): _whole(line)
                                for logid, exception, line in state["recent_failures"]}

    def remember_failure(self, logid: str, event: LogEvent) -> None:
        if len(self.recent_failures) > MAX_TRACKED:
            self.recent_failures.clear()
        self.recent_failures[(logid, event.exception)] = event.line

    def _event(self, at: At, kind: str, **fields: str) -> LogEvent:
        return LogEvent(kind=kind, ts=at.ts, file=self.file, line=at.line, pid=at.pid, **fields)

    def events(self, at: At, level: str, msg: str) -> list[LogEvent]:
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
        if level not in LOUD and "\\n\\tat " in msg and (
                '"result":false' in msg or '"result":"false"' in msg):
            return self._answer_failure(at, msg)
        return []

    def _pool_events(self, at: At, msg: str) -> list[LogEvent]:
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
        if len(self.pool_types) > 4 * MAX_TRACKED:
            self.pool_types.clear()
        self.pool_types[uuid] = pool_type

    def _heartbeat(self, at: At, msg: str) -> list[LogEvent]:
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

    def _delete_command(self, at: At, msg: str) -> list[LogEvent]:
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
            if len(self.delete_logged) > MAX_TRACKED:
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
            if len(self.delete_waiting) > MAX_TRACKED:
                self.delete_waiting.clear()
            self.delete_waiting[at.thread] = at
        return []

    def _answer_failure(self, at: At, msg: str) -> list[LogEvent]:
        """A failed Answer carries the trace the `Caught:` record already logged; it is
        an event of its own only when that record is not in the log (an excerpt)."""
        trace = Trace(at.line, at.ts, at.pid, at.logid, "", "trace embedded in a failed Answer")
        trace.feed_embedded(msg)
        found = trace.event(self.file)
        if found is None:
            return []
        seen = self.recent_failures.get((at.logid, found.exception))
        if seen is not None and at.line - seen < 5000:
            return []
        self.remember_failure(at.logid, found)
        return [found]
