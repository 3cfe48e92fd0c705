"""Is a pool's iSCSI portal answering the way the agent's iscsiadm will need it to?

IscsiAdmStorageAdaptor.connectPhysicalDisk logs in to the pool's portal (`iscsiadm -m node
-T IQN -p host:port --login`) each time a disk is attached; a portal that refuses, hangs or
no longer offers the pool's target fails that attach. A bare connect proves nothing (a hung
tgtd still accepts), and a normal login would open a session on a LUN, so the probe does
only what discovery does (RFC 7143): a Login in a Discovery session (SessionType=Discovery,
AuthMethod=None), a Text Request `SendTargets=All`, a Logout. It never opens a normal
session and never touches a LUN. The PDUs and text keys of that exchange are iscsi_pdu's.

What the answers mean:
- healthy: the discovery login succeeded (status 0/0) and the pool's IQN is among the
  TargetNames; for a URL that names only the portal, the successful discovery.
- auth: the portal answered and demands authentication for discovery (status 2/1, or an
  AuthMethod other than None): it is alive, the probe just sends no CHAP.
- bad-answer: any other login refusal or redirect (the status code is in the detail), a
  peer that does not speak iSCSI, or a portal that answers but does not list the pool's
  IQN. A target that hides itself from initiator names it does not know (an initiator-name
  ACL) looks like the last case to this probe, whose initiator name is its own: the detail
  lists what the portal does offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from guard.backends import wire
from guard.backends.base import Endpoint
from guard.backends.iscsi_pdu import (
    ASYNC_MESSAGE,
    FULL_FEATURE,
    LOGIN_ITT,
    NOP_IN,
    OPERATIONAL,
    RESERVED_TAG,
    SECURITY,
    TEXT_ITT,
    LoginAnswer,
    Pdu,
    login_refusal,
    login_request,
    logout_request,
    negotiation_answers,
    parse_keys,
    parse_login_response,
    parse_send_targets,
    parse_text_response,
    read_pdu,
    shown,
    text_request,
)
from guard.backends.wire import ProbeError
from guard.config import Config
from guard.model import Pool, ProbeResult
from guard.urls import without_userinfo

NAME = "iscsi"
DEFAULT_PORT = 3260
"""CloudStackPrimaryDataStoreLifeCycleImpl.initialize uses 3260 for an iscsi:// URL
without a port."""
POOL_TYPES = ("Iscsi", "IscsiLUN")
"""IscsiLUN is what CloudStackPrimaryDataStoreLifeCycleImpl.initialize makes of an
iscsi://HOST/IQN/LUN URL; Iscsi is the managed type (SolidFire, Datera) that
IscsiAdmStorageAdaptor serves, whose ipaddress is the storage portal."""
INITIATOR_NAME = "iqn.2026-12.org.cloudstack-guard:probe"

MAX_TEXT_BYTES = 1 << 20
"""All PDUs of one Login or SendTargets answer together."""
MAX_PDUS = 32
"""PDUs one exchange may take: continuations, and NOP-In or Async messages in between."""
MAX_LOGIN_ROUNDS = 4
"""Security stage, operational stage, and a renegotiation in each."""
MAX_NAME_BYTES = 223
"""RFC 7143 4.2.7.1: an iSCSI name is at most 223 bytes."""
RECV_SEGMENT_BYTES = 65536
"""What the probe declares it takes per PDU; a target that sends more is still read, up to
iscsi_pdu.MAX_SEGMENT_BYTES."""
LOGOUT_WAIT_S = 0.5
"""How long a finished probe waits for the Logout Response: politeness, not health."""

DISCOVERY_KEYS = (("InitiatorName", INITIATOR_NAME), ("SessionType", "Discovery"), ("AuthMethod", "None"))
OPERATIONAL_KEYS = (("HeaderDigest", "None"), ("DataDigest", "None"),
                    ("MaxRecvDataSegmentLength", str(RECV_SEGMENT_BYTES)))
"""What a discovery session needs in the operational stage, for a target that asks for it
instead of moving straight to full-feature phase; digests off, since the probe computes
none."""

_NAME_TYPES = ("iqn.", "eui.", "naa.")
_NAME_FORBIDDEN = re.compile(r"[\s/?#\x00-\x1f\x7f]")
_HOST = re.compile(r"[A-Za-z0-9._-]+")


# -- the URL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    iqn: str
    """Empty when the URL names only the portal."""
    lun: Optional[int] = None

    @property
    def portal(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        path = f"/{self.iqn}" if self.iqn else ""
        if self.lun is not None:
            path += f"/{self.lun}"
        return f"iscsi://{self.portal}{path}"


def _check_name(name: str) -> str:
    if not name.lower().startswith(_NAME_TYPES):
        raise ValueError(f"iSCSI target name must start with iqn., eui. or naa.: {name[:60]!r}")
    if _NAME_FORBIDDEN.search(name):
        raise ValueError(f"iSCSI target name has a character no iSCSI name has: {name[:60]!r}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"iSCSI target name longer than {MAX_NAME_BYTES} bytes")
    return name


def parse_url(text: str) -> Target:
    """iscsi://HOST[:PORT][/IQN[/LUN]], IPv6 hosts in brackets; the form CloudStack's UI
    builds for iSCSI primary storage (ui/src/views/infra/AddPrimaryStorage.vue iscsiURL:
    'iscsi://' + server + '/' + iqn + '/' + lun). A user:password@ is ignored: the probe
    sends no credentials, and no message here quotes it."""
    raw = text.strip()
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise ValueError("bad host or port (IPv6 addresses go in brackets, ports are 1-65535)") from None
    if parts.scheme.lower() != "iscsi" or not raw.lower().startswith("iscsi://"):
        raise ValueError("not an iscsi:// URL")
    if not host:
        raise ValueError("no host in the iscsi:// URL")
    if port == 0:
        raise ValueError("port 0 is not a port")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise ValueError("a query or fragment has no meaning in an iscsi:// URL")
    if ":" not in host and not _HOST.fullmatch(host):
        raise ValueError(f"bad host {host[:60]!r}")
    inner = parts.path[1:] if parts.path.startswith("/") else parts.path
    inner = inner[:-1] if inner.endswith("/") else inner
    segments = inner.split("/") if inner else []
    if len(segments) > 2:
        raise ValueError("too many path segments: expected /IQN/LUN")
    if any(not s for s in segments):
        raise ValueError("empty path segment: expected /IQN/LUN")
    iqn = _check_name(segments[0]) if segments else ""
    lun = None
    if len(segments) == 2:
        if not (segments[1].isascii() and segments[1].isdigit()) or int(segments[1]) >= 1 << 64:
            raise ValueError(f"LUN must be a decimal number: {segments[1][:20]!r}")
        lun = int(segments[1])
    return Target(host, port or DEFAULT_PORT, iqn, lun)


# -- the verdict -------------------------------------------------------------------------


def judge(target: Target, listed: Sequence[tuple[str, Sequence[str]]]) -> tuple[str, str]:
    """iSCSI names compare case-blind: RFC 3722 maps them to lower case."""
    names = [name for name, _ in listed]
    listing = ", ".join(shown(n) for n in names[:5])
    if len(names) > 5:
        listing += f" and {len(names) - 5} more"
    if not target.iqn:
        return "healthy", f"portal {target.portal} answers discovery and lists {listing or 'no target'}"
    if any(name.casefold() == target.iqn.casefold() for name in names):
        return "healthy", f"target {target.iqn} listed by {target.portal}"
    return "bad-answer", (f"portal {target.portal} answers but does not list {target.iqn} "
                          f"(lists: {listing or 'none'})")


# -- the exchange ------------------------------------------------------------------------


class _Discovery:
    """One discovery session; `awaiting` says what it waits for, for a timeout's detail."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.awaiting = "the TCP connection"
        self.writer: Optional[asyncio.StreamWriter] = None
        # RFC 7143 11.12.5, ISID type 10b (random): two probes, from this host or another
        # with the same initiator name, never reinstate each other's session.
        self.isid = bytes((0x80 | os.urandom(1)[0] & 0x3F,)) + os.urandom(5)
        self.cmd_sn = 1
        self.exp_stat_sn = 0
        self.in_session: Optional[asyncio.StreamReader] = None
        """The reader of a session in full-feature phase, to log out of."""

    async def run(self) -> list[tuple[str, tuple[str, ...]]]:
        reader, self.writer = await wire.connect(self.target.host, self.target.port)
        await self._login(reader, self.writer)
        self.in_session = reader
        return await self._send_targets(reader, self.writer)

    async def _send(self, writer: asyncio.StreamWriter, request: bytes) -> None:
        try:
            writer.write(request)
            await writer.drain()
        except ConnectionError as exc:
            raise ProbeError("bad-answer", f"{self.target.portal} dropped the connection while the probe "
                                           f"sent its request ({type(exc).__name__})") from None

    async def _read(self, reader: asyncio.StreamReader) -> Pdu:
        return await read_pdu(reader, f"awaiting {self.awaiting} from {self.target.portal}")

    async def _login(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        csg = SECURITY
        pairs = list(DISCOVERY_KEYS)
        for _ in range(MAX_LOGIN_ROUNDS):
            answer, offered = await self._login_exchange(reader, writer, csg, pairs)
            refusal = login_refusal(answer.status, offered, self.target.portal)
            if refusal is not None:
                raise refusal
            method = next((v for k, v in offered if k == "AuthMethod"), "None")
            if csg == SECURITY and method != "None":
                raise ProbeError("auth", f"portal {self.target.portal} is alive and demands authentication "
                                         f"for discovery (AuthMethod={shown(method)}); the probe sends none")
            if answer.csg != csg:
                raise ProbeError("bad-answer", f"a Login Response for stage {answer.csg} to a request "
                                               f"in stage {csg}")
            if not answer.transit:
                pairs = negotiation_answers(offered, {k for k, _ in pairs})
            elif answer.nsg == FULL_FEATURE:
                return
            elif answer.nsg == OPERATIONAL and csg == SECURITY:
                csg, pairs = OPERATIONAL, list(OPERATIONAL_KEYS)
            else:
                raise ProbeError("bad-answer", f"a Login Response moving from stage {csg} to stage "
                                               f"{answer.nsg}")
        raise ProbeError("bad-answer", f"{self.target.portal} did not finish the discovery login in "
                                       f"{MAX_LOGIN_ROUNDS} rounds")

    async def _login_exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, csg: int,
                              pairs: list[tuple[str, str]]) -> tuple[LoginAnswer, list[tuple[str, str]]]:
        """One Login Request and its whole answer: a target that continues its text (C=1)
        gets empty requests until it is done."""
        self.awaiting = "the Login Response"
        request = login_request(self.isid, csg, FULL_FEATURE, True, pairs, self.cmd_sn, self.exp_stat_sn)
        data = b""
        for _ in range(MAX_PDUS):
            await self._send(writer, request)
            answer = parse_login_response(await self._read(reader))
            if answer.itt != LOGIN_ITT:
                raise ProbeError("bad-answer", f"a Login Response for task 0x{answer.itt:08x}, "
                                               f"not the probe's")
            self.exp_stat_sn = (answer.stat_sn + 1) & 0xFFFFFFFF
            data += answer.data
            if len(data) > MAX_TEXT_BYTES:
                raise ProbeError("bad-answer", f"a Login Response text longer than {MAX_TEXT_BYTES} bytes")
            if answer.status or not answer.more:
                if answer.status == 0:
                    self.cmd_sn = answer.exp_cmd_sn
                return answer, parse_keys(data)
            request = login_request(self.isid, csg, FULL_FEATURE, False, [], self.cmd_sn, self.exp_stat_sn)
        raise ProbeError("bad-answer", f"a Login Response continued over more than {MAX_PDUS} PDUs")

    async def _send_targets(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                            ) -> list[tuple[str, tuple[str, ...]]]:
        self.awaiting = "the Text Response to SendTargets"
        request = text_request(RESERVED_TAG, self.cmd_sn, self.exp_stat_sn, b"SendTargets=All\0")
        await self._send(writer, request)
        data = b""
        for _ in range(MAX_PDUS):
            pdu = await self._read(reader)
            if pdu.opcode in (NOP_IN, ASYNC_MESSAGE):
                continue
            answer = parse_text_response(pdu)
            if answer.itt != TEXT_ITT:
                raise ProbeError("bad-answer", f"a Text Response for task 0x{answer.itt:08x}, "
                                               f"not the probe's")
            self.exp_stat_sn = (answer.stat_sn + 1) & 0xFFFFFFFF
            self.cmd_sn = answer.exp_cmd_sn
            data += answer.data
            if len(data) > MAX_TEXT_BYTES:
                raise ProbeError("bad-answer", f"a SendTargets answer longer than {MAX_TEXT_BYTES} bytes")
            if answer.final:
                return parse_send_targets(parse_keys(data))
            await self._send(writer, text_request(answer.ttt, self.cmd_sn, self.exp_stat_sn, b""))
        raise ProbeError("bad-answer", f"the SendTargets answer took more than {MAX_PDUS} PDUs")

    async def close(self, budget: float) -> None:
        """Log out of a session in full-feature phase, waiting at most `budget` for the
        answer, then hang up; nothing here changes the verdict."""
        if self.writer is None:
            return
        if self.in_session is not None and budget > 0:
            self.awaiting = "the Logout Response"
            with contextlib.suppress(ProbeError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._logout(self.in_session, self.writer), budget)
        await wire.close(self.writer)

    async def _logout(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._send(writer, logout_request(self.cmd_sn, self.exp_stat_sn))
        await self._read(reader)


async def probe(url: str, timeout: float) -> ProbeResult:
    """Discover the portal of one iscsi:// URL within `timeout` seconds in all."""
    started = time.monotonic()
    try:
        target = parse_url(url)
    except ValueError as exc:
        return ProbeResult(NAME, without_userinfo(url), "bad-answer", f"unusable iSCSI URL: {exc}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    session = _Discovery(target)
    try:
        status, detail = judge(target, await asyncio.wait_for(session.run(), timeout))
    except asyncio.TimeoutError:
        status, detail = "timeout", (f"no answer from {target.portal} within {timeout:g}s "
                                     f"awaiting {session.awaiting}")
    except ProbeError as exc:
        status, detail = exc.status, exc.detail
    except OSError as exc:
        status, detail = "bad-answer", f"the connection to {target.portal} failed: {exc.strerror or exc}"
    finally:
        latency = time.monotonic() - started
        await session.close(min(LOGOUT_WAIT_S, deadline - loop.time()))
    return ProbeResult(NAME, target.url, status, detail, latency)


def _endpoint_url(host: str, port: int, path: str) -> Optional[str]:
    """The pool's portal and target; only the portal when the path is no /IQN[/LUN] (a
    managed pool's path is its plugin's URL, SolidFirePrimaryDataStoreLifeCycle)."""
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    portal = f"iscsi://{bracketed}:{port}"
    path = path.strip()
    for url in (f"{portal}/{path.lstrip('/')}" if path else portal, portal):
        with contextlib.suppress(ValueError):
            return parse_url(url).url
    return None


class IscsiBackend:
    """The portal a pool's storage host names, asked the way discovery asks it."""

    name: str = NAME
    schemes: tuple[str, ...] = ("iscsi",)

    def validate(self, url: str) -> None:
        parse_url(url)

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        """From the management server: ipaddress and path, which is "/IQN/LUN" for an iSCSI
        pool (CloudStackPrimaryDataStoreLifeCycleImpl.initialize keeps the URL's path; its
        listing gives no port, so the default one). From libvirt: the source host and
        port, and the device path, which is the IQN."""
        if pool.type not in POOL_TYPES or not pool.source_hosts or not pool.source_hosts[0]:
            return None
        if pool.origin == "management":
            url = _endpoint_url(pool.source_hosts[0], DEFAULT_PORT, pool.source_path)
            return Endpoint(url, "management server") if url else None
        if pool.origin == "libvirt":
            url = _endpoint_url(pool.source_hosts[0], pool.source_port or DEFAULT_PORT, pool.source_path)
            return Endpoint(url, "libvirt pool XML") if url else None
        return None

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        return await probe(endpoint, timeout)


BACKEND = IscsiBackend()
