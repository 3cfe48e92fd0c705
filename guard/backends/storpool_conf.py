"""What StorPool says on this host, read the way StorPool and the agent read it: its
config files, `storpool_confget`'s lines, and the ServicesList JSON that both the API and
`storpool -j service list` answer. Pure functions: nothing here raises or does I/O but
read_conf's reading of the config files.

The agent never reads storpool.conf: it asks `storpool_confget` (StorPoolStoragePool
.getStorPoolConfigParam for SP_OURID, StorPoolUtil.SpConnectionDesc for the API when a
pool URL names only a template), and the `storpool` CLI its HA heartbeat runs resolves
the same files. So the guard follows StorPool's rules, from python-storpool's
storpool/spconfig.py (SPConfig.get_config_files, run_confget) and the confget INI
parser it uses (confget/backend/ini_re.py):

- files: the main file, then `<main>.d/*.conf` in sorted order, dot-files skipped; in
  each file the lines outside any section, then the section named after this host
  (platform.node(), the full node name: no short-name fallback, which is why
  OpenNebula's addon-storpool asks for `host` and `host.domain` one after the other);
  a later setting wins;
- lines: `[ name ]` starts a section; blank lines and lines whose first non-blank is
  `#` or `;` are comments (a `#` later in a line is part of the value); `KEY = VALUE`
  with the blanks around `=` and at the end dropped; a trailing backslash continues the
  value on the next line; quotes are NOT removed, so the guard sends the token exactly
  as the CLI does;
- defaults: SP_API_HTTP_HOST 127.0.0.1, SP_API_HTTP_PORT 81 (spconfig.DEFAULTS).

StorPool refuses a file with a line it cannot read; the guard skips such lines and
counts them, because a monitoring probe must still answer.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

from guard.backends.wire import ProbeError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 81
MAX_CONF_BYTES = 1024 * 1024
"""A StorPool config is a few kilobytes; more is not one."""

_COMMENT = re.compile(r"^\s*(?:[#;].*)?$")
_SECTION = re.compile(r"^\s*\[\s*(?P<name>[^\]]+?)\s*\]\s*$")
_VARIABLE = re.compile(r"^\s*(?P<name>[^\s=]+)\s*=\s*(?P<value>.*?)(?P<cont>\\)?$")
_NEWLINE = re.compile(r"\r\n|\r|\n")
"""Line ends as Python's text files and Java's BufferedReader.readLine both see them."""


@dataclass(frozen=True)
class ParsedFile:
    values: dict[str, str]
    """What this file sets for this host: its unsectioned lines, then this host's section."""
    unreadable: tuple[int, ...] = ()
    """Line numbers StorPool's parser would refuse the file for."""


def parse_conf_text(text: str, hostname: str) -> ParsedFile:
    """One file's settings for `hostname`; a line that is none of comment, section or
    assignment is skipped and its number kept."""
    sections: dict[str, dict[str, str]] = {"": {}}
    section = ""
    unreadable = []
    pending: Optional[tuple[str, str]] = None
    for number, line in enumerate(_NEWLINE.split(text), start=1):
        if pending is not None:
            name, value = pending
            if line.endswith("\\"):
                pending = (name, value + line[:-1])
            else:
                sections[section][name] = value + line.rstrip()
                pending = None
            continue
        if _COMMENT.match(line):
            continue
        match = _SECTION.match(line)
        if match:
            section = match.group("name")
            sections.setdefault(section, {})
            continue
        match = _VARIABLE.match(line)
        if match is None:
            unreadable.append(number)
            continue
        value = match.group("value")
        if match.group("cont"):
            pending = (match.group("name"), value)
        else:
            sections[section][match.group("name")] = value.rstrip()
    if pending is not None:
        sections[section][pending[0]] = pending[1].rstrip()
    values = dict(sections[""])
    if hostname:
        values.update(sections.get(hostname, {}))
    return ParsedFile(values, tuple(unreadable))


def conf_files(main: str) -> list[str]:
    """The main file, then `<main>.d/*.conf` sorted, dot-files left out (SPConfig.get_config_files)."""
    directory = main + ".d"
    try:
        extra = sorted(n for n in os.listdir(directory) if n.endswith(".conf") and not n.startswith("."))
    except OSError:
        extra = []
    return [main] + [os.path.join(directory, n) for n in extra
                     if os.path.isfile(os.path.join(directory, n))]


