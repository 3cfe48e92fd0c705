"""ONC-RPC version 2 over TCP, as much of it as a health probe needs (RFC 5531).

NFS, rpcbind and glusterd all speak it, and all of them accept a connection long before
they can answer one: only a reply to a real call says the daemon works. So a probe sends
one CALL with AUTH_NONE credentials (no secret is ever needed to ask a server whether it
is there) and reads one REPLY, every record bounded in size and every step named, so that
a timeout can say which step hung.

The parsers are pure (bytes in, a value or ProbeError("bad-answer") out): whatever a peer
sends, nothing else escapes them.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Callable

from guard.backends import wire
from guard.backends.wire import ProbeError

RPC_VERSION = 2
CALL = 0
REPLY = 1
MSG_ACCEPTED = 0
MSG_DENIED = 1
AUTH_NONE = 0
LAST_FRAGMENT = 0x80000000
MAX_RECORD = 1024 * 1024
"""Far above any reply a probe asks for (a DUMP list is a few hundred bytes); a length
beyond it is refused before a byte of it is read."""
MAX_FRAGMENTS = 1024
MAX_AUTH_BODY = 400
"""RFC 5531 section 8.2: opaque_auth bodies are at most 400 bytes."""

SUCCESS = "SUCCESS"
PROG_UNAVAIL = "PROG_UNAVAIL"
PROG_MISMATCH = "PROG_MISMATCH"
ACCEPT_STATS = {0: SUCCESS, 1: PROG_UNAVAIL, 2: PROG_MISMATCH, 3: "PROC_UNAVAIL",
                4: "GARBAGE_ARGS", 5: "SYSTEM_ERR"}
AUTH_STATS = {0: "AUTH_OK", 1: "AUTH_BADCRED", 2: "AUTH_REJECTEDCRED", 3: "AUTH_BADVERF",
              4: "AUTH_REJECTEDVERF", 5: "AUTH_TOOWEAK", 6: "AUTH_INVALIDRESP", 7: "AUTH_FAILED",
              13: "RPCSEC_GSS_CREDPROBLEM", 14: "RPCSEC_GSS_CTXPROBLEM"}
"""RFC 5531 section 9 (auth_stat); 13 and 14 are RPCSEC_GSS's (RFC 2203 section 5.3.3.3)."""


@dataclass(frozen=True)
class Reply:
    """An accepted reply: `stat` is one of ACCEPT_STATS' names; `results` the procedure's
    XDR results (SUCCESS only); `low`/`high` the versions offered (PROG_MISMATCH only)."""

    xid: int
    stat: str
    results: bytes = b""
    low: int = 0
    high: int = 0


