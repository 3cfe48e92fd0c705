"""Is glusterd answering for a Gluster pool?

The agent's LibvirtStorageAdaptor mounts a Gluster pool through libvirt: a netfs pool with
<format type='glusterfs'/>, <host name=ipaddress/> and <dir path=volume/>
(LibvirtStorageAdaptor.createNetfsStoragePool with PoolType.GLUSTERFS, LibvirtStoragePoolDef);
the mount fetches the volume's layout from glusterd, port 24007 unless the pool says
otherwise (CloudStackPrimaryDataStoreLifeCycleImpl.initialize). The pool's path is the
volume with a leading slash, from the gluster://host/volume URL it was added with
(StorageManagerImpl.extractUriParamsAsMap). The guard never mounts.

glusterd has no NULL procedure; every GlusterFS RPC service answers the DUMP program
instead, with the list of programs it serves. The probe sends DUMP and checks that the
list has glusterd's management program, so a brick or another service on the port is not
taken for glusterd. That proves glusterd is up, and only that: it says nothing about
whether the pool's volume exists, is started, or has its bricks up, and the detail says
so.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, unquote

from guard.backends import oncrpc, wire
from guard.backends.base import Endpoint
from guard.backends.hostport import first_host_endpoint, split_storage_url, usable
from guard.backends.oncrpc import SUCCESS, Progress, where
from guard.backends.wire import ProbeError
from guard.config import Config
from guard.model import Pool, ProbeResult
from guard.urls import without_userinfo

NAME = "gluster"
POOL_TYPE = "Gluster"
DEFAULT_PORT = 24007
GRAMMAR = "gluster://HOST[:PORT]/VOLUME"

# rpc/rpc-lib/src/xdr-common.h (glusterfs): GLUSTER_DUMP_PROGRAM, GLUSTER_DUMP_VERSION,
# enum gf_dump_procnum (GF_DUMP_NULL 0, GF_DUMP_DUMP 1)
DUMP_PROGRAM = 123451501
DUMP_VERSION = 1
DUMP_PROC = 1
# rpc/rpc-lib/src/protocol-common.h (glusterfs): GD_MGMT_PROGRAM, served by glusterd only
GD_MGMT_PROGRAM = 1238433
MAX_PROGRAMS = 256
MAX_NAME = 1024


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    volume: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"gluster://{host}:{self.port}/{quote(self.volume, safe='/')}"


@dataclass(frozen=True)
class Program:
    name: str
    number: int
    version: int


@dataclass(frozen=True)
class Dump:
    gfs_id: int
    op_ret: int
    op_errno: int
    programs: tuple[Program, ...]


def parse_url(text: str) -> Target:
    """gluster://HOST[:PORT]/VOLUME; a user:secret@ is dropped and never shown."""
    shown, parts, port = split_storage_url(text, "gluster", GRAMMAR, "a Gluster URL", "a gluster:// URL")
    volume = unquote(parts.path).strip("/")
    if not volume:
        raise ValueError(f"no volume in {shown!r}, want {GRAMMAR}")
    return Target(str(parts.hostname), port or DEFAULT_PORT, volume)


def parse_dump(results: bytes, what: str) -> Dump:
    """gf_dump_rsp as rpc/xdr/src/rpc-common-xdr.x (glusterfs) defines it: unsigned hyper
    gfs_id, int op_ret, int op_errno, then an optional gf_prog_detail, a linked list of
    {string progname<>, unsigned hyper prognum, unsigned hyper progver, next}."""
    xdr = oncrpc.Xdr(results, what)
    gfs_id = xdr.hyper("gfs_id")
    op_ret = xdr.sint("op_ret")
    op_errno = xdr.sint("op_errno")
    programs: list[Program] = []
    while xdr.boolean("program list pointer"):
        if len(programs) == MAX_PROGRAMS:
            raise ProbeError("bad-answer", f"{what}: more than {MAX_PROGRAMS} programs")
        name = xdr.string("program name", MAX_NAME)
        programs.append(Program(name, xdr.hyper("program number"), xdr.hyper("program version")))
    return Dump(gfs_id, op_ret, op_errno, tuple(programs))


def judge(dump: Dump, peer: str, volume: str) -> str:
    """The healthy detail for a DUMP answer from glusterd, else ProbeError."""
    if dump.op_ret != 0:
        raise ProbeError("bad-answer", f"{peer} answered DUMP with an error "
                                       f"(op_ret {dump.op_ret}, errno {dump.op_errno})")
    names = ", ".join(sorted({p.name for p in dump.programs}))
    if not any(p.number == GD_MGMT_PROGRAM for p in dump.programs):
        raise ProbeError("bad-answer", f"{peer} answers DUMP but is not glusterd: no glusterd "
                                       f"management program among [{names}]")
    return (f"glusterd answers on {peer} ({len(dump.programs)} programs: {names}); "
            f"the volume {volume} is not checked")


async def ask(target: Target, progress: Progress) -> str:
    peer = where(target.host, target.port)
    label = "a GlusterFS DUMP call"
    reader, writer = await oncrpc.connect(target.host, target.port, progress)
    try:
        # gf_dump_req is one unsigned hyper, gfs_id (rpc-common-xdr.x), which rpcsvc_dump
        # (rpc/rpc-lib/src/rpcsvc.c) never reads: its reply's gfs_id is always 0
        reply = await oncrpc.call(reader, writer, progress, peer, label, DUMP_PROGRAM, DUMP_VERSION,
                                  DUMP_PROC, struct.pack(">Q", 0))
    finally:
        await wire.close(writer)
    what = f"the reply from {peer} to {label}"
    if reply.stat != SUCCESS:
        raise oncrpc.unexpected(reply, what)
    return judge(parse_dump(reply.results, what), peer, target.volume)


async def probe(url: str, timeout: float) -> ProbeResult:
    """One glusterd within `timeout` seconds in all."""
    started = time.monotonic()
    try:
        target = parse_url(url)
    except ValueError as exc:
        return ProbeResult(NAME, without_userinfo(url), "bad-answer", f"unusable URL: {exc}")
    status, detail = await oncrpc.bounded(lambda progress: ask(target, progress), timeout)
    return ProbeResult(NAME, target.url, status, detail, time.monotonic() - started)


def pool_url(host: str, port: int, volume: str) -> Optional[str]:
    """The gluster:// URL of a volume, or None when the parts make no usable one."""
    name = volume.strip("/")
    if not host or not name:
        return None
    shown_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    shown_port = f":{port}" if port else ""
    return usable(f"gluster://{shown_host}{shown_port}/{quote(name, safe='/')}", parse_url)


class GlusterBackend:
    """glusterd of a Gluster pool's first server."""

    name: str = NAME
    schemes: tuple[str, ...] = ("gluster",)

    def validate(self, url: str) -> None:
        parse_url(url)

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        """The management server lists the server as ipaddress and the volume as path
        (with its leading slash); libvirt's pool XML has <host name [port]> and
        <dir path='/volume'/>, or <name> for a native gluster pool."""
        return first_host_endpoint(pool, POOL_TYPE, pool_url)

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        return await probe(endpoint, timeout)


BACKEND = GlusterBackend()