@dataclass(frozen=True)
class HostConf:
    """This host's StorPool settings from its config files."""

    main: str
    found: bool
    """False: the main file is missing or unreadable; StorPool is not configured here."""
    values: dict[str, str] = field(default_factory=dict, repr=False)
    """Every setting, SP_AUTH_TOKEN included: never print it."""
    problems: tuple[str, ...] = ()
    """One line per file that could not be read or has lines StorPool would refuse."""

    @property
    def api_host(self) -> str:
        return self.values.get("SP_API_HTTP_HOST", "").strip() or DEFAULT_HOST

    @property
    def api_port(self) -> Optional[int]:
        """None when SP_API_HTTP_PORT is not a port number."""
        text = self.values.get("SP_API_HTTP_PORT", "").strip() or str(DEFAULT_PORT)
        return int(text) if re.fullmatch(r"[0-9]{1,5}", text) and 0 < int(text) < 65536 else None

    @property
    def token(self) -> str:
        return self.values.get("SP_AUTH_TOKEN", "")

    @property
    def our_id(self) -> str:
        return self.values.get("SP_OURID", "").strip()


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONF_BYTES + 1)
    if len(data) > MAX_CONF_BYTES:
        raise ValueError(f"larger than {MAX_CONF_BYTES} bytes")
    return data.decode("utf-8", "replace")


def read_conf(main: str, hostname: str) -> HostConf:
    """The settings for `hostname` from `main` and its conf.d; found=False without the
    main file (SPConfig refuses to go on without it too)."""
    values: dict[str, str] = {}
    problems = []
    for number, path in enumerate(conf_files(main)):
        try:
            parsed = parse_conf_text(_read(path), hostname)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if number == 0:
                return HostConf(main, False, problems=(f"cannot read {path}: {reason}",))
            problems.append(f"cannot read {path}: {reason}")
            continue
        values.update(parsed.values)
        if parsed.unreadable:
            lines = ", ".join(str(n) for n in parsed.unreadable[:5])
            problems.append(f"{path}: StorPool would refuse line(s) {lines}")
    return HostConf(main, True, values, tuple(problems))


def java_pair(text: str) -> Optional[tuple[str, str]]:
    """KEY=VALUE as CloudStack reads one (StorPoolStoragePool.getStorPoolConfigParam,
    StorPoolUtil.SpConnectionDesc): Java's text.split("=") must give exactly two parts,
    trailing empty parts dropped, so `KEY=` and `KEY=a=b` are no pair at all."""
    parts = text.split("=")
    while parts and parts[-1] == "":
        parts.pop()
    return (parts[0], parts[1]) if len(parts) == 2 else None


def parse_confget_output(text: str) -> dict[str, str]:
    """`storpool_confget`'s lines as the agent reads them; the first line for a key wins."""
    found: dict[str, str] = {}
    for pair in filter(None, map(java_pair, _NEWLINE.split(text))):
        found.setdefault(*pair)
    return found


def _clean(value: object, limit: int = 160) -> str:
    return "".join(c if c.isprintable() else " " for c in str(value))[:limit]


def _json(body: bytes) -> Any:
    """The document, or ValueError; RecursionError is how json.loads meets deep nesting."""
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


@dataclass(frozen=True)
class Services:
    """The ServicesList answer (python-storpool sptypes.ClusterStatus: clusterStatus, and
    clients, servers, mgmt, bridges, iscsiTargets each keyed by id, every entry with a
    status; a client's id is its node's id, nodeId names the node)."""

    summary: str
    clients: tuple[tuple[str, str], ...]
    """(node id as text, status) for every client, in the answer's order."""

    def client_status(self, our_id: str) -> str:
        """running, down (any other status), or absent from the list."""
        for node, status in self.clients:
            if node == our_id.strip():
                return "running" if status == "running" else "down"
        return "absent"


def parse_services(status: int, body: bytes) -> Services:
    """An API answer to GET /ctrl/1.0/ServicesList, or ProbeError. StorPool answers
    `{"error": {"name", "descr", "transient"}}` for a refusal, whatever the HTTP status
    (python-storpool spapi.Api.__call__ checks both); 401 and 403, or a name that says
    auth, are `auth`: a token the API does not take."""
    try:
        doc = _json(body)
    except ValueError:
        start = _clean(body[:60].decode("utf-8", "replace"), 60)
        raise ProbeError("bad-answer", f"ServicesList answered HTTP {status} with no JSON: {start!r}",
                         status) from None
    error = doc.get("error") if isinstance(doc, dict) else None
    if error is not None:
        fields = error if isinstance(error, dict) else {"descr": error}
        name, descr = _clean(fields.get("name", "")), _clean(fields.get("descr", ""))
        word = "auth" if status in (401, 403) or "auth" in name.lower() else "http-error"
        transient = " (transient)" if fields.get("transient") is True else ""
        raise ProbeError(word, f"ServicesList refused, HTTP {status}: {name}: {descr}{transient}", status)
    if status != 200:
        raise ProbeError("http-error", f"ServicesList answered HTTP {status}", status)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise ProbeError("bad-answer", "the ServicesList answer has no data object", status)
    counts, clients = [], []
    for kind in ("clients", "servers", "mgmt", "bridges", "iscsiTargets"):
        table = data.get(kind)
        if not isinstance(table, dict) or not table:
            continue
        # StorPool 14.10 documents mgmt as one entry, later releases as a table by id.
        entries = [table] if "status" in table else [e for e in table.values() if isinstance(e, dict)]
        running = sum(1 for e in entries if e.get("status") == "running")
        counts.append(f"{kind} {running}/{len(entries)} running")
        if kind == "clients":
            clients = [(_clean(e.get("nodeId", e.get("id", "")), 20), _clean(e.get("status", "?"), 20))
                       for e in entries]
    cluster = _clean(data.get("clusterStatus", ""), 20)
    summary = ", ".join(([f"cluster {cluster}"] if cluster else []) + counts) or "no services listed"
    return Services(summary, tuple(clients))


