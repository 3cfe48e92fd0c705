"""The iSCSI probe against a real tgtd on 127.0.0.1, and a scripted target for what tgtd
never does (continued text, an operational stage, redirects, rejects).

What an operator relies on: a portal that offers the pool's target reads "healthy"; one
that answers without it, demands CHAP, is down, hung, or is not iSCSI at all gets its own
status word with the portal named in the detail; and the probe is over by its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterator
from typing import Callable

import pytest

from guard.backends import iscsi, iscsi_pdu, probe_bounded
from guard.config import Config
from guard.model import Pool, ProbeResult
from tests.support.peers.decoys import hanging_listener, web_server
from tests.support.peers.tgtd import Tgtd, running_tgtd, tgtd_missing
from tests.support.real_parts import real_part_unavailable

POOL_IQN = "iqn.2026-12.org.cloudstack-guard.test:pool1"
OTHER_IQN = "iqn.2026-12.org.cloudstack-guard.test:other"
TIMEOUT = 1.0
SLACK = 0.5
"""The deadline is a contract: the probe's timeout plus scheduling slack, no more."""


def run_probe(url: str, timeout: float = TIMEOUT) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(iscsi.probe(url, timeout))
    return result, time.monotonic() - started


def run_bounded(url: str, timeout: float = TIMEOUT) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = asyncio.run(probe_bounded(iscsi.BACKEND, url, Config(), timeout))
    return result, time.monotonic() - started


@contextlib.contextmanager
def tgtd(targets: tuple[str, ...] = (POOL_IQN,)) -> Iterator[Tgtd]:
    missing = tgtd_missing()
    if missing:
        real_part_unavailable("tgtd", missing)
    with running_tgtd(targets) as peer:
        yield peer


@pytest.fixture(scope="module")
def portal() -> Iterator[Tgtd]:
    """One tgtd offering the pool's target (and another), shared by the tests that leave it up."""
    with tgtd((POOL_IQN, "iqn.2026-12.org.cloudstack-guard.test:pool2")) as peer:
        yield peer


def where(peer: Tgtd) -> str:
    return f"127.0.0.1:{peer.port}"


# -- a real tgtd -----------------------------------------------------------------------


def test_a_portal_listing_the_pools_target_is_healthy(portal: Tgtd) -> None:
    url = f"iscsi://127.0.0.1:{portal.port}/{POOL_IQN}/1"
    for result, _ in (run_probe(url), run_bounded(url)):
        assert result.status == "healthy", result.detail
        assert result.backend == "iscsi"
        assert result.target == url
        assert result.detail == f"target {POOL_IQN} listed by {where(portal)}"


def test_the_libvirt_view_of_the_pool_leads_to_the_same_healthy_portal(portal: Tgtd) -> None:
    pool = Pool("6f1a8a54-0000-4000-8000-000000000001", "Iscsi", "libvirt", source_hosts=("127.0.0.1",),
                source_port=portal.port, source_path=POOL_IQN.upper())
    found = iscsi.BACKEND.endpoint(pool)
    assert found is not None
    assert found.source == "libvirt pool XML"
    result, _ = run_probe(found.url)
    assert result.status == "healthy", result.detail


def test_a_bare_portal_is_healthy_when_discovery_succeeds_and_lists_its_targets(portal: Tgtd) -> None:
    result, _ = run_probe(f"iscsi://127.0.0.1:{portal.port}")
    assert result.status == "healthy", result.detail
    assert where(portal) in result.detail
    assert POOL_IQN in result.detail and "pool2" in result.detail


def test_a_portal_that_does_not_list_the_pools_target_is_a_bad_answer(portal: Tgtd) -> None:
    result, _ = run_probe(f"iscsi://127.0.0.1:{portal.port}/{OTHER_IQN}/1")
    assert result.status == "bad-answer"
    assert not result.reachable
    assert result.detail.startswith(f"portal {where(portal)} answers but does not list {OTHER_IQN}")
    assert f"lists: {POOL_IQN}" in result.detail


def test_a_portal_demanding_chap_for_discovery_is_auth() -> None:
    with tgtd() as peer:
        url = f"iscsi://127.0.0.1:{peer.port}/{POOL_IQN}/1"
        assert run_probe(url)[0].status == "healthy"
        peer.require_discovery_chap("guardtest", "guardtestsecret1")
        for result, _ in (run_probe(url), run_bounded(url)):
            assert result.status == "auth", result.detail
            assert not result.down
            assert f"portal {where(peer)} is alive and demands authentication" in result.detail
            assert "0x0201" in result.detail


def test_a_stopped_portal_is_refused() -> None:
    with tgtd() as peer:
        url = f"iscsi://127.0.0.1:{peer.port}/{POOL_IQN}/1"
        assert run_probe(url)[0].status == "healthy"
        peer.stop()
        for result, _ in (run_probe(url), run_bounded(url)):
            assert result.status == "refused"
            assert result.detail == f"connection to {where(peer)} refused"


