"""Stack traces judged line by line as they go by (none is kept in memory): is a storage
adaptor or the storage REST client in it, which exception, and what the agent was doing
(disk cleanup on a VM stop, a pool create or delete)."""

from __future__ import annotations

import re
from typing import Any, Optional

from guard.model import LogEvent

MAX_TRACE_LINES = 400
EXC_START = re.compile(
    r"(?:Caused by: )?(?:[A-Za-z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)\b"
)
EXC_IN_TEXT = re.compile(r"(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)\b[^\"]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

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
_OPTIONAL_STATE: dict[str, type] = {"ts": float, "pid": int}
_JERSEY_NOTE = ("adaptor inferred from the Jersey client failure "
                "(only the LINSTOR adaptor uses that client in the agent)")


class Trace:
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

    def state(self) -> dict[str, Any]:
        """Everything judged so far: a reader that stops mid-trace (the log's end) and a
        later one that goes on from there judge the trace as one reader would."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def resumed(cls, state: Any) -> Trace:
        """Raises ValueError for a state this code did not write."""
        if not isinstance(state, dict) or set(state) != set(cls.__slots__):
            raise ValueError("trace state has other fields")
        trace = cls(0, None, None, "", "", "")
        for name in cls.__slots__:
            value = state[name]
            kind = _OPTIONAL_STATE.get(name)
            if kind is not None and value is None:
                continue
            kind = kind or type(getattr(trace, name))
            accepted = (int, float) if kind is float else kind
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
                raise ValueError(f"trace state {name} is not a {kind.__name__}")
            if kind is int and isinstance(value, int) and value < 0:
                raise ValueError(f"trace state {name} is negative")
            setattr(trace, name, float(value) if isinstance(value, (int, float)) and kind is float else value)
        return trace

    def feed(self, text: str) -> None:
        if self.lines >= MAX_TRACE_LINES:
            return
        self.lines += 1
        t = text.strip()
        if t.startswith("at "):
            self._frame(t)
        elif t.startswith("Caused by: "):
            self._exception_evidence(t)
        elif not self.exception and EXC_START.match(t):
            self.exception = t[:500]
            self._exception_evidence(t)

    def feed_embedded(self, message: str) -> None:
        """A trace flattened into one line (an Answer's JSON `details`: `\\n\\tat ...`)."""
        pieces = message.split("\\n")
        found = EXC_IN_TEXT.search(pieces[0])
        if found and not self.exception:
            self.exception = found.group(0).rstrip("\\")[:500]
            self._exception_evidence(self.exception)
        for piece in pieces[1:MAX_TRACE_LINES]:
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
            found = EXC_IN_TEXT.search(self.message)
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
