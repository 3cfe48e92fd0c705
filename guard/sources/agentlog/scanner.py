"""Lines of one file into events: the fast path for plain log4j headers, the other
shapes (syslog captures, quotes, `grep -n` prefixes), and the trace that follows a
WARN/ERROR record. State lives only within a file."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from guard.model import LogEvent

from .messages import LOUD, At, Messages
from .stamps import GREP, HEADER, QUOTE, SYSLOG, is_agent_program, log4j_ts, syslog_ts
from .traces import EXC_START, Trace

_NONE, _SKIP, _COLLECT = 0, 1, 2
_QUIET_FAST = frozenset(("DEBUG", "INFO ", "TRACE"))

# Substrings of every INFO/DEBUG message that can make an event; a line with none of
# them is skipped without further work. Each `in` test costs a quiet line about 35 ns
# whatever it finds, so keys that share a substring are tried only when a line holds it:
# a group's anchor is in each of its keys. The pool keys are LibvirtStorageAdaptor's
# messages that are events (messages.py), not "storage pool" alone: at DEBUG the adaptor
# also logs "Trying to fetch storage pool ..." on every pool lookup, four lines in ten of
# a busy host's log.
_QUIET_KEYS = (
    "removed from libvirt",
    "Agent started",
    "Implementation Version is",
    "Stopping the agent",
    "Connected to the host",
    "Ready command is processed",
    "DeleteStoragePoolCommand",
    "\\n\\tat ",
)
_QUIET_GROUPS = (
    ("torage pool", ("to create storage pool", "existing defined storage pool", "to remove storage pool")),
    ("Linstor", ("Linstor createStoragePool", "Linstor: Using stor")),
)
_HEAD_LEVELS = {f" {level:<5} [": (level in ("DEBUG", "INFO", "TRACE"))
                for level in ("DEBUG", "INFO", "TRACE", "WARN", "ERROR", "FATAL")}
"""Characters 23-30 of a plain log4j header (the space after the stamp, the padded
level, " ["): True for a quiet level, False for a loud one."""


def _keyed(text: str) -> bool:
    for key in _QUIET_KEYS:
        if key in text:
            return True
    for anchor, keys in _QUIET_GROUPS:
        if anchor in text:
            for key in keys:
                if key in text:
                    return True
    return False


class Scanner:
    """Turns numbered lines of one file into events; state lives only within a file."""

    def __init__(self, file: str, now: float) -> None:
        self.file = file
        self.now = now
        self.mode = _NONE
        self.pending: Optional[Trace] = None
        self.hour_base: dict[str, Optional[float]] = {}
        self.messages = Messages(file)

    def state(self) -> dict[str, Any]:
        """Where this file's reading stands between two lines: a later run resumes it
        (guard/sources/agentlog/cursor.py) and reads on as if it had never stopped."""
        return {"mode": self.mode, "pending": self.pending.state() if self.pending else None,
                "messages": self.messages.state()}

    @classmethod
    def resumed(cls, file: str, now: float, state: Any) -> Scanner:
        """Raises ValueError for a state this code did not write."""
        scanner = cls(file, now)
        try:
            mode, pending = state["mode"], state["pending"]
            if mode not in (_NONE, _SKIP, _COLLECT) or isinstance(mode, bool):
                raise ValueError(f"scanner mode {mode!r}")
            scanner.mode = mode
            scanner.pending = None if pending is None else Trace.resumed(pending)
            scanner.messages.resume(state["messages"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"scanner state: {exc}") from None
        return scanner

    def run(self, numbered: Iterable[tuple[int, str]]) -> Iterator[LogEvent]:
        yield from self.feed(numbered)
        yield from self.close()

    def feed(self, numbered: Iterable[tuple[int, str]]) -> Iterator[LogEvent]:
        """Events of these lines (stripped of trailing blanks); an event still collecting
        its trace stays pending. The quiet line without a key, most of any log, costs one
        slice, one lookup and the key tests, written out here: a call per line would cost
        more than they do."""
        keys = _QUIET_KEYS
        groups = _QUIET_GROUPS
        levels = _HEAD_LEVELS
        for n, line in numbered:
            quiet = levels.get(line[23:31])
            if quiet is not None and line[4:5] == "-" and line[13:14] == ":":
                if self.pending is not None:
                    yield from self.close()
                if quiet:
                    self.mode = _SKIP
                    for key in keys:
                        if key in line:
                            break
                    else:
                        for anchor, grouped in groups:
                            if anchor in line and any(key in line for key in grouped):
                                break
                        else:
                            continue
                yield from self.header(n, line, None, None)
                continue
            yield from self.other(n, line)

    def skipped_quiet(self) -> list[LogEvent]:
        """What quiet lines without a key do to the reading, however many: a pending
        trace ends, and what follows is no trace of theirs (sieve.py skips them)."""
        events = self.close() if self.pending is not None else []
        self.mode = _SKIP
        return events

    def close(self) -> list[LogEvent]:
        pending, self.pending = self.pending, None
        self.mode = _NONE
        if pending is None:
            return []
        event = pending.event(self.file)
        if event is None:
            return []
        self.messages.remember_failure(pending.logid, event)
        return [event]

    def other(self, n: int, line: str) -> list[LogEvent]:
        """Everything the fast path did not recognise as a plain log4j header."""
        first = line[:1]
        if not first:
            return self.close()
        if first == "\t" or (first == "<" and "]:" not in line):
            return self.continuation(n, line)
        text = line
        if first == ">":
            text = QUOTE.sub("", text, 1)
        if text[:1] == "\ufeff":
            text = text[1:]
        if "#011" in text:
            text = text.replace("#011", "\t")
        pid = None
        syslog = None
        if "]:" in text:
            m = SYSLOG.match(text)
            if m is not None:
                if not is_agent_program(m.group("prog")):
                    return []
                pid = int(m.group("pid")[:9])
                syslog = m
                text = m.group("rest")
        if not text or text.isspace():
            return self.close()
        if text[:1].isdigit():
            m = GREP.match(text)
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
            if _keyed(text):
                events.extend(self.header(n, text, syslog, pid))
            return events
        head = text.lstrip()[:1]
        if head.isdigit() or head in ("T", "D", "I", "W", "E", "F"):
            m = HEADER.match(text)
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
            if EXC_START.match(stripped):
                self.pending = Trace(n, None, None, "", "", "header-less trace fragment")
                self.pending.feed(stripped)
                self.mode = _COLLECT
        return []

    def header(self, n: int, text: str, syslog: Optional[re.Match[str]], pid: Optional[int],
               m: Optional[re.Match[str]] = None) -> list[LogEvent]:
        if m is None:
            m = HEADER.match(text)
            if m is None:
                self.mode = _SKIP
                return []
        level = m.group("lvl")
        stamp = m.group("ts")
        if stamp:
            ts = log4j_ts(stamp, self.hour_base)
        else:
            ts = syslog_ts(syslog, self.now) if syslog is not None else None
        at = At(n, ts, pid, m.group("thr") or "", m.group("logid") or "")
        message = m.group("msg").lstrip()
        events = self.messages.events(at, level, message)
        if level in LOUD and not events:
            self.pending = Trace(n, at.ts, pid, at.logid, message, f"{level} [{m.group('cat')}]")
            if "\\n\\tat " in message:
                self.pending.feed_embedded(message)
            self.mode = _COLLECT
        else:
            self.mode = _SKIP
        return events