def test_a_hung_tgtd_is_a_timeout_within_the_deadline() -> None:
    with tgtd() as peer:
        url = f"iscsi://127.0.0.1:{peer.port}/{POOL_IQN}/1"
        assert run_probe(url)[0].status == "healthy"
        peer.pause()
        for result, elapsed in (run_probe(url), run_bounded(url)):
            assert result.status == "timeout"
            assert result.down
            assert elapsed < TIMEOUT + SLACK
            assert result.detail == (f"no answer from {where(peer)} within {TIMEOUT:g}s awaiting "
                                     "the Login Response")


def test_a_web_server_on_the_port_is_a_bad_answer() -> None:
    with web_server() as port:
        for result, _ in (run_probe(f"iscsi://127.0.0.1:{port}/{POOL_IQN}/1"),
                          run_bounded(f"iscsi://127.0.0.1:{port}/{POOL_IQN}/1")):
            assert result.status == "bad-answer"
            assert result.detail == "an HTTP server answers, not an iSCSI target (HTTP/1.1 400 Bad Request)"


def test_a_listener_that_never_answers_is_a_timeout_within_the_deadline() -> None:
    with hanging_listener() as port:
        for result, elapsed in (run_probe(f"iscsi://127.0.0.1:{port}"), run_bounded(f"iscsi://127.0.0.1:{port}")):
            assert result.status == "timeout"
            assert elapsed < TIMEOUT + SLACK
            assert f"127.0.0.1:{port}" in result.detail and "the Login Response" in result.detail


# -- a scripted target -----------------------------------------------------------------

Script = Callable[["Conversation"], Awaitable[None]]