class Xdr:
    """Reads XDR (RFC 4506) items off a byte string; running short is a bad answer."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def _take(self, size: int, item: str) -> bytes:
        if size > len(self.data) - self.pos:
            raise ProbeError("bad-answer", f"{self.what}: truncated at the {item}")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def uint(self, item: str) -> int:
        return int(struct.unpack(">I", self._take(4, item))[0])

    def sint(self, item: str) -> int:
        return int(struct.unpack(">i", self._take(4, item))[0])

    def hyper(self, item: str) -> int:
        return int(struct.unpack(">Q", self._take(8, item))[0])

    def boolean(self, item: str) -> bool:
        value = self.uint(item)
        if value not in (0, 1):
            raise ProbeError("bad-answer", f"{self.what}: {item} is {value}, not an XDR bool")
        return value == 1

    def opaque(self, item: str, limit: int) -> bytes:
        size = self.uint(item)
        if size > limit:
            raise ProbeError("bad-answer", f"{self.what}: {item} of {size} bytes (at most {limit})")
        body = self._take(size, item)
        self._take(-size % 4, item)
        return body

    def string(self, item: str, limit: int) -> str:
        return self.opaque(item, limit).decode("utf-8", "replace")

    def rest(self) -> bytes:
        return self.data[self.pos:]


def call_record(xid: int, prog: int, vers: int, proc: int, args: bytes = b"") -> bytes:
    """One CALL with AUTH_NONE credentials and verifier, as one last fragment
    (RFC 5531 sections 9 and 11)."""
    body = (struct.pack(">6I", xid, CALL, RPC_VERSION, prog, vers, proc)
            + struct.pack(">4I", AUTH_NONE, 0, AUTH_NONE, 0) + args)
    return struct.pack(">I", LAST_FRAGMENT | len(body)) + body


def fragment_header(header: bytes, what: str) -> tuple[bool, int]:
    """(last fragment?, length) of a record-marking header (RFC 5531 section 11)."""
    if len(header) != 4:
        raise ProbeError("bad-answer", f"{what}: a fragment header of {len(header)} bytes")
    word = int(struct.unpack(">I", header)[0])
    size = word & ~LAST_FRAGMENT
    if size > MAX_RECORD:
        shown = header.decode("ascii", "replace")
        looks = f" starting {shown!r}" if header.isascii() and shown.isprintable() else ""
        raise ProbeError("bad-answer", f"{what}: a record fragment of {size} bytes{looks} "
                                       f"(limit {MAX_RECORD}): not an ONC-RPC reply")
    return bool(word & LAST_FRAGMENT), size


async def read_record(reader: asyncio.StreamReader, what: str) -> bytes:
    """One whole record, its fragments joined; never more than MAX_RECORD bytes."""
    parts: list[bytes] = []
    total = 0
    for _ in range(MAX_FRAGMENTS):
        last, size = fragment_header(await wire.read_exactly(reader, 4, what), what)
        total += size
        if total > MAX_RECORD:
            raise ProbeError("bad-answer", f"{what}: a record of more than {MAX_RECORD} bytes")
        parts.append(await wire.read_exactly(reader, size, what))
        if last:
            return b"".join(parts)
    raise ProbeError("bad-answer", f"{what}: more than {MAX_FRAGMENTS} fragments in one record")


def parse_reply(record: bytes, xid: int, what: str) -> Reply:
    """The accepted reply to call `xid`; a denied call is ProbeError "auth" when the server
    wants other credentials, anything else that is not a reply to this call a bad answer.

    RPC_MISMATCH is a bad answer, not auth: the server speaks another RPC version, which is
    the wrong protocol rather than a question of credentials."""
    xdr = Xdr(record, what)
    got_xid = xdr.uint("xid")
    if got_xid != xid:
        raise ProbeError("bad-answer", f"{what}: reply for xid {got_xid:#x}, the call was {xid:#x}")
    mtype = xdr.uint("message type")
    if mtype != REPLY:
        raise ProbeError("bad-answer", f"{what}: message type {mtype}, not a REPLY")
    reply_stat = xdr.uint("reply status")
    if reply_stat == MSG_DENIED:
        reject = xdr.uint("reject status")
        if reject == 0:
            low, high = xdr.uint("lowest RPC version"), xdr.uint("highest RPC version")
            raise ProbeError("bad-answer", f"{what}: RPC_MISMATCH, the server speaks ONC-RPC "
                                           f"versions {low}-{high}, not {RPC_VERSION}")
        if reject == 1:
            code = xdr.uint("auth status")
            name = AUTH_STATS.get(code, f"auth status {code}")
            raise ProbeError("auth", f"{what}: the call was denied ({name}): the server wants "
                                     f"credentials other than AUTH_NONE")
        raise ProbeError("bad-answer", f"{what}: MSG_DENIED with reject status {reject}")
    if reply_stat != MSG_ACCEPTED:
        raise ProbeError("bad-answer", f"{what}: reply status {reply_stat}")
    xdr.uint("verifier flavor")
    xdr.opaque("verifier", MAX_AUTH_BODY)
    code = xdr.uint("accept status")
    stat = ACCEPT_STATS.get(code)
    if stat is None:
        raise ProbeError("bad-answer", f"{what}: accept status {code}")
    if stat == PROG_MISMATCH:
        low, high = xdr.uint("lowest version"), xdr.uint("highest version")
        return Reply(got_xid, stat, low=low, high=high)
    return Reply(got_xid, stat, results=xdr.rest() if stat == SUCCESS else b"")


def unexpected(reply: Reply, what: str) -> ProbeError:
    """A bad answer naming the accept status of a reply that was not SUCCESS."""
    offered = f" (it offers versions {reply.low}-{reply.high})" if reply.stat == PROG_MISMATCH else ""
    return ProbeError("bad-answer", f"{what}: {reply.stat}{offered}")


def new_xid() -> int:
    return secrets.randbits(32)


class Progress:
    """What the probe waits for right now, so that a timeout names the step that hung."""

    def __init__(self) -> None:
        self.waiting = "the probe did not start"


async def connect(host: str, port: int, progress: Progress
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    progress.waiting = f"connecting to {where(host, port)} did not complete"
    return await wire.connect(host, port)


async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, progress: Progress,
               peer: str, label: str, prog: int, vers: int, proc: int, args: bytes = b"") -> Reply:
    """Send one call and read its reply. `label` says which call ("an NFSv4 NULL call"),
    for every message about it."""
    xid = new_xid()
    what = f"the reply from {peer} to {label}"
    progress.waiting = f"no answer from {peer} to {label}"
    try:
        writer.write(call_record(xid, prog, vers, proc, args))
        await writer.drain()
    except ConnectionError as exc:
        raise ProbeError("bad-answer", f"{peer} dropped the connection before {label} was sent "
                                       f"({type(exc).__name__})") from None
    return parse_reply(await read_record(reader, what), xid, what)


async def bounded(work: Callable[[Progress], Awaitable[str]], timeout: float) -> tuple[str, str]:
    """(status, detail) of `work` within `timeout` seconds: its detail when it succeeds,
    the step it was waiting on when time ran out, the classified failure otherwise."""
    progress = Progress()
    try:
        return "healthy", await asyncio.wait_for(work(progress), max(timeout, 0.0))
    except asyncio.TimeoutError:
        return "timeout", f"{progress.waiting} within {timeout:g}s"
    except ProbeError as exc:
        return exc.status, exc.detail


def where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
