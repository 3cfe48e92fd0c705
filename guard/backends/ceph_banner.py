"""The banner every Ceph messenger greets a connection with: the wire part of the RBD probe.

A monitor, like every Ceph daemon, writes its banner to each connection before any
authentication (msgr2: src/msg/async/ProtocolV2.cc _banner_exchange; msgr1:
ProtocolV1.cc send_server_banner). A banner is thus proof that a Ceph messenger, not
merely some server, listens on a port, and it takes no cephx secret to get one. This
module is that wire format alone: the banners the probe sends as a client does, and the
reader and parsers for the peer's, which read exactly one banner, never a length the
peer made up, and answer anything else with ProbeError bad-answer. Which monitors to ask,
on which ports, and how many must answer is rbd.py's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass
from typing import Callable, TypeVar

from guard.backends import wire
from guard.backends.wire import ProbeError

# src/include/msgr.h: CEPH_BANNER_V2_PREFIX; then a le16 length and that many bytes, the
# le64 supported and le64 required msgr2 features (src/msg/async/ProtocolV2.cc
# _banner_exchange). Both ends write their banner first, then read the other's.
V2_PREFIX = b"ceph v2\n"
V2_FEATURES = struct.Struct("<QQ")
MAX_V2_PAYLOAD = 4096
"""Ceph sends 16 bytes; a longer payload may carry future fields, a huge one is not a
monitor."""

# src/include/msgr.h: CEPH_BANNER. A msgr1 server writes it on accept, then its own
# address and the client's as it sees them, each a legacy entity_addr_t
# (src/msg/async/ProtocolV1.cc send_server_banner); it then reads the client's banner and
# address (wait_client_banner: strlen(CEPH_BANNER) + sizeof(ceph_entity_addr)).
V1_BANNER = b"ceph v027"
# Legacy entity_addr_t (src/msg/msg_types.h, encode without MSG_ADDR2): le32 0 (the
# marker of the legacy form), le32 nonce, a 128-byte sockaddr_storage whose ss_family is
# in network byte order, like the port and address inside it.
LEGACY_ADDR = struct.Struct("<II128s")
V1_ANSWER_LEN = len(V1_BANNER) + 2 * LEGACY_ADDR.size

AF_INET = 2
AF_INET6 = 10
"""Linux's numbers, which Ceph's legacy sockaddr encoding uses on the wire."""

CLIENT_BANNER_V2 = V2_PREFIX + struct.pack("<H", V2_FEATURES.size) + V2_FEATURES.pack(0, 0)
"""Supported 0, required 0: the probe offers no msgr2 feature, for it never goes past
the banner; the monitor requires none (CEPH_MSGR2_REQUIRED_FEATURES is 0)."""
CLIENT_BANNER_V1 = V1_BANNER + LEGACY_ADDR.pack(0, 0, struct.pack(">H", AF_INET))
"""A blank IPv4 address, as a client that has not bound one sends: the monitor then
takes the address it sees the connection come from."""

T = TypeVar("T")


@dataclass(frozen=True)
class Banner:
    protocol: str
    """"msgr2" or "msgr1"."""
    info: str


def _show_bytes(data: bytes) -> str:
    return repr(data[:16].decode("latin-1"))


def banner_length(data: bytes) -> int:
    """How many bytes the banner starting with `data` has in all, once its start (at
    least 8 bytes) is in: the reader reads exactly that many and no more. ProbeError
    bad-answer for anything that is not the start of a Ceph banner, or whose length field
    is out of bounds, before the rest is read."""
    if len(data) < len(V2_PREFIX):
        raise ProbeError("bad-answer", f"banner cut short after {len(data)} byte(s)")
    if data.startswith(V2_PREFIX):
        if len(data) < len(V2_PREFIX) + 2:
            return len(V2_PREFIX) + 2
        (size,) = struct.unpack_from("<H", data, len(V2_PREFIX))
        if not V2_FEATURES.size <= size <= MAX_V2_PAYLOAD:
            raise ProbeError("bad-answer", f"msgr2 banner announces {size} bytes of features, "
                             f"expected {V2_FEATURES.size} to {MAX_V2_PAYLOAD}")
        return len(V2_PREFIX) + 2 + size
    if data.startswith(V1_BANNER[:len(V2_PREFIX)]):
        return V1_ANSWER_LEN
    raise ProbeError("bad-answer", f"sent {_show_bytes(data)}, not a Ceph banner")


def _legacy_addr(raw: bytes) -> str:
    _marker, _nonce, storage = LEGACY_ADDR.unpack(raw)
    family, port = struct.unpack_from(">HH", storage)
    if family == AF_INET:
        return f"{ipaddress.IPv4Address(storage[4:8])}:{port}"
    if family == AF_INET6:
        return f"[{ipaddress.IPv6Address(storage[8:24])}]:{port}"
    return f"an address of family {family}"


def parse_banner(data: bytes) -> Banner:
    """The monitor's banner, exactly banner_length(data) bytes; ProbeError bad-answer for
    anything else."""
    need = banner_length(data)
    if len(data) != need:
        raise ProbeError("bad-answer", f"banner has {len(data)} byte(s), expected {need}")
    if data.startswith(V2_PREFIX):
        supported, required = V2_FEATURES.unpack_from(data, len(V2_PREFIX) + 2)
        return Banner("msgr2", f"features supported {supported:#x} required {required:#x}")
    if not data.startswith(V1_BANNER):
        raise ProbeError("bad-answer", f"sent {_show_bytes(data)}, not a known Ceph banner")
    start = len(V1_BANNER)
    mine = _legacy_addr(data[start:start + LEGACY_ADDR.size])
    return Banner("msgr1", f"monitor at {mine}")


def _at(where: str, check: Callable[[bytes], T], data: bytes) -> T:
    try:
        return check(data)
    except ProbeError as exc:
        raise ProbeError(exc.status, f"{where} {exc.detail}") from None


async def read_banner(reader: asyncio.StreamReader, where: str) -> Banner:
    """Exactly one banner, read in steps whose sizes its first bytes give: never more
    than the banner, never a length the peer made up."""
    what = f"banner from {where}"
    data = await wire.read_exactly(reader, len(V2_PREFIX), what)
    need = _at(where, banner_length, data)
    while len(data) < need:
        data += await wire.read_exactly(reader, need - len(data), what)
        need = _at(where, banner_length, data)
    return _at(where, parse_banner, data)