class Conversation:
    """One initiator connection as the script sees it: requests in, PDUs out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.requests: list[tuple[bytes, list[tuple[str, str]]]] = []

    async def request(self) -> bytes:
        header = await self.reader.readexactly(48)
        length = int.from_bytes(header[5:8], "big")
        data = await self.reader.readexactly(length + (-length % 4))
        self.requests.append((header, iscsi_pdu.parse_keys(data[:length])))
        return header

    def send(self, opcode: int, flags: int, pairs: tuple[tuple[str, str], ...] = (), *, status: int = 0,
             itt: int = 0, ttt: int = 0xFFFFFFFF, stat_sn: int = 0, exp_cmd_sn: int = 1,
             raw: bytes = b"", byte2: int = 0) -> None:
        data = raw or b"".join(f"{k}={v}\0".encode() for k, v in pairs)
        header = bytearray(48)
        header[0], header[1], header[2] = opcode, flags, byte2
        header[5:8] = len(data).to_bytes(3, "big")
        header[16:20] = itt.to_bytes(4, "big")
        if opcode == iscsi_pdu.TEXT_RESPONSE:
            header[20:24] = ttt.to_bytes(4, "big")
        header[24:28] = stat_sn.to_bytes(4, "big")
        header[28:32] = exp_cmd_sn.to_bytes(4, "big")
        header[36], header[37] = status >> 8, status & 0xFF
        self.writer.write(bytes(header) + data + b"\0" * (-len(data) % 4))


def probe_script(script: Script, path: str = f"/{POOL_IQN}/1") -> tuple[ProbeResult, list[Conversation]]:
    """Probe a target on 127.0.0.1 that plays `script` to each connection."""
    conversations: list[Conversation] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conversation = Conversation(reader, writer)
        conversations.append(conversation)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await script(conversation)
            await writer.drain()
            await reader.read()
        writer.close()

    async def main() -> ProbeResult:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await iscsi.probe(f"iscsi://127.0.0.1:{port}{path}", TIMEOUT)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), conversations


def flags(header: bytes) -> int:
    return header[1]


def u32(header: bytes, at: int) -> int:
    return int.from_bytes(header[at:at + 4], "big")


def test_continued_login_text_and_a_text_response_in_two_parts_are_followed() -> None:
    async def script(talk: Conversation) -> None:
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x40, (("TargetPortalGroupTag", "1"),), itt=iscsi_pdu.LOGIN_ITT)
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x83, (("AuthMethod", "None"),), itt=iscsi_pdu.LOGIN_ITT,
                  stat_sn=1)
        await talk.request()
        talk.send(iscsi_pdu.NOP_IN, 0x80)
        talk.send(iscsi_pdu.TEXT_RESPONSE, 0x40, raw=b"TargetName=iqn.2026-12.a:x\0TargetAdd",
                  itt=iscsi_pdu.TEXT_ITT, ttt=0x1234, stat_sn=2, exp_cmd_sn=2)
        await talk.request()
        talk.send(iscsi_pdu.TEXT_RESPONSE, 0x80,
                  raw=f"ress=10.0.0.9:3260,1\0TargetName={POOL_IQN}\0".encode(), itt=iscsi_pdu.TEXT_ITT,
                  stat_sn=3, exp_cmd_sn=3)
        await talk.request()
        talk.send(0x26, 0x80, itt=iscsi_pdu.LOGOUT_ITT, stat_sn=4)

    result, [talk] = probe_script(script)
    assert result.status == "healthy", result.detail
    (login, keys), (more, no_keys), (text, query), (go_on, nothing), (logout, _) = talk.requests
    assert (login[0], flags(login)) == (0x43, 0x83)
    assert ("SessionType", "Discovery") in keys and ("AuthMethod", "None") in keys
    assert ("InitiatorName", iscsi.INITIATOR_NAME) in keys
    assert (flags(more), no_keys) == (0x00, [])
    assert u32(more, 28) == 1
    assert (text[0], query, u32(text, 20), u32(text, 24)) == (0x04, [("SendTargets", "All")], 0xFFFFFFFF, 1)
    assert (u32(go_on, 20), nothing, u32(go_on, 24), u32(go_on, 28)) == (0x1234, [], 2, 3)
    assert (logout[0], flags(logout), u32(logout, 24), u32(logout, 28)) == (0x46, 0x80, 3, 4)


def test_a_target_that_wants_the_operational_stage_gets_it() -> None:
    async def script(talk: Conversation) -> None:
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x81, (("AuthMethod", "None"),), itt=iscsi_pdu.LOGIN_ITT)
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x04, (("MaxBurstLength", "262144"), ("HeaderDigest", "None")),
                  itt=iscsi_pdu.LOGIN_ITT, stat_sn=1)
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x87, itt=iscsi_pdu.LOGIN_ITT, stat_sn=2)
        await talk.request()
        talk.send(iscsi_pdu.TEXT_RESPONSE, 0x80, (("TargetName", POOL_IQN),), itt=iscsi_pdu.TEXT_ITT,
                  stat_sn=3)

    result, [talk] = probe_script(script)
    assert result.status == "healthy", result.detail
    operational, offer, answered = (talk.requests[1], talk.requests[2], talk.requests[3])
    assert flags(operational[0]) == 0x87
    assert ("HeaderDigest", "None") in operational[1] and ("DataDigest", "None") in operational[1]
    assert flags(offer[0]) == 0x87 and offer[1] == [("MaxBurstLength", "262144")]
    assert answered[1] == [("SendTargets", "All")]


def test_a_redirecting_portal_is_a_bad_answer_naming_where_it_points() -> None:
    async def script(talk: Conversation) -> None:
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x00, (("TargetAddress", "10.0.0.7:3260,1"),), status=0x0101,
                  itt=iscsi_pdu.LOGIN_ITT)

    result, _ = probe_script(script)
    assert result.status == "bad-answer"
    assert "redirects the discovery login to 10.0.0.7:3260,1" in result.detail
    assert "0x0101: target moved temporarily" in result.detail


def test_a_rejected_sendtargets_is_a_bad_answer() -> None:
    async def script(talk: Conversation) -> None:
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x83, itt=iscsi_pdu.LOGIN_ITT)
        await talk.request()
        talk.send(iscsi_pdu.REJECT, 0x80, byte2=0x05, raw=bytes(48))

    result, _ = probe_script(script)
    assert result.status == "bad-answer"
    assert result.detail == "the target rejected the Text Request (reason 0x05)"


def test_a_target_choosing_chap_is_auth() -> None:
    async def script(talk: Conversation) -> None:
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x00, (("AuthMethod", "CHAP"),), itt=iscsi_pdu.LOGIN_ITT)

    result, _ = probe_script(script)
    assert result.status == "auth"
    assert "(AuthMethod=CHAP)" in result.detail


def test_a_target_closing_mid_answer_is_a_bad_answer() -> None:
    async def script(talk: Conversation) -> None:
        await talk.request()
        talk.writer.write(bytes([iscsi_pdu.LOGIN_RESPONSE, 0x83]) + bytes(20))
        await talk.writer.drain()
        talk.writer.close()

    result, _ = probe_script(script)
    assert result.status == "bad-answer"
    assert "awaiting the Login Response from 127.0.0.1:" in result.detail
    assert "the peer closed after 22 byte(s)" in result.detail


def test_a_target_that_never_finishes_its_listing_is_cut_off() -> None:
    async def endless(talk: Conversation) -> None:
        await talk.request()
        talk.send(iscsi_pdu.LOGIN_RESPONSE, 0x83, itt=iscsi_pdu.LOGIN_ITT)
        while True:
            await talk.request()
            talk.send(iscsi_pdu.TEXT_RESPONSE, 0x00, (("TargetName", OTHER_IQN),), itt=iscsi_pdu.TEXT_ITT,
                      ttt=7)

    result, _ = probe_script(endless)
    assert result.status == "bad-answer"
    assert result.detail == f"the SendTargets answer took more than {iscsi.MAX_PDUS} PDUs"
