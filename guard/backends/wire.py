"""Talking to a storage peer over TCP under one hard deadline, for every backend's probe.

A bare connect proves nothing (a hung daemon still accepts), so probes speak the peer's
own protocol; what they share is here: name resolution that cannot outlive the deadline,
a connect whose failure is already classified (dns, refused, tls), and reads that never
take more than the caller allows, in bytes or in time. The caller bounds the whole
exchange with asyncio.wait_for; cancellation ends it, resolution included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
import threading
from typing import Callable, Optional

from guard.hostname import for_lookup


class ProbeError(Exception):
    """A classified failure: `status` is one of the probe status words."""

    def __init__(self, status: str, detail: str, http_status: Optional[int] = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.http_status = http_status


def _resolve_in_daemon_thread(host: str, port: int) -> asyncio.Future:
    """getaddrinfo can block for many seconds; a daemon thread never holds up exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def deliver(settle: Callable[[], object]) -> None:
        # RuntimeError: the loop has closed (the deadline passed, the probe is over), so
        # nobody is waiting for the answer
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)

    def work() -> None:
        try:
            result = socket.getaddrinfo(for_lookup(host), port, type=socket.SOCK_STREAM)
        except Exception as exc:  # not only OSError: idna's UnicodeError for "a..b"
            error = exc

            def fail() -> None:
                if not future.done():
                    future.set_exception(error)

            deliver(fail)
            return

        def answer() -> None:
            if not future.done():
                future.set_result(result)

        deliver(answer)

    threading.Thread(target=work, name=f"resolve-{host}", daemon=True).start()
    return future


async def address(host: str, port: int) -> str:
    """The first address of `host`, or ProbeError("dns")."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = await _resolve_in_daemon_thread(host, port)
    except Exception as exc:  # whatever getaddrinfo raised in the worker
        raise ProbeError("dns", f"cannot resolve {host}: {exc}") from None
    if not infos:
        raise ProbeError("dns", f"{host} has no address")
    return str(infos[0][4][0])


def connect_error(exc: OSError, host: str, port: int) -> ProbeError:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "verify_message", "") or getattr(exc, "reason", "") or str(exc)
        return ProbeError("tls", f"TLS handshake with {where} failed: {reason}")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError("refused", f"connection to {where} refused")
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ProbeError("refused", f"{where} unreachable ({exc.strerror})")
    return ProbeError("refused", f"cannot connect to {where}: {exc.strerror or exc}")


async def connect(
    host: str, port: int, tls: Optional[ssl.SSLContext] = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An open stream to host:port, or ProbeError (dns, refused, tls)."""
    where = await address(host, port)
    try:
        return await asyncio.open_connection(
            where, port, ssl=tls, server_hostname=host if tls else None
        )
    except OSError as exc:
        raise connect_error(exc, host, port) from None


async def read_exactly(reader: asyncio.StreamReader, size: int, what: str) -> bytes:
    """`size` bytes, or ProbeError("bad-answer") when the peer closes first: a peer that
    speaks another protocol typically answers something short and hangs up."""
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        got = f"{len(exc.partial)} byte(s)" if exc.partial else "nothing"
        raise ProbeError("bad-answer", f"{what}: the peer closed after {got}") from None
    except ConnectionError as exc:
        raise ProbeError("bad-answer", f"{what}: connection lost ({type(exc).__name__})") from None


async def close(writer: asyncio.StreamWriter) -> None:
    """Close without waiting on a peer that does not take part in the goodbye."""
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 0.2)
