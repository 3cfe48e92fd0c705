"""The NFS probe's URL grammar, its endpoints from both views of a pool, its GETPORT
parser, and its version ladder (v4, then v3 directly or through rpcbind) against a small
ONC-RPC server on loopback that answers what each case needs."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends import nfs, oncrpc
from guard.backends.nfs import Target
from guard.backends.wire import ProbeError
from guard.model import Pool

HOST = "127.0.0.1"

# -- URLs ----------------------------------------------------------------------------------


def test_good_urls():
    assert nfs.parse_url("nfs://10.0.0.5/export/primary") == Target("10.0.0.5", 2049, "/export/primary", False)
    assert nfs.parse_url(" NFS://nas.example:2050/x ") == Target("nas.example", 2050, "/x", True)
    assert nfs.parse_url("nfs://[fd00::5]/") == Target("fd00::5", 2049, "/", False)
    assert nfs.parse_url("nfs://[fd00::5]:2049/e").url == "nfs://[fd00::5]:2049/e"
    assert nfs.parse_url("nfs://10.0.0.5/export").url == "nfs://10.0.0.5/export"


def test_a_secret_in_the_url_is_dropped():
    target = nfs.parse_url("nfs://admin:s3cret@10.0.0.5/export")
    assert target.url == "nfs://10.0.0.5/export"


@pytest.mark.parametrize(("url", "message"), [
    ("nfs://10.0.0.5", "no export path in 'nfs://10.0.0.5', want nfs://HOST[:PORT]/PATH"),
    ("http://10.0.0.5/x", "not an nfs:// URL: 'http://10.0.0.5/x', want nfs://HOST[:PORT]/PATH"),
    ("10.0.0.5:/export", "not an nfs:// URL: '10.0.0.5:/export', want nfs://HOST[:PORT]/PATH"),
    ("nfs:///export", "no host in 'nfs:///export', want nfs://HOST[:PORT]/PATH"),
    ("nfs://h:99999/x", "not a usable URL (bad host or port): 'nfs://h:99999/x', want nfs://HOST[:PORT]/PATH"),
    ("nfs://h:port/x", "not a usable URL (bad host or port): 'nfs://h:port/x', want nfs://HOST[:PORT]/PATH"),
    ("nfs://[fd00::5/x", "not a usable URL (bad host or port): 'nfs://[fd00::5/x', want nfs://HOST[:PORT]/PATH"),
    ("nfs://h:0/x", "port 0 in 'nfs://h:0/x'"),
    ("nfs://h/x?ro", "a query or fragment in 'nfs://h/x?ro': an NFS URL has neither"),
    ("nfs://h/x#a", "a query or fragment in 'nfs://h/x#a': an NFS URL has neither"),
])
def test_bad_urls_say_what_is_wrong(url: str, message: str):
    with pytest.raises(ValueError) as caught:
        nfs.parse_url(url)
    assert str(caught.value) == message
    with pytest.raises(ValueError):
        nfs.BACKEND.validate(url)


def test_a_secret_never_reaches_an_error_message():
    for url in ("nfs://u:s3cret@/x", "nfs://u:s3cret@h:99999/x", "http://u:s3cret@h/x"):
        with pytest.raises(ValueError) as caught:
            nfs.parse_url(url)
        assert "s3cret" not in str(caught.value)


def test_an_unusable_url_is_a_bad_answer_without_the_secret():
    result = asyncio.run(nfs.probe("nfs://u:s3cret@h", 1.0))
    assert (result.status, result.target) == ("bad-answer", "nfs://h")
    assert result.detail.startswith("unusable URL: no export path") and "s3cret" not in result.detail


# -- endpoints -----------------------------------------------------------------------------


def pool(origin: str, hosts: tuple[str, ...] = ("10.0.0.5",), path: str = "/export/primary",
         port: int = 0, kind: str = "NetworkFilesystem") -> Pool:
    return Pool("c0ffee00-0000-4000-8000-000000000001", kind, origin, source_hosts=hosts,
                source_path=path, source_port=port)


def test_endpoint_from_the_management_server():
    found = nfs.BACKEND.endpoint(pool("management"))
    assert found is not None
    assert (found.url, found.source) == ("nfs://10.0.0.5/export/primary", "management server")


def test_endpoint_from_libvirt_keeps_its_port():
    found = nfs.BACKEND.endpoint(pool("libvirt", ("nas.example",), "/srv/nfs", 2050))
    assert found is not None
    assert (found.url, found.source) == ("nfs://nas.example:2050/srv/nfs", "libvirt pool XML")
    plain = nfs.BACKEND.endpoint(pool("libvirt", ("nas.example",), "/srv/nfs"))
    assert plain is not None and plain.url == "nfs://nas.example/srv/nfs"


def test_endpoint_spellings_that_a_url_needs():
    v6 = nfs.BACKEND.endpoint(pool("management", ("fd00::5",)))
    assert v6 is not None and v6.url == "nfs://[fd00::5]/export/primary"
    odd = nfs.BACKEND.endpoint(pool("management", path="export/my share#1"))
    assert odd is not None and odd.url == "nfs://10.0.0.5/export/my%20share%231"


def test_no_endpoint_without_what_it_needs():
    assert nfs.BACKEND.endpoint(pool("management", kind="Gluster")) is None
    assert nfs.BACKEND.endpoint(pool("management", hosts=())) is None
    assert nfs.BACKEND.endpoint(pool("management", path="")) is None
    assert nfs.BACKEND.endpoint(pool("history")) is None


# -- GETPORT ------------------------------------------------------------------------------


def test_getport_answers():
    assert nfs.parse_getport(struct.pack(">I", 2049), "w") == 2049
    assert nfs.parse_getport(struct.pack(">I", 0), "w") == 0
    with pytest.raises(ProbeError) as caught:
        nfs.parse_getport(struct.pack(">I", 70000), "w")
    assert caught.value.detail == "w: port 70000"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=12))
def test_random_getport_results_are_a_port_or_a_bad_answer(data: bytes):
    try:
        assert 0 <= nfs.parse_getport(data, "w") <= 65535
    except ProbeError as exc:
        assert exc.status == "bad-answer"


# -- the version ladder against a fake ONC-RPC server -----------------------------------

Answer = Callable[[int, int, int, bytes], Optional[bytes]]
"""(prog, vers, proc, args) -> the reply after its xid, None to close instead, or SILENT
to keep the connection and never answer."""
SILENT = b"(silent)"


def accepted(stat: int, tail: bytes = b"") -> bytes:
    return struct.pack(">5I", 1, 0, 0, 0, stat) + tail


def success(tail: bytes = b"") -> bytes:
    return accepted(0, tail)


def mismatch(low: int, high: int) -> bytes:
    return accepted(2, struct.pack(">II", low, high))


class FakeRpc:
    """Records every call as (connection number, prog, vers, proc, args)."""

    def __init__(self, answer: Answer, xid_offset: int = 0) -> None:
        self.answer = answer
        self.xid_offset = xid_offset
        self.calls: list[tuple[int, int, int, int, bytes]] = []
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                header = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack(">I", header)[0] & 0x7FFFFFFF)
                xid, _, _, prog, vers, proc = struct.unpack(">6I", body[:24])
                args = body[40:]
                self.calls.append((number, prog, vers, proc, args))
                reply = self.answer(prog, vers, proc, args)
                if reply is None:
                    break
                if reply == SILENT:
                    await reader.read()
                    break
                payload = struct.pack(">I", (xid + self.xid_offset) & 0xFFFFFFFF) + reply
                writer.write(struct.pack(">I", 0x80000000 | len(payload)) + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(fake: FakeRpc) -> AsyncIterator[FakeRpc]:
    server = await asyncio.start_server(fake.handle, HOST, 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def nfs_v3_only(prog: int, vers: int, proc: int, args: bytes) -> bytes:
    return success() if vers == 3 else mismatch(3, 3)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def ask(target: Target, rpcbind_port: int) -> tuple[str, str]:
    return await oncrpc.bounded(lambda progress: nfs.ask(target, progress, rpcbind_port), 3.0)


def test_a_v4_server_is_healthy_after_one_call():
    async def run() -> tuple[tuple[str, str], FakeRpc]:
        async with serving(FakeRpc(lambda *_: success())) as fake:
            return await ask(Target(HOST, fake.port, "/e", True), closed_port()), fake

    (status, detail), fake = asyncio.run(run())
    assert (status, detail) == ("healthy", f"NFSv4 answers on {HOST}:{fake.port}")
    assert fake.calls == [(1, 100003, 4, 0, b"")]


def test_with_an_explicit_port_v3_is_asked_on_the_same_connection():
    async def run() -> tuple[tuple[str, str], FakeRpc]:
        async with serving(FakeRpc(nfs_v3_only)) as fake:
            return await ask(Target(HOST, fake.port, "/e", True), closed_port()), fake

    (status, detail), fake = asyncio.run(run())
    where = f"{HOST}:{fake.port}"
    assert (status, detail) == ("healthy", f"NFSv3 answers on {where} ({where} offers NFS versions 3-3, not 4)")
    assert fake.calls == [(1, 100003, 4, 0, b""), (1, 100003, 3, 0, b"")]


def test_without_a_port_a_v3_server_is_found_through_rpcbind():
    async def run() -> tuple[tuple[str, str], FakeRpc, FakeRpc]:
        async with serving(FakeRpc(nfs_v3_only)) as server:
            def portmap(prog: int, vers: int, proc: int, args: bytes) -> bytes:
                return success(struct.pack(">I", server.port))

            async with serving(FakeRpc(portmap)) as rpcbind:
                answer = await ask(Target(HOST, server.port, "/e", False), rpcbind.port)
                return answer, server, rpcbind

    (status, detail), server, rpcbind = asyncio.run(run())
    nfs_at, rpcbind_at = f"{HOST}:{server.port}", f"{HOST}:{rpcbind.port}"
    assert status == "healthy"
    assert detail == (f"NFSv3 answers on {nfs_at}, the port rpcbind on {rpcbind_at} gives "
                      f"({nfs_at} offers NFS versions 3-3, not 4)")
    assert rpcbind.calls == [(1, 100000, 2, 3, struct.pack(">4I", 100003, 3, 6, 0))]
    assert server.calls == [(1, 100003, 4, 0, b""), (2, 100003, 3, 0, b"")]


def test_nothing_on_the_nfs_port_and_nfs_unregistered_is_refused():
    nfs_port = closed_port()

    async def run() -> tuple[tuple[str, str], FakeRpc]:
        async with serving(FakeRpc(lambda *_: success(struct.pack(">I", 0)))) as rpcbind:
            return await ask(Target(HOST, nfs_port, "/e", False), rpcbind.port), rpcbind

    (status, detail), rpcbind = asyncio.run(run())
    assert status == "refused"
    assert detail == (f"connection to {HOST}:{nfs_port} refused; NFS not registered with rpcbind on "
                      f"{HOST}:{rpcbind.port}")


def test_nothing_on_either_port_is_refused():
    nfs_port, rpcbind_port = closed_port(), closed_port()
    status, detail = asyncio.run(ask(Target(HOST, nfs_port, "/e", False), rpcbind_port))
    assert status == "refused"
    assert detail == (f"connection to {HOST}:{nfs_port} refused; rpcbind on {HOST}:{rpcbind_port} "
                      "refused too, so no NFSv3 port is known")


def test_an_explicit_port_that_refuses_does_not_ask_rpcbind():
    nfs_port = closed_port()
    status, detail = asyncio.run(ask(Target(HOST, nfs_port, "/e", True), 1))
    assert (status, detail) == ("refused", f"connection to {HOST}:{nfs_port} refused")


@pytest.mark.parametrize(("reply", "status", "says"), [
    (accepted(1), "bad-answer", "speaks ONC-RPC but serves no NFS (PROG_UNAVAIL to an NFSv4 NULL call)"),
    (mismatch(2, 2), "bad-answer", "offers NFS versions 2-2: neither 4 nor 3, which a mount would use"),
    (mismatch(3, 4), "bad-answer", "offers NFS versions 3-4 but answered PROG_MISMATCH to version 4"),
    (accepted(5), "bad-answer", "to an NFSv4 NULL call: SYSTEM_ERR"),
    (struct.pack(">IIII", 1, 1, 1, 1), "auth", "the call was denied (AUTH_BADCRED)"),
    (None, "bad-answer", "the peer closed after nothing"),
])
def test_servers_that_are_not_usable_nfs(reply: Optional[bytes], status: str, says: str):
    async def run() -> tuple[tuple[str, str], int]:
        async with serving(FakeRpc(lambda *_: reply)) as fake:
            return await ask(Target(HOST, fake.port, "/e", True), closed_port()), fake.port

    (got, detail), port = asyncio.run(run())
    assert got == status
    assert f"{HOST}:{port}" in detail and says in detail


def test_a_reply_to_another_call_is_a_bad_answer():
    async def run() -> tuple[tuple[str, str], int]:
        async with serving(FakeRpc(lambda *_: success(), xid_offset=1)) as fake:
            return await ask(Target(HOST, fake.port, "/e", True), closed_port()), fake.port

    (status, detail), port = asyncio.run(run())
    assert status == "bad-answer"
    assert detail.startswith(f"the reply from {HOST}:{port} to an NFSv4 NULL call: reply for xid")


def test_a_server_that_answers_v4_mismatch_then_hangs_times_out_naming_the_v3_call():
    def then_hang(prog: int, vers: int, proc: int, args: bytes) -> Optional[bytes]:
        return mismatch(3, 3) if vers == 4 else SILENT

    async def run() -> tuple[tuple[str, str], int]:
        async with serving(FakeRpc(then_hang)) as fake:
            target = Target(HOST, fake.port, "/e", True)
            answer = await oncrpc.bounded(lambda p: nfs.ask(target, p, 1), 0.3)
            return answer, fake.port

    (status, detail), port = asyncio.run(run())
    assert (status, detail) == ("timeout", f"no answer from {HOST}:{port} to an NFSv3 NULL call within 0.3s")
