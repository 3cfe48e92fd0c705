"""The iSCSI wire format the discovery probe speaks (RFC 7143): PDU framing and the text keys.

Kept apart from the probe (iscsi.py) because it is what the RFC fixes, not what the probe
decides: how a Basic Header Segment is laid out and how long its PDU is, the Login, Text
and Logout Requests, the parsers of a target's answers, and what a Login status or offered
key means. The parsers are what a peer's bytes reach first, so each turns anything at all
into a value or a ProbeError, and refuses a length before reading it; apart from the
session, they can be fed random bytes without a portal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from guard.backends import wire
from guard.backends.wire import ProbeError

BHS_BYTES = 48
MAX_SEGMENT_BYTES = 1 << 20
"""The 24-bit DataSegmentLength could announce 16 MiB; no discovery answer needs more
than this, so more is refused before it is read."""
LOGIN_REQUEST, TEXT_REQUEST, LOGOUT_REQUEST = 0x03, 0x04, 0x06
NOP_IN, LOGIN_RESPONSE, TEXT_RESPONSE, ASYNC_MESSAGE, REJECT = 0x20, 0x23, 0x24, 0x32, 0x3F
TARGET_OPCODES = frozenset({0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3F})
"""RFC 7143 11.2.1.2: the opcodes a target sends; its PDUs have the two top bits clear."""
IMMEDIATE = 0x40
TRANSIT = FINAL = 0x80
CONTINUE = 0x40
SECURITY, OPERATIONAL, FULL_FEATURE = 0, 1, 3
RESERVED_TAG = 0xFFFFFFFF
LOGIN_ITT, TEXT_ITT, LOGOUT_ITT = 1, 2, 3

DECLARATIVE_KEYS = frozenset({"TargetPortalGroupTag", "TargetAlias", "TargetAddress", "TargetName",
                              "MaxRecvDataSegmentLength"})
"""Keys a target declares; nothing answers them (RFC 7143 13)."""

LOGIN_STATUS = {
    0x0101: "target moved temporarily", 0x0102: "target moved permanently",
    0x0200: "initiator error", 0x0201: "authentication failure", 0x0202: "authorization failure",
    0x0203: "not found", 0x0204: "target removed", 0x0205: "unsupported version",
    0x0206: "too many connections", 0x0207: "missing parameter", 0x0208: "can't include in session",
    0x0209: "session type not supported", 0x020A: "session does not exist",
    0x020B: "invalid during login", 0x0300: "target error", 0x0301: "service unavailable",
    0x0302: "out of resources",
}
"""RFC 7143 11.13.5, Status-Class and Status-Detail."""


@dataclass(frozen=True)
class Pdu:
    opcode: int
    header: bytes
    data: bytes


@dataclass(frozen=True)
class LoginAnswer:
    transit: bool
    more: bool
    csg: int
    nsg: int
    status: int
    """Status-Class << 8 | Status-Detail."""
    itt: int
    stat_sn: int
    exp_cmd_sn: int
    data: bytes


@dataclass(frozen=True)
class TextAnswer:
    final: bool
    itt: int
    ttt: int
    stat_sn: int
    exp_cmd_sn: int
    data: bytes


def _u32(header: bytes, at: int) -> int:
    return int.from_bytes(header[at:at + 4], "big")


def _first_line(raw: bytes) -> str:
    line = raw.split(b"\r", 1)[0].split(b"\n", 1)[0].decode("ascii", "replace")
    return "".join(c for c in line if c.isprintable())[:60]


def body_length(header: bytes) -> int:
    """How many bytes follow this Basic Header Segment (AHS, data segment, padding to 4),
    or ProbeError for a header no target sends, before anything more is read."""
    if len(header) != BHS_BYTES:
        raise ProbeError("bad-answer", f"a PDU header is {BHS_BYTES} bytes, got {len(header)}")
    if header.startswith(b"HTTP/"):
        raise ProbeError("bad-answer", f"an HTTP server answers, not an iSCSI target ({_first_line(header)})")
    if header[0] & 0xC0 or header[0] & 0x3F not in TARGET_OPCODES:
        raise ProbeError("bad-answer", f"not an iSCSI target PDU (first byte 0x{header[0]:02x})")
    data = int.from_bytes(header[5:8], "big")
    if data > MAX_SEGMENT_BYTES:
        raise ProbeError("bad-answer", f"a PDU announces a {data}-byte data segment "
                                       f"(more than {MAX_SEGMENT_BYTES} refused)")
    return header[4] * 4 + data + (-data % 4)


def parse_pdu(raw: bytes) -> Pdu:
    """One whole PDU: header, AHS (skipped: discovery needs none), data, padding."""
    header = raw[:BHS_BYTES]
    expected = body_length(header)
    if len(raw) != BHS_BYTES + expected:
        raise ProbeError("bad-answer", f"a PDU of {len(raw)} bytes whose header announces "
                                       f"{BHS_BYTES + expected}")
    start = BHS_BYTES + header[4] * 4
    return Pdu(header[0] & 0x3F, bytes(header), raw[start:start + int.from_bytes(header[5:8], "big")])


async def read_pdu(reader: asyncio.StreamReader, what: str) -> Pdu:
    header = await wire.read_exactly(reader, BHS_BYTES, what)
    rest = body_length(header)
    return parse_pdu(header + (await wire.read_exactly(reader, rest, what) if rest else b""))


def _unexpected(pdu: Pdu, expected: str, request: str) -> ProbeError:
    if pdu.opcode == REJECT:
        return ProbeError("bad-answer", f"the target rejected the {request} (reason 0x{pdu.header[2]:02x})")
    return ProbeError("bad-answer", f"expected a {expected}, got a PDU with opcode 0x{pdu.opcode:02x}")


def parse_login_response(pdu: Pdu) -> LoginAnswer:
    if pdu.opcode != LOGIN_RESPONSE:
        raise _unexpected(pdu, "Login Response", "Login Request")
    flags = pdu.header[1]
    if flags & TRANSIT and flags & CONTINUE:
        raise ProbeError("bad-answer", "a Login Response with both Transit and Continue set")
    return LoginAnswer(
        transit=bool(flags & TRANSIT), more=bool(flags & CONTINUE), csg=(flags >> 2) & 3, nsg=flags & 3,
        status=pdu.header[36] << 8 | pdu.header[37], itt=_u32(pdu.header, 16),
        stat_sn=_u32(pdu.header, 24), exp_cmd_sn=_u32(pdu.header, 28), data=pdu.data,
    )


def parse_text_response(pdu: Pdu) -> TextAnswer:
    if pdu.opcode != TEXT_RESPONSE:
        raise _unexpected(pdu, "Text Response", "Text Request")
    flags = pdu.header[1]
    final = bool(flags & FINAL)
    if final and flags & CONTINUE:
        raise ProbeError("bad-answer", "a Text Response with both Final and Continue set")
    ttt = _u32(pdu.header, 20)
    if not final and ttt == RESERVED_TAG:
        raise ProbeError("bad-answer", "a Text Response to be continued without a Target Transfer Tag")
    return TextAnswer(final, _u32(pdu.header, 16), ttt, _u32(pdu.header, 24), _u32(pdu.header, 28),
                      pdu.data)


def parse_keys(data: bytes) -> list[tuple[str, str]]:
    """key=value pairs, each ended by a NUL (RFC 7143 6.1)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProbeError("bad-answer", "the target's key=value text is not UTF-8") from None
    pairs = []
    for item in text.split("\0"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ProbeError("bad-answer", f"malformed key=value text from the target: {shown(item)}")
        pairs.append((key, value))
    return pairs


def parse_send_targets(pairs: list[tuple[str, str]]) -> list[tuple[str, tuple[str, ...]]]:
    """The targets a SendTargets answer lists, each with its addresses (RFC 7143 13.3 and
    appendix C: each TargetName is followed by the TargetAddress lines that belong to it)."""
    targets: list[tuple[str, list[str]]] = []
    for key, value in pairs:
        if key == "TargetName":
            if not value:
                raise ProbeError("bad-answer", "an empty TargetName in the SendTargets answer")
            targets.append((value, []))
        elif key == "TargetAddress":
            if not targets:
                raise ProbeError("bad-answer", "a TargetAddress before any TargetName in the SendTargets "
                                               "answer")
            targets[-1][1].append(value)
    return [(name, tuple(addresses)) for name, addresses in targets]


def login_refusal(status: int, pairs: list[tuple[str, str]], portal: str) -> Optional[ProbeError]:
    """What a Login Response status other than success means for the pool's portal."""
    if status == 0:
        return None
    meaning = LOGIN_STATUS.get(status, "unknown status")
    code = f"status 0x{status:04x}: {meaning}"
    if status == 0x0201:
        return ProbeError("auth", f"portal {portal} is alive and demands authentication (CHAP) for "
                                  f"discovery; the probe sends none ({code})")
    if status >> 8 == 1:
        where = next((v for k, v in pairs if k == "TargetAddress"), "")
        return ProbeError("bad-answer", f"portal {portal} redirects the discovery login to "
                                        f"{shown(where) or 'an unnamed address'} ({code})")
    return ProbeError("bad-answer", f"portal {portal} refused the discovery login ({code})")


def negotiation_answers(offered: list[tuple[str, str]], sent: set[str]) -> list[tuple[str, str]]:
    """Answers to what a target offered without moving on (T=0): digests off, since the
    probe computes none; any other value accepted as offered, the first of a list."""
    answers = []
    for key, value in offered:
        if key in sent or key in DECLARATIVE_KEYS or value in ("NotUnderstood", "Irrelevant", "Reject"):
            continue
        if key in ("HeaderDigest", "DataDigest"):
            answers.append((key, "None" if "None" in value.split(",") else "Reject"))
        else:
            answers.append((key, value.split(",")[0]))
    return answers


def shown(text: str, limit: int = 80) -> str:
    """A target's text as a detail may quote it: one line, printable, and short, whatever
    the target sent."""
    printable = "".join(c for c in text if c.isprintable())
    return printable if len(printable) <= limit else printable[:limit] + "..."


def _keys_data(pairs: Sequence[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}\0".encode() for k, v in pairs)


def _pdu(first: int, flags: int, fields: bytes, data: bytes) -> bytes:
    """A request: opcode byte, flags, two opcode-specific bytes (zero in every request
    the probe sends: Version-max and Version-min 0 for a Login), no AHS, then bytes 8-47."""
    return (bytes((first, flags, 0, 0, 0)) + len(data).to_bytes(3, "big") + fields
            + data + b"\0" * (-len(data) % 4))


def login_request(isid: bytes, csg: int, nsg: int, transit: bool, pairs: list[tuple[str, str]],
                  cmd_sn: int, exp_stat_sn: int) -> bytes:
    """RFC 7143 11.12: always immediate; TSIH 0 (a new session), CID 0."""
    flags = (TRANSIT if transit else 0) | csg << 2 | (nsg if transit else 0)
    fields = (isid + b"\0\0" + LOGIN_ITT.to_bytes(4, "big") + b"\0" * 4 + cmd_sn.to_bytes(4, "big")
              + exp_stat_sn.to_bytes(4, "big") + b"\0" * 16)
    return _pdu(IMMEDIATE | LOGIN_REQUEST, flags, fields, _keys_data(pairs))


def text_request(ttt: int, cmd_sn: int, exp_stat_sn: int, data: bytes) -> bytes:
    """RFC 7143 11.10: LUN 0; a new exchange carries the reserved Target Transfer Tag, a
    continuation the target's."""
    fields = (b"\0" * 8 + TEXT_ITT.to_bytes(4, "big") + ttt.to_bytes(4, "big") + cmd_sn.to_bytes(4, "big")
              + exp_stat_sn.to_bytes(4, "big") + b"\0" * 16)
    return _pdu(TEXT_REQUEST, FINAL, fields, data)


def logout_request(cmd_sn: int, exp_stat_sn: int) -> bytes:
    """RFC 7143 11.14: reason code 0, close the session."""
    fields = (b"\0" * 8 + LOGOUT_ITT.to_bytes(4, "big") + b"\0" * 4 + cmd_sn.to_bytes(4, "big")
              + exp_stat_sn.to_bytes(4, "big") + b"\0" * 16)
    return _pdu(IMMEDIATE | LOGOUT_REQUEST, FINAL, fields, b"")
