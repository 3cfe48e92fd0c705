"""agent.properties, read the way the agent reads it.

The agent loads the file with java.util.Properties.load, so the guard must apply the same
rules (continuations, escapes, `:` and whitespace separators, last duplicate wins) or it
would see other management servers, another port or another guid than the agent does.
Unlike Java it never throws: a malformed `\\uXXXX` escape is kept as literal text and
noted, because a half-read config is better evidence than none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional

from guard.model import HEARTBEAT_RETRY_SLEEP_S, SourceStatus

SOURCE_NAME = "agent-properties"
DEFAULT_PORT = 8250
MAX_BYTES = 1 << 20
"""agent.properties is a few kilobytes; a bigger file is not one, and reading it whole
(say a path that points at a device) must not exhaust memory."""

_WHITESPACE = " \t\f"
_SEPARATORS = "=:"
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_HEX = frozenset("0123456789abcdefABCDEF")


def _natural_lines(text: str) -> list[str]:
    """Split on \\n, \\r and \\r\\n only: str.splitlines also breaks on \\v, \\x1c, \\u2028
    and others, which Properties keeps inside a line."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _logical_lines(text: str) -> list[str]:
    """Join continuations the way Properties.LineReader does: an odd number of trailing
    backslashes continues onto the next natural line, whose leading whitespace is
    dropped; comment and blank lines are skipped only where a logical line starts. As in
    Java, a continued line that is still empty when a blank line ends it is dropped, but
    one ended by the end of the file is an empty key."""
    logical = []
    current: Optional[list[str]] = None
    for raw in _natural_lines(text):
        line = raw.lstrip(_WHITESPACE)
        if current is None:
            if not line or line[0] in "#!":
                continue
            current = []
        elif not line:
            joined = "".join(current)
            if joined:
                logical.append(joined)
            current = None
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:
            current.append(line[:-1])
        else:
            current.append(line)
            logical.append("".join(current))
            current = None
    if current is not None:
        logical.append("".join(current))
    return logical


