"""Do a Ceph RBD pool's monitors answer as monitors?

Every RBD operation on the host (libvirt's rbd pool, qemu's librbd, the agent's rados
calls) starts at a monitor, and a client gets the cluster maps only from a monitor
quorum: a strict majority of the monitors. So the probe asks every monitor the pool URL
lists, all at once and under one deadline, and calls the pool healthy when a majority of
them answers.

Asking needs no credentials: a Ceph messenger greets every connection with its banner
before any authentication. The probe sends its own client banner as a real client does,
reads the monitor's and hangs up: no cephx, no session. The pool's cephx secret
(rbd://user:SECRET@...) is never sent and never shown. The banners' wire format is
guard.backends.ceph_banner; this module is the pool URL, whom to ask, and the verdict.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote, unquote

from guard.backends import wire
from guard.backends.base import Endpoint
from guard.backends.ceph_banner import CLIENT_BANNER_V1, CLIENT_BANNER_V2, Banner, read_banner
from guard.backends.hostport import split_host_port
from guard.backends.wire import ProbeError
from guard.config import Config
from guard.model import Pool, ProbeResult

NAME = "rbd"
POOL_TYPE = "RBD"

# src/include/msgr.h: CEPH_MON_PORT_IANA (msgr2) and CEPH_MON_PORT_LEGACY (msgr1). A
# monitor given without a port has both (src/mon/MonMap.cc make_mon_addrs).
V2_PORT = 3300
V1_PORT = 6789

_RANK = {"timeout": 4, "bad-answer": 3, "dns": 2, "refused": 1}
"""Which failure tells most about a monitor (or a pool) none of whose tries answered: a
hang blocks every client, a foreign service on the port is a configuration error."""


@dataclass(frozen=True)
class Monitor:
    host: str
    """A name or address; an IPv6 address without its brackets."""
    port: Optional[int] = None
    """None: the monitor's two default ports."""

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True)
class Target:
    monitors: tuple[Monitor, ...]
    pool: str

    @property
    def url(self) -> str:
        """The URL without credentials."""
        return f"rbd://{','.join(m.shown for m in self.monitors)}/{quote(self.pool, safe='')}"


def _split_userinfo(rest: str) -> str:
    """What follows rbd:// without its user[:secret]@.

    A cephx secret is base64 and may hold '/', which would end the authority for a URL
    parser and leave the secret in the "path": so userinfo ends at the LAST '@', and a pool
    name cannot hold one. The CloudStack UI swaps '+' and '/' for '-' and '_' before it
    builds the URL (ui/src/views/infra/AddPrimaryStorage.vue rbdURL), but the API takes
    either form, percent-encoded or not; the probe never uses the secret, it only cuts it
    off."""
    return rest[rest.rfind("@") + 1:]


def shown_url(text: str) -> str:
    """`text` as it may be printed: without the user and secret, even when it is no
    usable URL."""
    scheme, sep, rest = text.strip().partition("://")
    return f"{scheme}://{_split_userinfo(rest)}" if sep else _split_userinfo(text.strip())


def _parse_host(entry: str) -> tuple[str, Optional[int]]:
    return split_host_port(entry, f"monitor {entry!r}")


