"""Would this host's StorPool HA heartbeat pass right now, and does the StorPool API answer?

A deleted StorPool pool stays in the agent's KVM HA monitor: deleting it sends the hosts
nothing (StorPoolPrimaryDataStoreLifeCycle.deleteDataStore), and the agent takes only
NFS pools out of the monitor (KVMStoragePoolManager, KVMHAMonitor). Each heartbeat try
runs `storpool -j service list` (StorPoolStoragePool.checkingHeartBeat); when every try
fails (the command fails, or does not report this host's client running), one more
check and kvmspheartbeat.sh -c reboot the host (createHeartBeatCommand;
scripts/vm/hypervisor/kvm/kvmspheartbeat.sh: `echo b > /proc/sysrq-trigger`), with
reboot.host.and.alert.management.on.heartbeat.timeout at its default, true. So the
probe asks the API itself (GET /ctrl/1.0/ServicesList with `Authorization: Storpool
v1:<token>`), runs the heartbeat's own command at the same time, and judges its output
as the heartbeat does (storpool_conf.heartbeat_verdict).

Status words: the API's failure first (refused, timeout, dns, http-error, auth,
bad-answer), since a CLI that asks a dead API fails with it. Then the heartbeat's: a
`storpool` that cannot run or exits non-zero, and a client that is down or absent, are
`refused`: the storage refuses this host, and `refused` is in ProbeResult.down, so the
finding is the critical outage whose consequence names the reboot (bad-answer or
http-error would read as a problem with the guard's own probe). A CLI that hangs is
`timeout`. An answer that would make the heartbeat throw is `bad-answer`: no reboot, but
KVMHAMonitor's thread dies and HA stops for every pool. The detail always says what the
heartbeat would do; node_status is this host's client: running, down, absent, unknown.

The token (storpool.conf's SP_AUTH_TOKEN or the URL's) is sent and never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Optional, cast

from guard.backends import http
from guard.backends.base import Endpoint
from guard.backends.storpool_conf import (
    DEFAULT_PORT,
    HostConf,
    Services,
    heartbeat_verdict,
    java_pair,
    parse_confget_output,
    parse_services,
    read_conf,
)
from guard.backends.wire import ProbeError
from guard.config import Config, StorPoolConfig
from guard.model import Pool, ProbeResult
from guard.urls import without_userinfo

NAME = "storpool"
POOL_TYPE = "StorPool"
SERVICES_PATH = "/ctrl/1.0/ServicesList"
CLOUDSTACK_HTTP_PORT = 80
"""StorPoolUtil.spApiRequest builds http://<SP_API_HTTP>/ctrl/1.0/...: an SP_API_HTTP
without a port is HTTP's 80 there, not StorPool's 81."""
MARGIN_S = 0.05
"""Left of the timeout for putting the answer together."""
MAX_OUTPUT = 4 * 1024 * 1024
KILL_GRACE_S = 0.2
REBOOT = "the HA heartbeat would reboot this host (kvmspheartbeat.sh -c)"
_TOKEN = re.compile(r"(SP_AUTH_TOKEN=)[^;]*")


def redact(text: str) -> str:
    """A StorPool URL as it may be shown: the token's value replaced."""
    return _TOKEN.sub(r"\1***", text)


