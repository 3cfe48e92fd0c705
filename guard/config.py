"""guard.toml into frozen dataclasses.

The daemon runs as root and acts on what this file says, so every problem is refused at
load time with one line naming the file, the key and the fix: an operator must never
find out at 3 a.m. that a typo silently fell back to a default.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEFAULT_PATH = "/etc/cloudstack-guard/guard.toml"
MODES = ("observe", "remediate")


class ConfigError(Exception):
    """A config or credential problem, already phrased as the one line to print."""


@dataclass(frozen=True)
class AgentConfig:
    properties: str = "/etc/cloudstack/agent/agent.properties"
    log: str = "/var/log/cloudstack/agent/agent.log"
    unit: str = "cloudstack-agent.service"
    storpool_log: str = "/var/log/cloudstack/agent/storpool-agent.log"
    """StorPoolStorageAdaptor.SP_LOG's fixed path (see guard/sources/storpoollog.py)."""


@dataclass(frozen=True)
class LibvirtConfig:
    uri: str = "qemu:///system"


@dataclass(frozen=True)
class Credentials:
    """The management API key pair; kept out of every repr so it never reaches a log."""

    endpoint: str
    key: str = field(repr=False)
    secret: str = field(repr=False)


@dataclass(frozen=True)
class ManagementConfig:
    credentials_file: str
    credentials: Credentials
    timeout: float = 10.0
    poll_interval: float = 60.0
    verify_tls: bool = True
    ca: str = ""
    host_id: str = ""


@dataclass(frozen=True)
class ProbesConfig:
    timeout: float = 3.0
    interval: float = 30.0


@dataclass(frozen=True)
class LinstorConfig:
    auth_json: str = "/var/lib/linstor.d/auth.json"
    ca: str = ""
    cert: str = ""
    key: str = ""
    node: str = ""


@dataclass(frozen=True)
class RemediationConfig:
    max_restarts: int = 2
    window: float = 3600.0
    cooldown: float = 600.0
    verify_deadline: float = 120.0
    stagger_slot: float = 30.0
    settle: float = 60.0
    windows: tuple[tuple[int, int], ...] = ()
    """Maintenance windows as (start, end) minutes after local midnight; empty: any time."""


@dataclass(frozen=True)
class MetricsConfig:
    textfile: str = ""
    """node_exporter textfile collector path (…/cloudstack_guard.prom); empty: off."""
    listen: str = ""
    """host:port for an HTTP /metrics listener; empty: off."""


@dataclass(frozen=True)
class Config:
    path: str = ""
    mode: str = "observe"
    state_dir: str = "/var/lib/cloudstack-guard"
    agent: AgentConfig = AgentConfig()
    libvirt: LibvirtConfig = LibvirtConfig()
    management: Optional[ManagementConfig] = None
    probes: ProbesConfig = ProbesConfig()
    linstor: LinstorConfig = LinstorConfig()
    remediation: RemediationConfig = RemediationConfig()
    metrics: MetricsConfig = MetricsConfig()


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from "30s", "10m", "1h30m", "250ms"; ValueError on anything else."""
    spec = text.strip()
    pos, total = 0, 0.0
    while pos < len(spec):
        match = _DURATION_PART.match(spec, pos)
        if not match:
            raise ValueError(text)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not spec or total <= 0:
        raise ValueError(text)
    return total


def check_file_mode(path: str, what: str, private: bool) -> None:
    """Refuse files others could change (or, for secrets, read): the daemon runs as root.

    A file owned by another non-root user is refused too, since its owner could rewrite
    it whatever its mode says.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found; create it or fix the path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: {what} is not a regular file; point the setting at a file")
    mode = stat.S_IMODE(info.st_mode)
    mask = 0o077 if private else 0o022
    if mode & mask:
        fix = "chmod 600" if private else "chmod go-w"
        kind = "group/world-accessible" if private else "group/world-writable"
        raise ConfigError(f"{path}: {what} file is {kind} (mode {mode:04o}); run `{fix} {path}`")
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f"{path}: {what} file is owned by uid {info.st_uid}; "
            f"run `chown root {path}` so only root can change it"
        )


_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a whole number"}