def parse_url(text: str) -> Target:
    """rbd://[USER[:SECRET]@]MON[,MON...][:PORT]/POOL, as CloudStack stores an RBD pool
    (CloudStackPrimaryDataStoreLifeCycleImpl.initialize: host, port, path less its first
    '/', userInfo). A monitor may carry its own port (mon1:6789,mon2:6789); a port on the
    last monitor only is the pool's port, as LibvirtStoragePoolDef writes it on every
    <host>, and applies to every monitor without one. An IPv6 monitor is in brackets.

    ValueError names the problem and never repeats the user or secret."""
    scheme, sep, rest = text.strip().partition("://")
    if not sep or scheme.lower() != "rbd":
        raise ValueError("not an rbd:// URL")
    if "/" not in rest[rest.rfind("@") + 1:]:
        raise ValueError("no /POOL after the monitors (rbd://[USER:SECRET@]MON[,MON]/POOL)")
    authority, _, path = _split_userinfo(rest).partition("/")
    pool = unquote(path.strip("/"))
    if not pool:
        raise ValueError(f"no pool in rbd://{authority}/ (rbd://MON[,MON]/POOL)")
    entries = [e.strip() for e in authority.split(",")]
    if not any(entries):
        raise ValueError("no monitor in the URL")
    if not all(entries):
        raise ValueError(f"empty monitor in {authority!r}")
    parsed = [_parse_host(e) for e in entries]
    pool_port = parsed[-1][1]
    monitors = tuple(Monitor(host, port if port is not None else pool_port) for host, port in parsed)
    return Target(monitors, pool)


@dataclass
class _Try:
    """One connection to one port of one monitor, and how far it got."""

    host: str
    port: int
    hello: bytes
    stage: str = "connect"
    task: Optional[asyncio.Task[Banner]] = field(default=None, repr=False)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def run(self) -> Banner:
        reader, writer = await wire.connect(self.host, self.port)
        try:
            self.stage = "banner"
            writer.write(self.hello)
            await writer.drain()
            return await read_banner(reader, self.where)
        except OSError as exc:
            raise ProbeError("bad-answer", f"{self.where} dropped the connection before its "
                             f"banner ({exc.strerror or type(exc).__name__})") from None
        finally:
            await wire.close(writer)

    def banner(self) -> Optional[Banner]:
        task = self.task
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    def failure(self, timeout: float, cut_short: bool) -> tuple[str, str]:
        """(status, what happened) for a try that gave no banner; `cut_short`: the probe
        stopped before its deadline, once a majority had answered."""
        task = self.task
        error = None if task is None or not task.done() or task.cancelled() else task.exception()
        if isinstance(error, ProbeError):
            return error.status, error.detail
        if error is not None:
            return "bad-answer", f"{self.where}: the probe failed ({type(error).__name__})"
        if cut_short:
            return "timeout", f"{self.where} had not answered yet when a majority had"
        if self.stage == "connect":
            return "timeout", f"no connection to {self.where} within {timeout:g}s"
        return "timeout", f"{self.where} accepted but sent no Ceph banner within {timeout:g}s"


@dataclass
class _Asked:
    """One monitor: its msgr2 try first, then its msgr1 try when it has default ports."""

    monitor: Monitor
    tries: list[_Try]

    @property
    def settled(self) -> bool:
        """Answered for good: its first (preferred) try gave a banner, or a later one did
        and every try before it is over. A msgr1 answer does not hide a msgr2 port that
        is still on its way to answering."""
        for one in self.tries:
            if one.banner() is not None:
                return True
            if one.task is None or not one.task.done():
                return False
        return False

    def answered(self) -> bool:
        return any(one.banner() is not None for one in self.tries)

    def outcome(self, timeout: float, cut_short: bool) -> tuple[str, str]:
        """(status, text) for the detail: healthy with the banner, else the most telling
        failure with every try's."""
        failures: list[tuple[str, str]] = []
        for one in self.tries:
            banner = one.banner()
            if banner is not None:
                text = f"{banner.protocol} banner on port {one.port} ({banner.info})"
                if failures:
                    text += ", " + ", ".join(f[1] for f in failures)
                return "healthy", text
            failures.append(one.failure(timeout, cut_short))
        status = max((f[0] for f in failures), key=lambda s: _RANK.get(s, 0))
        # both ports of a name that does not resolve fail alike: say it once
        return status, ", ".join(dict.fromkeys(f[1] for f in failures))