@dataclass(frozen=True)
class Target:
    """Where the API is; host None: this host's storpool.conf says."""

    shown: str
    host: Optional[str] = None
    port: int = DEFAULT_PORT
    token: Optional[str] = field(default=None, repr=False)
    """The URL's own token; None: storpool.conf's SP_AUTH_TOKEN."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _api_address(value: str, default_port: int, what: str) -> http.Target:
    """HOST[:PORT] and nothing else; the value is named only when it cannot hold a secret."""
    if "://" in value or "@" in value or "/" in value:
        raise ValueError(f"{what} must be HOST[:PORT], with no scheme, user or path")
    try:
        return http.parse_target(value, {"http": default_port})
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} is not HOST[:PORT]: {exc}") from None


def parse_url(text: str) -> Target:
    """`storpool:` (or `storpool://`): the API this host's storpool.conf names;
    `storpool://HOST[:PORT]`: that API (port 81), with storpool.conf's token;
    `[storpool:]SP_API_HTTP=HOST[:PORT];SP_AUTH_TOKEN=TOKEN[;SP_TEMPLATE=NAME]`:
    CloudStack's StorPool URL (StorPoolPrimaryDataStoreLifeCycle.initialize), in any
    order. ValueError names the problem and never carries the token."""
    raw = text.strip()
    if not raw or any(c.isspace() or not c.isprintable() for c in raw):
        raise ValueError("a StorPool URL is not empty and has no blanks or control characters")
    rest = raw[len("storpool:"):] if raw.lower().startswith("storpool:") else raw
    if rest == raw and "=" not in raw:
        raise ValueError("not a StorPool URL: give storpool: or "
                         "SP_API_HTTP=HOST:PORT;SP_AUTH_TOKEN=TOKEN;SP_TEMPLATE=NAME")
    if rest in ("", "//"):
        return Target("storpool:")
    if rest.startswith("//"):
        address = _api_address(rest[2:].rstrip("/"), DEFAULT_PORT, "storpool://")
        return Target(f"storpool://{_where(address.host, address.port)}", address.host, address.port)
    # StorPoolUtil.SpConnectionDesc: `;`-separated pairs, the last of a key wins.
    pairs = dict(filter(None, map(java_pair, rest.split(";"))))
    if "SP_API_HTTP" not in pairs:
        raise ValueError("the StorPool URL has no SP_API_HTTP=HOST:PORT")
    token = pairs.get("SP_AUTH_TOKEN")
    if token is None:
        raise ValueError("the StorPool URL has no SP_AUTH_TOKEN=TOKEN (a pair with a second '=' "
                         "does not count, as in CloudStack)")
    if not token.isascii():
        raise ValueError("SP_AUTH_TOKEN has characters an HTTP header cannot carry")
    address = _api_address(pairs["SP_API_HTTP"], CLOUDSTACK_HTTP_PORT, "SP_API_HTTP")
    shown = f"SP_API_HTTP={pairs['SP_API_HTTP']}"
    if pairs.get("SP_TEMPLATE"):
        shown += f";SP_TEMPLATE={pairs['SP_TEMPLATE']}"
    return Target(shown, address.host, address.port, token)


@dataclass(frozen=True)
class Ran:
    status: str = ""
    """Empty when it ran and exited 0; else refused (cannot run, non-zero exit), timeout,
    or bad-answer (too much output)."""
    stdout: bytes = b""
    why: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.status)


async def _capped(stream: asyncio.StreamReader) -> bytes:
    chunks, size = [], 0
    while size <= MAX_OUTPUT:
        chunk = await stream.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _first_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    return "".join(c if c.isprintable() else " " for c in lines[0])[:200] if lines else "(no output)"


async def run_bounded(argv: list[str], deadline: float, timeout: float) -> Ran:
    """One command under the deadline, in a session of its own so that its whole group is
    killed there; asyncio's subprocess, as a thread blocked in subprocess.run would
    outlive the probe. The heartbeat runs its commands with no timeout of its own."""
    loop = asyncio.get_running_loop()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return Ran("refused", why=f"cannot run {argv[0]}: {exc.strerror or exc}")
    try:
        out, err = await asyncio.wait_for(asyncio.gather(
            _capped(cast(asyncio.StreamReader, proc.stdout)),
            _capped(cast(asyncio.StreamReader, proc.stderr))), max(0.0, deadline - loop.time()))
        if len(out) > MAX_OUTPUT:
            return Ran("bad-answer", why=f"printed more than {MAX_OUTPUT} bytes")
        code = await asyncio.wait_for(proc.wait(), max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        return Ran("timeout", why=f"did not finish within {timeout:g}s")
    finally:
        if proc.returncode is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        return Ran("refused", out, f"{how}: {_first_line(err or out)}")
    return Ran("", out)


@dataclass(frozen=True)
class _Part:
    status: str
    detail: str
    http_status: Optional[int] = None


async def _ask_api(host: str, port: int, token: str, deadline: float,
                   timeout: float) -> tuple[_Part, Optional[Services]]:
    target = http.Target("http", host, port, "")
    where = _where(host, port)
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Storpool v1:{token}"}
    try:
        answer = await asyncio.wait_for(http.get(target, SERVICES_PATH, headers),
                                        max(0.0, deadline - loop.time()))
        services = parse_services(answer.status, answer.body)
    except asyncio.TimeoutError:
        return _Part("timeout", f"the StorPool API at {where} did not answer GET {SERVICES_PATH} "
                     f"within {timeout:g}s"), None
    except ProbeError as exc:
        said = f": {exc.detail}" if where in exc.detail else f" at {where}: {exc.detail}"
        return _Part(exc.status, f"StorPool API{said}", exc.http_status), None
    return _Part("healthy", f"the StorPool API at {where} answers: {services.summary}"), services


def _api_from_conf(conf: HostConf) -> Optional[_Part]:
    if not conf.found:
        return _Part("refused", f"StorPool is not configured on this host: {conf.problems[0]}")
    if conf.api_port is None:
        return _Part("bad-answer", f"SP_API_HTTP_PORT in {conf.main} is not a port number")
    return None


def _our_id(confget: Ran, conf: HostConf, name: str) -> tuple[str, str]:
    """SP_OURID as storpool_confget prints it (what the agent reads), else the files'."""
    if not confget.failed:
        value = parse_confget_output(confget.stdout.decode("utf-8", "replace")).get("SP_OURID")
        if value is not None:
            return value, ""
        why = "prints no SP_OURID"
    else:
        why = f"failed: {confget.why}"
    if conf.our_id:
        return conf.our_id, f"{name} {why}; SP_OURID {conf.our_id} from {conf.main}"
    return "", f"{name} {why}"