_JAVA_INT = re.compile(r"[+-]?\d{1,30}")
_JAVA_DECIMAL = re.compile(r"[+-]?(?:\d{1,30}\.?\d{0,30}|\.\d{1,30})(?:[eE][+-]?\d{1,2})?")


def _int32(number: int) -> int:
    """Java's narrowing to int: the low 32 bits, signed."""
    return (number + 2**31) % 2**32 - 2**31


def _java_parse_int(text: str) -> Optional[int]:
    """Integer.parseInt: digits with an optional sign, in range; None where it throws."""
    if not _JAVA_INT.fullmatch(text):
        return None
    number = int(text)
    return number if -(2**31) <= number < 2**31 else None


def _gson_int(value: Any) -> Optional[int]:
    """JsonElement.getAsInt (gson's LazilyParsedNumber.intValue: parseInt, then a long,
    then BigDecimal, narrowed); None where gson throws. Approximate at the far edges."""
    if isinstance(value, list) and len(value) == 1:
        return _gson_int(value[0])
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    text = str(value)
    if _JAVA_INT.fullmatch(text):
        return _int32(int(text))
    if not _JAVA_DECIMAL.fullmatch(text):
        return None
    return _int32(int(Decimal(text)))


def _gson_string(value: Any) -> Optional[str]:
    """JsonElement.getAsString; None where gson throws (null, an object, a longer array)."""
    if isinstance(value, list) and len(value) == 1:
        return _gson_string(value[0])
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (int, float, str)) else None


@dataclass(frozen=True)
class Verdict:
    outcome: str
    """up; down (the heartbeat fails: the last try reboots the host); crash (an unchecked
    exception escapes checkingHeartBeat and ends KVMHAMonitor's thread)."""
    client: str
    """This host's client: running, down, absent, unknown."""
    why: str


def heartbeat_verdict(output: bytes, our_id: str) -> Verdict:
    """What StorPoolStoragePool.checkingHeartBeat makes of `storpool -j service list`'s
    output after a zero exit: Integer.parseInt(SP_OURID); gson parses the output (its
    JsonSyntaxException is caught: down); then checkIfNodeIsRunning walks data.clients in
    the answer's order, reading every entry's status and nodeId BEFORE comparing, and the
    first entry whose nodeId is SP_OURID decides: "running" is up, anything else down;
    none is down. Every other surprise there is a ClassCastException,
    NullPointerException or IllegalStateException nobody catches."""
    node = _java_parse_int(our_id)
    if node is None:
        said = f"SP_OURID {_clean(our_id, 40)!r} is not a number" if our_id else "there is no SP_OURID"
        return Verdict("crash", "unknown", f"{said}, and Integer.parseInt throws")
    text = output.decode("utf-8", "replace")
    if not text.strip():
        return Verdict("crash", "unknown", "it printed nothing (gson's JsonNull is no JsonObject)")
    try:
        doc = _json(output)
    except ValueError:
        return Verdict("down", "unknown", "it printed no JSON (gson's syntax error is caught)")
    if not isinstance(doc, dict):
        return Verdict("crash", "unknown", "its answer is not a JSON object")
    if "data" not in doc:
        error = doc.get("error")
        said = f": {_clean(error.get('descr', ''))}" if isinstance(error, dict) else ""
        return Verdict("down", "unknown", f"its answer has no data{said}")
    clients = doc["data"].get("clients") if isinstance(doc["data"], dict) else None
    if not isinstance(clients, dict):
        return Verdict("crash", "unknown", "its answer has no data.clients object")
    for entry in clients.values():
        status = _gson_string(entry.get("status")) if isinstance(entry, dict) else None
        node_id = _gson_int(entry.get("nodeId")) if isinstance(entry, dict) else None
        if status is None or node_id is None:
            return Verdict("crash", "unknown", "a data.clients entry read before any match has "
                           "no usable status or nodeId")
        if node_id == node:
            if status == "running":
                return Verdict("up", "running", f"this host's client (SP_OURID {node}) is running")
            return Verdict("down", "down", f"this host's client (SP_OURID {node}) is "
                           f"{_clean(status, 40)!r}, not running")
    return Verdict("down", "absent", f"data.clients lists no client with nodeId {node} (SP_OURID)")