def _plan(monitor: Monitor) -> _Asked:
    """An explicit port is asked alone, with the msgr2 greeting whatever it serves: a
    msgr1 server writes its banner on accept and waits for 145 bytes, so 26 bytes of a v2
    greeting neither confuse nor provoke it; a msgr1 greeting at a msgr2 server makes it
    hang up (ProtocolV2::_handle_peer_banner), possibly before its banner is read."""
    if monitor.port is not None:
        return _Asked(monitor, [_Try(monitor.host, monitor.port, CLIENT_BANNER_V2)])
    return _Asked(monitor, [_Try(monitor.host, V2_PORT, CLIENT_BANNER_V2),
                            _Try(monitor.host, V1_PORT, CLIENT_BANNER_V1)])


async def probe_target(target: Target, timeout: float) -> ProbeResult:
    """Every monitor at once; done when a majority has settled on an answer, when every
    try is over, or at the deadline, whichever comes first."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    asked = [_plan(m) for m in target.monitors]
    tries = [one for monitor in asked for one in monitor.tries]
    for one in tries:
        one.task = asyncio.ensure_future(one.run())
    tasks = {one.task for one in tries if one.task is not None}
    majority = len(asked) // 2 + 1
    pending = set(tasks)
    reached = False
    try:
        while pending:
            reached = sum(m.settled for m in asked) >= majority
            remaining = deadline - loop.time()
            if reached or remaining <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=remaining,
                                            return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    cut_short = reached and bool(pending)
    outcomes = [(m.monitor, *m.outcome(timeout, cut_short)) for m in asked]
    answering = sum(m.answered() for m in asked)
    detail = f"{answering} of {len(asked)} monitors answer: " + "; ".join(
        f"{monitor.shown}: {text}" for monitor, _, text in outcomes)
    if answering >= majority:
        status = "healthy"
    else:
        status = max((s for _, s, _ in outcomes if s != "healthy"), key=lambda s: _RANK.get(s, 0),
                     default="bad-answer")
    return ProbeResult(NAME, target.url, status, detail, loop.time() - started)


async def probe(url: str, timeout: float) -> ProbeResult:
    """Probe the monitors of one pool URL within `timeout` seconds in all."""
    started = time.monotonic()
    try:
        target = parse_url(url)
    except ValueError as exc:
        return ProbeResult(NAME, shown_url(url), "bad-answer", f"pool URL unusable: {exc}",
                           time.monotonic() - started)
    return await probe_target(target, timeout)


def _bracketed(host: str) -> str:
    """A monitor as the URL writes it: libvirt's <host name> and CloudStack's ipaddress
    may give an IPv6 address bare."""
    host = host.strip()
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


class RbdBackend:
    """The Ceph monitors of an RBD pool, as the management server and libvirt list them."""

    name: str = NAME
    schemes: tuple[str, ...] = ("rbd",)

    def validate(self, url: str) -> None:
        parse_url(url)

    def shown(self, url: str) -> str:
        return shown_url(url)

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        """The management server's ipaddress is the monitor list as the pool's URL gave
        it ("mon1,mon2", CloudStackPrimaryDataStoreLifeCycleImpl), its path the RBD pool;
        listStoragePools gives no port. libvirt's pool XML has one <host> per monitor, all
        with the pool's port when it has one (LibvirtStoragePoolDef.toString), and the RBD
        pool as <source><name>; the libvirt source keeps the first host's port."""
        if pool.type != POOL_TYPE or not pool.source_path:
            return None
        if pool.origin == "management":
            hosts = [h for entry in pool.source_hosts for h in entry.split(",") if h.strip()]
            port, source = 0, "management server"
        elif pool.origin == "libvirt":
            hosts = [h for h in pool.source_hosts if h.strip()]
            port, source = pool.source_port, "libvirt pool XML"
        else:
            return None
        if not hosts:
            return None
        mons = ",".join(_bracketed(h) for h in hosts) + (f":{port}" if port else "")
        return Endpoint(f"rbd://{mons}/{quote(pool.source_path.strip('/'), safe='')}", source)

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        return await probe(endpoint, timeout)


BACKEND = RbdBackend()