def _heartbeat(cli: Ran, command: str, our_id: str, timeout: float) -> tuple[_Part, str]:
    """The heartbeat's judgement of this run of its command, and this host's client."""
    if cli.status == "timeout":
        return _Part("timeout", f"{command} did not finish within {timeout:g}s (killed); the "
                     "heartbeat waits up to an hour for it (Script's default), then fails: "
                     f"{REBOOT}"), "unknown"
    if cli.failed:
        return _Part(cli.status, f"{command} failed: {cli.why}; {REBOOT}"), "unknown"
    verdict = heartbeat_verdict(cli.stdout, our_id)
    if verdict.outcome == "up":
        return _Part("healthy", f"{command}: {verdict.why}; the HA heartbeat passes"), verdict.client
    if verdict.outcome == "down":
        return _Part("refused", f"{command}: {verdict.why}; {REBOOT}"), verdict.client
    return _Part("bad-answer", f"{command}: {verdict.why}: the heartbeat would throw and "
                 "KVMHAMonitor's thread would stop heartbeating every pool"), verdict.client


async def _settled(part: _Part) -> tuple[_Part, Optional[Services]]:
    return part, None


async def probe(url: str, config: StorPoolConfig, timeout: float) -> ProbeResult:
    """The API and the heartbeat's command at once, within `timeout` in all."""
    started = time.monotonic()
    try:
        target = parse_url(url)
    except ValueError as exc:
        return ProbeResult(NAME, redact(without_userinfo(url.strip())), "bad-answer",
                           f"unusable StorPool URL: {exc}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, timeout - MARGIN_S)
    # StorPool picks the section by platform.node(); on Linux both are uname's nodename.
    conf = read_conf(config.conf, socket.gethostname())
    token = conf.token if target.token is None else target.token
    unusable = _api_from_conf(conf) if target.host is None else None
    if unusable is not None:
        asking = _settled(unusable)
    elif target.host is not None:
        asking = _ask_api(target.host, target.port, token, deadline, timeout)
    else:
        asking = _ask_api(conf.api_host, conf.api_port or DEFAULT_PORT, token, deadline, timeout)
    (api, services), confget, cli = await asyncio.gather(
        asking, run_bounded([config.confget], deadline, timeout),
        run_bounded([config.cli, "-j", "service", "list"], deadline, timeout))
    our_id, id_note = _our_id(confget, conf, os.path.basename(config.confget))
    beat, client = _heartbeat(cli, f"`{os.path.basename(config.cli)} -j service list`", our_id, timeout)
    if client == "unknown" and services is not None and our_id:
        client = services.client_status(our_id)
    parts = [api.detail, beat.detail] if api.status != "healthy" else [beat.detail, api.detail]
    parts += [n for n in (id_note, *conf.problems) if n and n not in api.detail]
    detail = "; ".join(parts)
    if len(token) >= 4:
        detail = detail.replace(token, "***")
    return ProbeResult(NAME, target.shown, api.status if api.status != "healthy" else beat.status,
                       detail, time.monotonic() - started, http_status=api.http_status,
                       node_status=client)


class StorPoolBackend:
    """One endpoint for every StorPool pool on the host: the heartbeat asks this host's
    `storpool` CLI, configured by this host's storpool.conf, whatever pool it beats for."""

    name: str = NAME
    schemes: tuple[str, ...] = ("storpool",)

    def validate(self, url: str) -> None:
        parse_url(url)

    def shown(self, url: str) -> str:
        """CloudStack's StorPool URL carries its token as SP_AUTH_TOKEN=, not as userinfo."""
        return redact(without_userinfo(url))

    def claims(self, url: str) -> bool:
        """StorPool's URLs have no `scheme://` to dispatch on: `storpool:` and CloudStack's
        `SP_API_HTTP=...;SP_AUTH_TOKEN=...`."""
        text = url.strip()
        return text.lower().startswith("storpool:") or "SP_API_HTTP=" in text

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        return Endpoint("storpool:", "storpool.conf") if pool.type == POOL_TYPE else None

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        return await probe(endpoint, config.storpool, timeout)


BACKEND = StorPoolBackend()