class _Reader:
    """Takes typed values out of one TOML table and remembers which keys were used."""

    def __init__(self, path: str, table: dict[str, Any], prefix: str) -> None:
        self.path = path
        self.table = table
        self.prefix = prefix
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _fail(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.path}: key '{self._name(key)}' {problem}; {fix}")

    def _get(self, key: str, default: Any, kind: type, example: str) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise self._fail(
                key, f"must be {_TYPE_NAMES[kind]}, not {value!r}", f"write {example}"
            )
        return value

    def string(self, key: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = self._get(key, default, str, f'{key} = "..."')
        if choices and value not in choices:
            raise self._fail(key, f"is {value!r}", "use one of: " + ", ".join(choices))
        return value

    def path_value(self, key: str, default: str) -> str:
        value = self.string(key, default)
        if value and not os.path.isabs(value):
            raise self._fail(key, f"is a relative path ({value!r})", "give an absolute path")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._get(key, default, bool, f"{key} = true")

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self._get(key, default, int, f"{key} = {default}")
        if value < minimum:
            raise self._fail(key, f"is {value}", f"use a whole number >= {minimum}")
        return value

    def duration(self, key: str, default: float) -> float:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        example = f'write a string such as {key} = "30s" (units ms, s, m, h, d)'
        if not isinstance(value, str):
            raise self._fail(key, f"must be a duration string, not {value!r}", example)
        try:
            return parse_duration(value)
        except ValueError:
            raise self._fail(key, f"is not a duration ({value!r})", example) from None

    def windows(self, key: str) -> tuple[tuple[int, int], ...]:
        self.used.add(key)
        value = self.table.get(key, [])
        example = f'write {key} = ["02:00-05:00", "22:30-23:59"] (local time)'
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, f"must be a list of strings, not {value!r}", example)
        parsed = []
        for text in value:
            match = _WINDOW.match(text.strip())
            if not match:
                raise self._fail(key, f"has a window {text!r} that is not HH:MM-HH:MM", example)
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
                raise self._fail(key, f"has a window {text!r} with an impossible time", example)
            parsed.append((h1 * 60 + m1, h2 * 60 + m2))
        return tuple(parsed)

    def finish(self) -> None:
        known = ", ".join(sorted(self.used))
        for key in self.table:
            if key not in self.used:
                raise self._fail(key, "is unknown", f"remove it or use one of: {known}")


def _section(path: str, data: dict[str, Any], name: str) -> Optional[dict[str, Any]]:
    table = data.get(name)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: key '{name}' must be a table; write it as [{name}]")
    return table


def load_credentials(path: str) -> Credentials:
    """Read a cs-style cloudstack.ini; refuse it unless only its owner can read it."""
    check_file_mode(path, "credentials", private=True)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot parse credentials ({first}); use cs's ini format") from None
    if not parser.has_section("cloudstack"):
        raise ConfigError(
            f"{path}: section [cloudstack] missing; add [cloudstack] with endpoint, key and secret"
        )
    values = {}
    for key in ("endpoint", "key", "secret"):
        value = parser.get("cloudstack", key, fallback="").strip()
        if not value:
            raise ConfigError(f"{path}: key 'cloudstack.{key}' is missing or empty; set it")
        values[key] = value
    if not re.match(r"^https?://", values["endpoint"]):
        raise ConfigError(
            f"{path}: key 'cloudstack.endpoint' is not an http(s) URL; "
            "write e.g. https://cloud.example.com/client/api"
        )
    return Credentials(values["endpoint"], values["key"], values["secret"])


def _table_config(
    path: str, data: dict[str, Any], name: str, build: Callable[[_Reader], Any], default: Any
) -> Any:
    table = _section(path, data, name)
    if table is None:
        return default
    reader = _Reader(path, table, f"{name}.")
    value = build(reader)
    reader.finish()
    return value


def _management(r: _Reader) -> ManagementConfig:
    cred_file = r.path_value("credentials", "/etc/cloudstack-guard/cloudstack.ini")
    ca = r.path_value("ca", "")
    config = ManagementConfig(
        credentials_file=cred_file,
        credentials=load_credentials(cred_file),
        timeout=r.duration("timeout", 10.0),
        poll_interval=r.duration("poll_interval", 60.0),
        verify_tls=r.boolean("verify_tls", True),
        ca=ca,
        host_id=r.string("host_id", ""),
    )
    if ca:
        check_file_mode(ca, "management CA", private=False)
    return config


