"""The iSCSI wire format: the PDUs the probe sends, and the parsers of what a target
answers, which must turn anything at all into a value or a ProbeError, never another
exception and never a read past a refused length."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends import iscsi, iscsi_pdu
from guard.backends.wire import ProbeError

IQN = "iqn.2010-01.com.example:storage.pool1"


# -- what the probe sends --------------------------------------------------------------


def test_the_discovery_login_request_is_a_leading_immediate_login_with_its_keys() -> None:
    isid = bytes((0x80, 1, 2, 3, 4, 5))
    pdu = iscsi_pdu.login_request(isid, iscsi_pdu.SECURITY, iscsi_pdu.FULL_FEATURE, True,
                                  list(iscsi.DISCOVERY_KEYS), 1, 0)
    keys = b"InitiatorName=iqn.2026-12.org.cloudstack-guard:probe\0SessionType=Discovery\0AuthMethod=None\0"
    assert pdu[:4] == bytes((0x43, 0x83, 0, 0))
    assert int.from_bytes(pdu[5:8], "big") == len(keys)
    assert pdu[8:14] == isid and pdu[14:16] == b"\0\0"
    assert int.from_bytes(pdu[16:20], "big") == iscsi_pdu.LOGIN_ITT
    assert int.from_bytes(pdu[24:28], "big") == 1
    assert pdu[48:48 + len(keys)] == keys
    assert len(pdu) % 4 == 0 and set(pdu[48 + len(keys):]) <= {0}


def test_operational_stage_and_continuation_flags() -> None:
    assert iscsi_pdu.login_request(b"\x80" + bytes(5), 1, 3, True, [], 1, 0)[1] == 0x87
    assert iscsi_pdu.login_request(b"\x80" + bytes(5), 0, 3, False, [], 1, 0)[1] == 0x00


def test_text_and_logout_requests() -> None:
    text = iscsi_pdu.text_request(0xFFFFFFFF, 5, 9, b"SendTargets=All\0")
    assert text[:2] == bytes((0x04, 0x80))
    assert text[20:32] == bytes.fromhex("ffffffff0000000500000009")
    assert text[48:64] == b"SendTargets=All\0"
    logout = iscsi_pdu.logout_request(6, 10)
    assert logout[:2] == bytes((0x46, 0x80)) and len(logout) == 48
    assert logout[24:32] == bytes.fromhex("000000060000000a")


# -- what the target answers -----------------------------------------------------------


def answer(opcode: int, flags: int, data: bytes = b"", status: int = 0, ttt: int = 0xFFFFFFFF,
           ahs: bytes = b"") -> bytes:
    header = bytearray(48)
    header[0], header[1], header[4] = opcode, flags, len(ahs) // 4
    header[5:8] = len(data).to_bytes(3, "big")
    header[20:24] = ttt.to_bytes(4, "big")
    header[36], header[37] = status >> 8, status & 0xFF
    return bytes(header) + ahs + data + b"\0" * (-len(data) % 4)


def test_a_login_response_with_ahs_and_padding_is_read_whole() -> None:
    pdu = iscsi_pdu.parse_pdu(answer(0x23, 0x87, b"TargetPortalGroupTag=1\0", ahs=b"\1" * 8))
    login = iscsi_pdu.parse_login_response(pdu)
    assert (login.transit, login.more, login.csg, login.nsg, login.status) == (True, False, 1, 3, 0)
    assert iscsi_pdu.parse_keys(login.data) == [("TargetPortalGroupTag", "1")]


def test_what_is_not_an_iscsi_target_pdu() -> None:
    with pytest.raises(ProbeError, match=r"an HTTP server answers, not an iSCSI target \(HTTP/1.1 400 Bad"):
        iscsi_pdu.body_length(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n"[:48])
    with pytest.raises(ProbeError, match="not an iSCSI target PDU .first byte 0x43"):
        iscsi_pdu.body_length(answer(0x43, 0x83)[:48])
    with pytest.raises(ProbeError, match="not an iSCSI target PDU .first byte 0x04"):
        iscsi_pdu.body_length(answer(0x04, 0x80)[:48])
    with pytest.raises(ProbeError, match="a PDU header is 48 bytes, got 47"):
        iscsi_pdu.body_length(bytes(47))


def test_an_oversized_data_segment_is_refused_before_it_is_read() -> None:
    header = bytearray(answer(0x24, 0x80)[:48])
    header[5:8] = (iscsi_pdu.MAX_SEGMENT_BYTES + 1).to_bytes(3, "big")

    async def read() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(bytes(header))
        await asyncio.wait_for(iscsi_pdu.read_pdu(reader, "awaiting x"), 1.0)

    with pytest.raises(ProbeError, match="announces a 1048577-byte data segment"):
        asyncio.run(read())


def test_answers_of_the_wrong_kind() -> None:
    with pytest.raises(ProbeError, match="the target rejected the Login Request .reason 0x04"):
        iscsi_pdu.parse_login_response(
            iscsi_pdu.parse_pdu(answer(0x3F, 0x80)[:2] + b"\x04" + answer(0x3F, 0x80)[3:]))
    with pytest.raises(ProbeError, match="expected a Text Response, got a PDU with opcode 0x23"):
        iscsi_pdu.parse_text_response(iscsi_pdu.parse_pdu(answer(0x23, 0x83)))
    with pytest.raises(ProbeError, match="both Transit and Continue"):
        iscsi_pdu.parse_login_response(iscsi_pdu.parse_pdu(answer(0x23, 0xC3)))
    with pytest.raises(ProbeError, match="without a Target Transfer Tag"):
        iscsi_pdu.parse_text_response(iscsi_pdu.parse_pdu(answer(0x24, 0x00)))


def test_keys_and_send_targets() -> None:
    data = (f"TargetName={IQN}\0TargetAddress=10.0.0.5:3260,1\0TargetAddress=[fd00::5]:3260,1\0"
            "TargetAlias=x\0TargetName=iqn.2010-01.com.example:other\0").encode()
    assert iscsi_pdu.parse_send_targets(iscsi_pdu.parse_keys(data)) == [
        (IQN, ("10.0.0.5:3260,1", "[fd00::5]:3260,1")), ("iqn.2010-01.com.example:other", ())]
    assert iscsi_pdu.parse_keys(b"") == []
    with pytest.raises(ProbeError, match="malformed key=value text"):
        iscsi_pdu.parse_keys(b"TargetName\0")
    with pytest.raises(ProbeError, match="not UTF-8"):
        iscsi_pdu.parse_keys(b"TargetName=\xff\0")
    with pytest.raises(ProbeError, match="a TargetAddress before any TargetName"):
        iscsi_pdu.parse_send_targets([("TargetAddress", "10.0.0.5:3260,1")])
    with pytest.raises(ProbeError, match="an empty TargetName"):
        iscsi_pdu.parse_send_targets([("TargetName", "")])


@pytest.mark.parametrize(("status", "word", "text"), [
    (0x0201, "auth", "portal h:3260 is alive and demands authentication (CHAP) for discovery; the probe "
                     "sends none (status 0x0201: authentication failure)"),
    (0x0202, "bad-answer", "portal h:3260 refused the discovery login (status 0x0202: authorization failure)"),
    (0x0101, "bad-answer", "portal h:3260 redirects the discovery login to 10.9.9.9:3260,1 "
                           "(status 0x0101: target moved temporarily)"),
    (0x0301, "bad-answer", "portal h:3260 refused the discovery login (status 0x0301: service unavailable)"),
    (0x0999, "bad-answer", "portal h:3260 refused the discovery login (status 0x0999: unknown status)"),
])
def test_login_refusals(status: int, word: str, text: str) -> None:
    refusal = iscsi_pdu.login_refusal(status, [("TargetAddress", "10.9.9.9:3260,1")], "h:3260")
    assert refusal is not None
    assert (refusal.status, refusal.detail) == (word, text)
    assert iscsi_pdu.login_refusal(0, [], "h:3260") is None


def test_negotiation_answers_turn_digests_off_and_accept_the_rest() -> None:
    offered = [("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C"), ("TargetPortalGroupTag", "1"),
               ("MaxBurstLength", "262144"), ("ErrorRecoveryLevel", "0"), ("X-vendor", "NotUnderstood")]
    assert iscsi_pdu.negotiation_answers(offered, {"ErrorRecoveryLevel"}) == [
        ("HeaderDigest", "None"), ("DataDigest", "Reject"), ("MaxBurstLength", "262144")]


# -- anything at all from the far end --------------------------------------------------


def framed(opcode: int, flags: int, fields: bytes, data: bytes) -> bytes:
    """A well-framed target PDU with random fields, so the parsers past framing are reached."""
    header = bytes((opcode, flags)) + fields[:2] + b"\0" + len(data).to_bytes(3, "big") + fields[2:42]
    return header.ljust(48, b"\0") + data + b"\0" * (-len(data) % 4)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_become_a_pdu_or_a_probe_error(raw: bytes) -> None:
    try:
        pdu = iscsi_pdu.parse_pdu(raw)
    except ProbeError:
        return
    assert len(pdu.header) == 48
    for parser in (iscsi_pdu.parse_login_response, iscsi_pdu.parse_text_response):
        with contextlib.suppress(ProbeError):
            parser(pdu)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0x20, 0x23, 0x24, 0x26, 0x32, 0x3F]), st.integers(0, 255), st.binary(min_size=42, max_size=42),
       st.binary(max_size=300))
def test_random_well_framed_answers_parse_or_raise_probe_errors(opcode: int, flags: int, fields: bytes,
                                                                data: bytes) -> None:
    pdu = iscsi_pdu.parse_pdu(framed(opcode, flags, fields, data))
    for step in (lambda: iscsi_pdu.parse_login_response(pdu), lambda: iscsi_pdu.parse_text_response(pdu),
                 lambda: iscsi_pdu.parse_send_targets(iscsi_pdu.parse_keys(pdu.data)),
                 lambda: iscsi_pdu.login_refusal(pdu.header[36] << 8 | pdu.header[37],
                                                 iscsi_pdu.parse_keys(pdu.data), "h:1")):
        with contextlib.suppress(ProbeError):
            step()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 600))
def test_a_stream_of_anything_truncated_anywhere_reads_as_a_pdu_or_a_probe_error(raw: bytes, cut: int) -> None:
    whole = answer(0x24, 0x80, b"TargetName=" + raw) + raw

    async def read() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(whole[:cut])
        reader.feed_eof()
        await asyncio.wait_for(iscsi_pdu.read_pdu(reader, "awaiting x"), 1.0)

    try:
        asyncio.run(read())
    except ProbeError as exc:
        assert exc.status == "bad-answer"
