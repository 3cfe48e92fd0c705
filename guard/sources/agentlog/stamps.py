"""The shapes a log line comes in, and its timestamp: log4j headers (log4j 1 and 2),
journald and rsyslog captures with their program and pid, markdown quotes and `grep -n`
prefixes from tickets. log4j and BSD syslog stamps are host-local wall time."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

HEADER = re.compile(
    r"\s*(?:(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)\s+)?"
    r"(?P<lvl>TRACE|DEBUG|INFO|WARN|ERROR|FATAL)\s+\[(?P<cat>[^\]]*)\]\s?"
    r"(?:\((?P<thr>[^()]*)\)\s?)?(?:\(logid:(?P<logid>[^()]*)\)\s?)?(?P<msg>.*)",
    re.S,
)
SYSLOG = re.compile(
    r"(?:(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<day>\d{1,2}) "
    r"(?P<hms>\d\d:\d\d:\d\d)"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?))?"
    r"\s*(?P<host><[^<>]*>|[^\s<>\[\]]+) (?P<prog>[^\s\[\]:]+)\[(?P<pid>\d+)\]: ?(?P<rest>.*)",
    re.S,
)
QUOTE = re.compile(r"(?:>[ ]?)+")
GREP = re.compile(
    r"(?:[^\s:]+:)?(?:\d+[:-])?(?=\d{4}-\d\d-\d\d[ T]\d\d:)"
    r"|\d+[:-](?=\s+at |\s+\.\.\. \d+ more|(?:Caused by: )?(?:[A-Za-z_$][\w$]*\.)+[\w$]*"
    r"(?:Exception|Error|Throwable)\b)"
)
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$"
)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_AGENT_PROGRAMS = ("java", "jsvc", "cloudstack", "agent")


def _mktime(year: int, mon: int, day: int, hour: int, minute: int, sec: int) -> Optional[float]:
    try:
        return time.mktime((year, mon, day, hour, minute, sec, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def iso_ts(text: str) -> Optional[float]:
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


def syslog_ts(m: re.Match[str], now: float) -> Optional[float]:
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
        return iso_ts(m.group("iso"))
    return None


def log4j_ts(stamp: str, hour_base: dict[str, Optional[float]]) -> Optional[float]:
    """log4j writes host-local wall time; one mktime per distinct hour, arithmetic after."""
    if len(stamp) != 23 or stamp[19] not in ",.":
        return iso_ts(stamp)
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


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def is_agent_program(prog: str) -> bool:
    return prog.startswith(_AGENT_PROGRAMS)
