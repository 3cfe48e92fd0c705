"""Is the NFS server behind a pool answering NFS?

The agent's LibvirtStorageAdaptor mounts an NFS pool through libvirt: a netfs pool with
<host name=ipaddress/> and <dir path=path/> (LibvirtStorageAdaptor.createNetfsStoragePool,
LibvirtStoragePoolDef), mounted by libvirt under /mnt/<pool uuid>; the KVM HA monitor then
writes its heartbeat through that mount (kvmheartbeat.sh), and a server that stops
answering can get the host rebooted. So the guard asks the server itself, and never
mounts: a hard mount of a dead server hangs whoever touches it, inside the kernel, beyond
any timeout of ours.

It asks the way a mount finds the server. First the NULL procedure of NFS version 4 on
the pool's port, 2049 by default (RFC 7530 section 3.1: NFSv4 needs no rpcbind). A server
without v4 answers PROG_MISMATCH with the versions it has; a v3 mount then asks rpcbind
for the NFS port (portmap GETPORT, RFC 1833) and so does the probe, before a NULL call of
version 3 on that port. rpcbind is also asked when nothing listens on 2049, for a v3
server registered elsewhere. A URL with an explicit port names where NFS answers: the
probe then asks only there, version 3 on the same connection.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Optional, Union
from urllib.parse import quote

from guard.backends import oncrpc, wire
from guard.backends.base import Endpoint
from guard.backends.hostport import first_host_endpoint, split_storage_url, usable
from guard.backends.oncrpc import PROG_MISMATCH, PROG_UNAVAIL, SUCCESS, Progress, where
from guard.backends.wire import ProbeError
from guard.config import Config
from guard.model import Pool, ProbeResult
from guard.urls import without_userinfo

NAME = "nfs"
POOL_TYPE = "NetworkFilesystem"
DEFAULT_PORT = 2049
RPCBIND_PORT = 111
NFS_PROGRAM = 100003
NULL_PROC = 0
PMAP_PROGRAM = 100000
PMAP_VERSION = 2
PMAPPROC_GETPORT = 3
IPPROTO_TCP = 6
GRAMMAR = "nfs://HOST[:PORT]/PATH"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    explicit_port: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.explicit_port else ""
        return f"nfs://{host}{port}{self.path}"


def parse_url(text: str) -> Target:
    """nfs://HOST[:PORT]/PATH; a user:secret@ is dropped and never shown."""
    shown, parts, port = split_storage_url(text, "nfs", GRAMMAR, "an NFS URL", "an nfs:// URL")
    if not parts.path.startswith("/"):
        raise ValueError(f"no export path in {shown!r}, want {GRAMMAR}")
    return Target(str(parts.hostname), port or DEFAULT_PORT, parts.path, port is not None)


def parse_getport(results: bytes, what: str) -> int:
    """The port of a portmap GETPORT reply (RFC 1833 section 3.1); 0 means unregistered."""
    port = oncrpc.Xdr(results, what).uint("port")
    if port > 65535:
        raise ProbeError("bad-answer", f"{what}: port {port}")
    return port


class _Rpcbind:
    """The server answered without NFSv4, or nothing listened on 2049: ask rpcbind."""

    def __init__(self, why: str) -> None:
        self.why = why


def _null_label(vers: int) -> str:
    return f"an NFSv{vers} NULL call"


def _not_nfs(reply: oncrpc.Reply, peer: str, vers: int) -> ProbeError:
    if reply.stat == PROG_UNAVAIL:
        return ProbeError("bad-answer", f"{peer} speaks ONC-RPC but serves no NFS "
                                        f"(PROG_UNAVAIL to {_null_label(vers)})")
    return oncrpc.unexpected(reply, f"the reply from {peer} to {_null_label(vers)}")


async def _first_port(target: Target, progress: Progress) -> Union[str, _Rpcbind]:
    """NFSv4 on the pool's own port: a healthy detail, or why rpcbind must be asked."""
    peer = where(target.host, target.port)
    try:
        reader, writer = await oncrpc.connect(target.host, target.port, progress)
    except ProbeError as exc:
        if exc.status == "refused" and not target.explicit_port:
            return _Rpcbind(exc.detail)
        raise
    try:
        v4 = await oncrpc.call(reader, writer, progress, peer, _null_label(4), NFS_PROGRAM, 4, NULL_PROC)
        if v4.stat == SUCCESS:
            return f"NFSv4 answers on {peer}"
        if v4.stat != PROG_MISMATCH:
            raise _not_nfs(v4, peer, 4)
        offered = f"{peer} offers NFS versions {v4.low}-{v4.high}"
        if v4.low <= 4 <= v4.high:
            raise ProbeError("bad-answer", f"{offered} but answered PROG_MISMATCH to version 4")
        if not v4.low <= 3 <= v4.high:
            raise ProbeError("bad-answer", f"{offered}: neither 4 nor 3, which a mount would use")
        if not target.explicit_port:
            return _Rpcbind(f"{offered}, not 4")
        v3 = await oncrpc.call(reader, writer, progress, peer, _null_label(3), NFS_PROGRAM, 3, NULL_PROC)
        if v3.stat != SUCCESS:
            raise _not_nfs(v3, peer, 3)
        return f"NFSv3 answers on {peer} ({offered}, not 4)"
    finally:
        await wire.close(writer)


