"""ONC-RPC framing and reply parsing (RFC 5531): every reply a server may send is told
apart, and nothing a peer sends raises anything but ProbeError."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends import oncrpc
from guard.backends.oncrpc import MAX_RECORD, ProbeError

XID = 0x1234ABCD
WHAT = "the reply from 127.0.0.1:2049 to an NFSv4 NULL call"


def accepted(stat: int, tail: bytes = b"", xid: int = XID, verifier: bytes = b"") -> bytes:
    pad = b"\0" * (-len(verifier) % 4)
    return (struct.pack(">III", xid, oncrpc.REPLY, oncrpc.MSG_ACCEPTED)
            + struct.pack(">II", 0, len(verifier)) + verifier + pad + struct.pack(">I", stat) + tail)


def denied(tail: bytes, xid: int = XID) -> bytes:
    return struct.pack(">III", xid, oncrpc.REPLY, oncrpc.MSG_DENIED) + tail


def record(payload: bytes, last: bool = True) -> bytes:
    return struct.pack(">I", (oncrpc.LAST_FRAGMENT if last else 0) | len(payload)) + payload


def read(data: bytes) -> bytes:
    async def run() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await oncrpc.read_record(reader, WHAT)

    return asyncio.run(run())


def test_a_call_is_one_last_fragment_with_auth_none():
    data = oncrpc.call_record(7, 100003, 4, 0, b"ARGS")
    assert data == (struct.pack(">I", 0x80000000 | 44)
                    + struct.pack(">6I", 7, 0, 2, 100003, 4, 0) + struct.pack(">4I", 0, 0, 0, 0) + b"ARGS")


def test_success_carries_the_results_and_skips_the_verifier():
    reply = oncrpc.parse_reply(accepted(0, b"\0\0\x08\x01", verifier=b"abcde"), XID, WHAT)
    assert (reply.xid, reply.stat, reply.results) == (XID, "SUCCESS", b"\0\0\x08\x01")


def test_prog_mismatch_carries_the_versions_offered():
    reply = oncrpc.parse_reply(accepted(2, struct.pack(">II", 3, 3)), XID, WHAT)
    assert (reply.stat, reply.low, reply.high) == ("PROG_MISMATCH", 3, 3)
    assert oncrpc.unexpected(reply, WHAT).detail == f"{WHAT}: PROG_MISMATCH (it offers versions 3-3)"


@pytest.mark.parametrize(("code", "name"), [(1, "PROG_UNAVAIL"), (3, "PROC_UNAVAIL"),
                                            (4, "GARBAGE_ARGS"), (5, "SYSTEM_ERR")])
def test_other_accept_stats_are_named(code: int, name: str):
    reply = oncrpc.parse_reply(accepted(code), XID, WHAT)
    assert (reply.stat, reply.results) == (name, b"")
    error = oncrpc.unexpected(reply, WHAT)
    assert (error.status, error.detail) == ("bad-answer", f"{WHAT}: {name}")


def test_an_unknown_accept_stat_is_a_bad_answer():
    with pytest.raises(ProbeError) as caught:
        oncrpc.parse_reply(accepted(9), XID, WHAT)
    assert (caught.value.status, caught.value.detail) == ("bad-answer", f"{WHAT}: accept status 9")


def test_a_denied_call_for_credentials_is_auth():
    with pytest.raises(ProbeError) as caught:
        oncrpc.parse_reply(denied(struct.pack(">II", 1, 5)), XID, WHAT)
    assert caught.value.status == "auth"
    assert caught.value.detail == (f"{WHAT}: the call was denied (AUTH_TOOWEAK): the server wants "
                                   "credentials other than AUTH_NONE")


def test_rpc_mismatch_is_the_wrong_protocol_not_auth():
    with pytest.raises(ProbeError) as caught:
        oncrpc.parse_reply(denied(struct.pack(">III", 0, 3, 4)), XID, WHAT)
    assert caught.value.status == "bad-answer"
    assert "RPC_MISMATCH" in caught.value.detail and "versions 3-4, not 2" in caught.value.detail


@pytest.mark.parametrize(("data", "says"), [
    (accepted(0, xid=XID + 1), "reply for xid 0x1234abce, the call was 0x1234abcd"),
    (struct.pack(">II", XID, 0) + bytes(20), "message type 0, not a REPLY"),
    (struct.pack(">III", XID, 1, 2), "reply status 2"),
    (denied(struct.pack(">I", 7)), "MSG_DENIED with reject status 7"),
    (struct.pack(">IIIII", XID, 1, 0, 0, 401) + bytes(404), "verifier of 401 bytes (at most 400)"),
    (accepted(2, struct.pack(">I", 3)), "truncated at the highest version"),
    (b"\x12\x34", "truncated at the xid"),
])
def test_what_is_not_a_reply_to_this_call_is_a_bad_answer(data: bytes, says: str):
    with pytest.raises(ProbeError) as caught:
        oncrpc.parse_reply(data, XID, WHAT)
    assert caught.value.status == "bad-answer"
    assert caught.value.detail == f"{WHAT}: {says}"


def test_fragments_are_joined_into_one_record():
    assert read(record(b"abcd", last=False) + record(b"", last=False) + record(b"efgh")) == b"abcdefgh"


def test_an_http_answer_is_refused_by_its_length_before_it_is_read():
    with pytest.raises(ProbeError) as caught:
        read(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert caught.value.status == "bad-answer"
    assert caught.value.detail == (f"{WHAT}: a record fragment of 1213486160 bytes starting 'HTTP' "
                                   f"(limit {MAX_RECORD}): not an ONC-RPC reply")


def test_fragments_together_beyond_the_cap_are_refused():
    half = MAX_RECORD // 2 + 1
    with pytest.raises(ProbeError) as caught:
        read(record(bytes(half), last=False) + struct.pack(">I", 0x80000000 | half))
    assert caught.value.detail == f"{WHAT}: a record of more than {MAX_RECORD} bytes"


def test_endless_empty_fragments_are_refused():
    with pytest.raises(ProbeError) as caught:
        read(record(b"", last=False) * (oncrpc.MAX_FRAGMENTS + 1))
    assert "more than 1024 fragments" in caught.value.detail


def test_a_peer_closing_mid_record_is_a_bad_answer():
    with pytest.raises(ProbeError) as caught:
        read(struct.pack(">I", 0x80000000 | 24) + b"short")
    assert caught.value.detail == f"{WHAT}: the peer closed after 5 byte(s)"


def test_a_timeout_names_the_step_that_hung():
    async def hangs(progress: oncrpc.Progress) -> str:
        progress.waiting = "no answer from 127.0.0.1:2049 to an NFSv4 NULL call"
        await asyncio.sleep(5)
        return "never"

    status, detail = asyncio.run(oncrpc.bounded(hangs, 0.05))
    assert (status, detail) == ("timeout", "no answer from 127.0.0.1:2049 to an NFSv4 NULL call within 0.05s")


def test_a_classified_failure_keeps_its_status():
    async def refused(progress: oncrpc.Progress) -> str:
        raise ProbeError("refused", "connection to 127.0.0.1:2049 refused")

    assert asyncio.run(oncrpc.bounded(refused, 1.0)) == ("refused", "connection to 127.0.0.1:2049 refused")


# -- whatever a peer sends, only ProbeError ---------------------------------------------

REPLIES = st.one_of(
    st.builds(accepted, st.integers(0, 7), st.binary(max_size=64), st.just(XID), st.binary(max_size=16)),
    st.builds(denied, st.binary(max_size=16)),
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_never_raise_anything_but_probe_error(data: bytes):
    try:
        oncrpc.parse_reply(data, XID, WHAT)
    except ProbeError as exc:
        assert exc.status in ("bad-answer", "auth")


@settings(max_examples=200, deadline=None)
@given(REPLIES, st.data())
def test_truncated_replies_never_raise_anything_but_probe_error(data: bytes, cut: st.DataObject):
    short = data[:cut.draw(st.integers(0, len(data)))]
    try:
        oncrpc.parse_reply(short, XID, WHAT)
    except ProbeError as exc:
        assert exc.status in ("bad-answer", "auth")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=32)), max_size=6), st.binary(max_size=8),
       st.integers(0, 0xFFFFFFFF))
def test_random_streams_are_a_record_or_a_bad_answer(fragments: list[tuple[bool, bytes]], tail: bytes,
                                                    header: int):
    stream = b"".join(record(body, last) for last, body in fragments) + struct.pack(">I", header) + tail
    try:
        assert len(read(stream)) <= MAX_RECORD
    except ProbeError as exc:
        assert exc.status == "bad-answer"


@settings(max_examples=200, deadline=None)
@given(st.integers(MAX_RECORD + 1, 0x7FFFFFFF), st.booleans())
def test_oversized_fragments_are_refused_from_the_header_alone(size: int, last: bool):
    header = struct.pack(">I", (0x80000000 if last else 0) | size)
    with pytest.raises(ProbeError):
        oncrpc.fragment_header(header, WHAT)
