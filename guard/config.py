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
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# ConfigError and parse_duration are re-exported: the config's callers meet them here.
from guard.config_values import ConfigError as ConfigError
from guard.config_values import TableReader, check_file_mode
from guard.config_values import parse_duration as parse_duration

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEFAULT_PATH = "/etc/cloudstack-guard/guard.toml"
MODES = ("observe", "remediate")


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
class StorPoolConfig:
    conf: str = "/etc/storpool.conf"
    """StorPool's own config; its conf.d directory (`<conf>.d/*.conf`) is read after it."""
    cli: str = "storpool"
    """The command the HA heartbeat runs (`storpool -j service list`)."""
    confget: str = "storpool_confget"
    """Prints this host's resolved StorPool settings (SP_OURID, the API's address)."""


@dataclass(frozen=True)
class PowerFlexConfig:
    credentials: str = ""
    """An ini file with [powerflex] username and password for the gateway's /api/login;
    empty: the probe asks the credential-free /api/version."""
    ca: str = ""
    """A CA file for the gateway's TLS certificate; verification is always on."""
    sdc_home: str = ""
    """Where the SDC's drv_cfg lives; empty: agent.properties `powerflex.sdc.home.dir`,
    else /opt/emc/scaleio/sdc (ScaleIOUtil.java)."""


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
    storpool: StorPoolConfig = StorPoolConfig()
    powerflex: PowerFlexConfig = PowerFlexConfig()
    remediation: RemediationConfig = RemediationConfig()
    metrics: MetricsConfig = MetricsConfig()


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
    path: str, data: dict[str, Any], name: str, build: Callable[[TableReader], Any], default: Any
) -> Any:
    table = _section(path, data, name)
    if table is None:
        return default
    reader = TableReader(path, table, f"{name}.")
    value = build(reader)
    reader.finish()
    return value


def _management(r: TableReader) -> ManagementConfig:
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


def _linstor(r: TableReader) -> LinstorConfig:
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


def _storpool(r: TableReader) -> StorPoolConfig:
    return StorPoolConfig(conf=r.path_value("conf", StorPoolConfig.conf),
                          cli=r.string("cli", StorPoolConfig.cli),
                          confget=r.string("confget", StorPoolConfig.confget))


def _powerflex(r: TableReader) -> PowerFlexConfig:
    config = PowerFlexConfig(credentials=r.path_value("credentials", ""), ca=r.path_value("ca", ""),
                             sdc_home=r.path_value("sdc_home", ""))
    if config.credentials:
        check_file_mode(config.credentials, "powerflex.credentials", private=True)
    if config.ca:
        check_file_mode(config.ca, "powerflex.ca", private=False)
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


def _metrics(r: TableReader) -> MetricsConfig:
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
    top = TableReader(path, data, "")
    mode = top.string("mode", "observe", MODES)
    state_dir = top.path_value("state_dir", Config.state_dir)
    top.used.update({"agent", "libvirt", "management", "probes", "linstor", "storpool", "powerflex",
                     "remediation", "metrics"})
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
        storpool=_table_config(path, data, "storpool", _storpool, StorPoolConfig()),
        powerflex=_table_config(path, data, "powerflex", _powerflex, PowerFlexConfig()),
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