async def _getport(target: Target, progress: Progress, rpcbind_port: int, why: str) -> int:
    rpcbind = where(target.host, rpcbind_port)
    label = "a portmap GETPORT call for NFSv3 over TCP"
    try:
        reader, writer = await oncrpc.connect(target.host, rpcbind_port, progress)
    except ProbeError as exc:
        if exc.status == "refused":
            raise ProbeError("refused", f"{why}; rpcbind on {rpcbind} refused too, so no NFSv3 "
                                        f"port is known") from None
        raise
    try:
        args = struct.pack(">4I", NFS_PROGRAM, 3, IPPROTO_TCP, 0)
        reply = await oncrpc.call(reader, writer, progress, rpcbind, label, PMAP_PROGRAM, PMAP_VERSION,
                                  PMAPPROC_GETPORT, args)
        what = f"the reply from {rpcbind} to {label}"
        if reply.stat != SUCCESS:
            raise oncrpc.unexpected(reply, what)
        return parse_getport(reply.results, what)
    finally:
        await wire.close(writer)


async def _through_rpcbind(target: Target, progress: Progress, rpcbind_port: int, why: str) -> str:
    rpcbind = where(target.host, rpcbind_port)
    port = await _getport(target, progress, rpcbind_port, why)
    if port == 0:
        raise ProbeError("refused", f"{why}; NFS not registered with rpcbind on {rpcbind}")
    peer = where(target.host, port)
    try:
        reader, writer = await oncrpc.connect(target.host, port, progress)
    except ProbeError as exc:
        raise ProbeError(exc.status, f"{exc.detail} (the NFSv3 port rpcbind on {rpcbind} gives; "
                                     f"{why})") from None
    try:
        v3 = await oncrpc.call(reader, writer, progress, peer, _null_label(3), NFS_PROGRAM, 3, NULL_PROC)
        if v3.stat != SUCCESS:
            raise _not_nfs(v3, peer, 3)
    finally:
        await wire.close(writer)
    return f"NFSv3 answers on {peer}, the port rpcbind on {rpcbind} gives ({why})"


async def ask(target: Target, progress: Progress, rpcbind_port: int = RPCBIND_PORT) -> str:
    """The healthy detail, or ProbeError; `rpcbind_port` moves only for tests."""
    first = await _first_port(target, progress)
    if isinstance(first, str):
        return first
    return await _through_rpcbind(target, progress, rpcbind_port, first.why)


async def probe(url: str, timeout: float, rpcbind_port: int = RPCBIND_PORT) -> ProbeResult:
    """One NFS server within `timeout` seconds in all."""
    started = time.monotonic()
    try:
        target = parse_url(url)
    except ValueError as exc:
        return ProbeResult(NAME, without_userinfo(url), "bad-answer", f"unusable URL: {exc}")
    status, detail = await oncrpc.bounded(lambda progress: ask(target, progress, rpcbind_port), timeout)
    return ProbeResult(NAME, target.url, status, detail, time.monotonic() - started)


def pool_url(host: str, port: int, path: str) -> Optional[str]:
    """The nfs:// URL of an export, or None when the parts make no usable one."""
    if not host or not path:
        return None
    shown_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    shown_port = f":{port}" if port else ""
    exported = quote(path if path.startswith("/") else "/" + path, safe="/:@!$&'()*+,;=-._~%")
    return usable(f"nfs://{shown_host}{shown_port}{exported}", parse_url)


class NfsBackend:
    """The NFS server of a NetworkFilesystem pool."""

    name: str = NAME
    schemes: tuple[str, ...] = ("nfs",)

    def validate(self, url: str) -> None:
        parse_url(url)

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        """The management server lists the server as ipaddress and the export as path;
        libvirt's pool XML has the same as <host name [port]> and <dir path>."""
        return first_host_endpoint(pool, POOL_TYPE, pool_url)

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        return await probe(endpoint, timeout)


BACKEND = NfsBackend()