def _linstor(r: _Reader) -> LinstorConfig:
    config = LinstorConfig(
        auth_json=r.path_value("auth_json", LinstorConfig.auth_json),
        ca=r.path_value("ca", ""),
        cert=r.path_value("cert", ""),
        key=r.path_value("key", ""),
        node=r.string("node", ""),
    )
    if bool(config.cert) != bool(config.key):
        raise ConfigError(
            f"{r.path}: keys 'linstor.cert' and 'linstor.key' go together; set both or neither"
        )
    for key_name, value, private in (("ca", config.ca, False), ("cert", config.cert, False),
                                     ("key", config.key, True)):
        if value:
            check_file_mode(value, f"linstor.{key_name}", private=private)
    return config


def parse_listen(text: str) -> tuple[str, int]:
    """("127.0.0.1", 9575) from "127.0.0.1:9575", "[::1]:9575" or a bare "9575" (loopback
    unless a host is named); ValueError otherwise. Port 0 takes any free port (logged)."""
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(text)
    if host != "localhost":
        ipaddress.ip_address(host)
    return host, int(port)


def _metrics(r: _Reader) -> MetricsConfig:
    config = MetricsConfig(textfile=r.path_value("textfile", ""), listen=r.string("listen", ""))
    if config.textfile and not config.textfile.endswith(".prom"):
        raise ConfigError(f"{r.path}: key 'metrics.textfile' must end in .prom; node_exporter's "
                          "textfile collector reads only those")
    if config.listen:
        try:
            parse_listen(config.listen)
        except ValueError:
            raise ConfigError(f"{r.path}: key 'metrics.listen' is not host:port ({config.listen!r}); "
                              'write e.g. listen = "127.0.0.1:9575"') from None
    return config


def parse_config(text: str, path: str) -> Config:
    """Build a Config from TOML text; `path` only names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}); fix the syntax at that line") from None
    top = _Reader(path, data, "")
    mode = top.string("mode", "observe", MODES)
    state_dir = top.path_value("state_dir", Config.state_dir)
    top.used.update({"agent", "libvirt", "management", "probes", "linstor", "remediation", "metrics"})
    top.finish()
    return Config(
        path=path,
        mode=mode,
        state_dir=state_dir,
        agent=_table_config(
            path, data, "agent",
            lambda r: AgentConfig(
                properties=r.path_value("properties", AgentConfig.properties),
                log=r.path_value("log", AgentConfig.log),
                unit=r.string("unit", AgentConfig.unit),
                storpool_log=r.path_value("storpool_log", AgentConfig.storpool_log),
            ),
            AgentConfig(),
        ),
        libvirt=_table_config(
            path, data, "libvirt", lambda r: LibvirtConfig(uri=r.string("uri", LibvirtConfig.uri)),
            LibvirtConfig(),
        ),
        management=_table_config(path, data, "management", _management, None),
        probes=_table_config(
            path, data, "probes",
            lambda r: ProbesConfig(
                timeout=r.duration("timeout", 3.0), interval=r.duration("interval", 30.0)
            ),
            ProbesConfig(),
        ),
        linstor=_table_config(path, data, "linstor", _linstor, LinstorConfig()),
        remediation=_table_config(
            path, data, "remediation",
            lambda r: RemediationConfig(
                max_restarts=r.integer("max_restarts", 2),
                window=r.duration("window", 3600.0),
                cooldown=r.duration("cooldown", 600.0),
                verify_deadline=r.duration("verify_deadline", 120.0),
                stagger_slot=r.duration("stagger_slot", 30.0),
                settle=r.duration("settle", 60.0),
                windows=r.windows("windows"),
            ),
            RemediationConfig(),
        ),
        metrics=_table_config(path, data, "metrics", _metrics, MetricsConfig()),
    )


def load_config(path: Optional[str] = None) -> Config:
    """Load the named file, or the default one; a stock host without a file gets defaults.

    A file named explicitly must exist: asking for a config that is not there is a
    mistake worth stopping for.
    """
    explicit = path is not None
    path = path or DEFAULT_PATH
    if not explicit and not os.path.exists(path):
        return Config(path="(defaults)")
    check_file_mode(path, "config", private=False)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc}); fix the file") from None
    return parse_config(text, path)