def _unescape(text: str, notes: list[str]) -> str:
    """Properties.loadConvert: \\t \\n \\r \\f and \\uXXXX; a backslash before any other
    character yields that character."""
    if "\\" not in text:
        return text
    out = []
    i, end = 0, len(text)
    while i < end:
        c = text[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        if i >= end:
            break
        c = text[i]
        i += 1
        if c == "u":
            digits = text[i:i + 4]
            if len(digits) == 4 and all(d in _HEX for d in digits):
                out.append(chr(int(digits, 16)))
                i += 4
            else:
                notes.append(f"malformed \\u escape kept as text: \\u{digits}")
                out.append("\\u")
        else:
            out.append(_SIMPLE_ESCAPES.get(c, c))
    joined = "".join(out)
    if any("\ud800" <= ch <= "\udfff" for ch in joined):
        joined = joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return joined


def _split_key_value(line: str) -> tuple[str, str]:
    """Properties.load0: the key ends at the first unescaped `=`, `:` or whitespace;
    whitespace around the separator and one `=` or `:` after whitespace are skipped."""
    key_end = len(line)
    value_start = len(line)
    has_separator = False
    backslash = False
    for i, c in enumerate(line):
        if not backslash and c in _SEPARATORS:
            key_end, value_start, has_separator = i, i + 1, True
            break
        if not backslash and c in _WHITESPACE:
            key_end, value_start = i, i + 1
            break
        backslash = (c == "\\") and not backslash
    while value_start < len(line):
        c = line[value_start]
        if c not in _WHITESPACE:
            if has_separator or c not in _SEPARATORS:
                break
            has_separator = True
        value_start += 1
    return line[:key_end], line[value_start:]


def parse_properties_notes(text: str) -> tuple[dict[str, str], list[str]]:
    """parse_properties plus what Java would have rejected (malformed escapes)."""
    values: dict[str, str] = {}
    notes: list[str] = []
    for line in _logical_lines(text):
        key, value = _split_key_value(line)
        values[_unescape(key, notes)] = _unescape(value, notes)
    return values, notes


def parse_properties(text: str) -> dict[str, str]:
    """java.util.Properties.load semantics on text; never raises."""
    return parse_properties_notes(text)[0]


@dataclass(frozen=True)
class AgentProperties:
    """What the agent reads at start from agent.properties, in the agent's terms.

    `hosts` are the management servers the agent connects to, in order: the `host` value
    with the `@<lb algorithm>` suffix the management server appends removed, split on
    commas (Java does not trim entries; blanks are dropped here since they cannot
    connect). The agent connects to every entry on `port`: entries carry no port.
    """

    path: str
    values: Mapping[str, str]
    hosts: tuple[str, ...]
    port: int
    guid: str
    zone: str
    pod: str
    cluster: str
    local_storage_uuids: tuple[str, ...]
    lb_algorithm: str = ""
    notes: tuple[str, ...] = ()


def _shown(value: str) -> str:
    """A value as a one-line status can carry it: an escape like `\\n` puts a control
    character in a value, and the status must show it rather than break its line."""
    return value if value.isprintable() else repr(value)


def _placeholder(value: str) -> bool:
    """Unconfigured packaging templates carry `@NAME@`; AgentShell treats them as unset."""
    return len(value) >= 2 and value.startswith("@") and value.endswith("@")


def _port(raw: Optional[str], notes: list[str]) -> int:
    """NumberUtils.toInt(port, 8250): Integer.parseInt accepts a sign and any Unicode
    decimal digits; anything else, or a number that is no TCP port, means the default."""
    if raw is None:
        return DEFAULT_PORT
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if digits.isdecimal() and 0 < int(text) < 65536:
        return int(text)
    notes.append(f"port {raw!r} is not a usable port; the agent falls back to {DEFAULT_PORT}")
    return DEFAULT_PORT


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def agent_properties(path: str, values: Mapping[str, str],
                     notes: Optional[list[str]] = None) -> AgentProperties:
    """Interpret parsed values as the agent would (AgentShell.parseCommand)."""
    notes = list(notes or ())
    raw_host = values.get("host")
    lb_algorithm = ""
    if raw_host is None:
        hosts: tuple[str, ...] = ("localhost",)
        notes.append("host is not set; the agent falls back to localhost")
    elif _placeholder(raw_host.strip()):
        hosts = ()
        notes.append(f"host is the unconfigured placeholder {_shown(raw_host.strip())}")
    else:
        listed, _, lb_algorithm = raw_host.partition("@")
        hosts = _comma_list(listed)
        if not hosts:
            notes.append("host lists no management server")
    guid = values.get("guid", "")
    if not guid:
        notes.append("guid is not set; the agent refuses to start without one")
    fields = {}
    for name in ("zone", "pod", "cluster"):
        value = values.get(name, "")
        fields[name] = "" if _placeholder(value) else value
    return AgentProperties(
        path=path,
        values=MappingProxyType(dict(values)),
        hosts=hosts,
        port=_port(values.get("port"), notes),
        guid=guid,
        zone=fields["zone"],
        pod=fields["pod"],
        cluster=fields["cluster"],
        local_storage_uuids=_comma_list(values.get("local.storage.uuid", "")),
        lb_algorithm=lb_algorithm.strip(),
        notes=tuple(notes),
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_JAVA_LONG_MAX = 2**63 - 1


def heartbeat_retry_sleep_s(props: Optional[AgentProperties]) -> float:
    """kvm.heartbeat.update.retry.sleep in seconds, as KVMHABase reads it through
    AgentPropertiesFileHandler.getPropertyValue: milliseconds as a Long, and the default
    (10000) when the file or the key is missing, the value blank, or not a number
    (commons-beanutils' LongConverter with a default answers the default), as is one past
    a Long. A negative sleep, which Thread.sleep refuses, is taken as the default too.
    The agent reads it once, at its start: an edit takes effect at its next restart."""
    raw = props.values.get("kvm.heartbeat.update.retry.sleep", "") if props else ""
    text = raw.strip()
    digits = text[1:] if text[:1] == "+" else text
    if not digits.isascii() or not digits.isdigit() or int(digits) > _JAVA_LONG_MAX:
        return HEARTBEAT_RETRY_SLEEP_S
    return int(digits) / 1000.0


def read_agent_properties(path: str) -> tuple[Optional[AgentProperties], SourceStatus]:
    """The agent's configuration, or why it could not be read and what to do about it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None, SourceStatus(SOURCE_NAME, False, (
            f"{path} not found: is cloudstack-agent installed and set up on this host? If its "
            "configuration lives elsewhere, set [agent] properties in "
            "/etc/cloudstack-guard/guard.toml"))
    except PermissionError:
        return None, SourceStatus(SOURCE_NAME, False, (
            f"cannot read {path}: permission denied; run cloudstack-guard as root "
            "(the file holds the keystore passphrase and is root-only)"))
    except OSError as exc:
        return None, SourceStatus(SOURCE_NAME, False, (
            f"cannot read {path}: {exc.strerror or exc}; check that it is a regular file"))
    notes = []
    if len(data) > MAX_BYTES:
        data = data[:MAX_BYTES]
        notes.append(f"only the first {MAX_BYTES} bytes were read")
    values, parse_notes = parse_properties_notes(_decode(data))
    props = agent_properties(path, values, notes + parse_notes)
    detail = (f"read {path}: {len(values)} keys; management servers "
              f"{', '.join(_shown(host) for host in props.hosts) or '(none)'} port {props.port}")
    if props.notes:
        detail += "; " + "; ".join(props.notes)
    return props, SourceStatus(SOURCE_NAME, True, detail)
