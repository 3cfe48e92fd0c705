"""A minimal HTTP/1.1 GET on asyncio streams, for probes that must obey a hard deadline.

http.client and urllib only bound each socket operation, and a worker thread stuck in
one of them keeps the process alive at exit; a controller that accepts and then drips
bytes could hold `check` far past its timeout. Here the caller wraps everything in one
asyncio deadline and cancellation ends it, including name resolution.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from guard.backends import wire
from guard.backends.wire import ProbeError

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    base_path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_target(raw: str, default_ports: dict[str, int]) -> Target:
    """Accept what operators and CloudStack store: bare host, host:port, or a full URL."""
    text = raw.strip()
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{raw!r} has blanks or control characters; a URL has none")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in default_ports:
        raise ValueError(f"unsupported scheme {scheme!r} in {raw!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {raw!r}")
    port = parts.port or default_ports[scheme]
    return Target(scheme, parts.hostname, port, parts.path.rstrip("/"))


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        size_total = 0
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            size_total += size
            if size_total > MAX_BODY_BYTES:
                raise ProbeError("bad-answer", "answer body too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return b"".join(chunks)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY_BYTES:
            raise ProbeError("bad-answer", "answer body too large")
        return await reader.readexactly(length)
    body = await reader.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise ProbeError("bad-answer", "answer body too large")
    return body


async def get(
    target: Target,
    path: str,
    headers: Optional[dict[str, str]] = None,
    ssl_context: Optional[ssl.SSLContext] = None,
    closed_hint: str = "",
) -> Answer:
    """One GET with `Connection: close`; the caller bounds the time with asyncio.wait_for.
    `closed_hint` ends the detail when a TLS peer hangs up before answering (what the
    backend's peer may want, e.g. a client certificate)."""
    tls = ssl_context if target.scheme == "https" else None
    reader, writer = await wire.connect(target.host, target.port, tls)
    answered = False
    try:
        host_header = f"[{target.host}]" if ":" in target.host else target.host
        lines = [f"GET {target.base_path}{path} HTTP/1.1", f"Host: {host_header}:{target.port}",
                 "Accept: application/json", "Connection: close", "User-Agent: cloudstack-guard"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ProbeError("bad-answer", "answer headers too large") from None
        answered = True
        if len(head) > MAX_HEADER_BYTES:
            raise ProbeError("bad-answer", "answer headers too large")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise ProbeError("bad-answer", f"not an HTTP answer: {status_line[:80]!r}")
        parsed = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                parsed[name.strip().lower()] = value.strip()
        return Answer(int(fields[1]), parsed, await _read_body(reader, parsed))
    except ssl.SSLError as exc:
        raise wire.connect_error(exc, target.host, target.port) from None
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        if tls is not None and not answered:
            # TLS 1.3: the client's handshake ends before the server has judged its
            # certificate, and a rejection's alert can be overtaken by the reset.
            raise ProbeError(
                "tls", f"TLS connection to {target.host}:{target.port} closed before any answer "
                f"({type(exc).__name__}){closed_hint}") from None
        raise ProbeError("bad-answer", f"answer cut short or malformed ({type(exc).__name__})") from None
    except ValueError as exc:
        raise ProbeError("bad-answer", f"answer cut short or malformed ({type(exc).__name__})") from None
    except OSError as exc:
        raise ProbeError("bad-answer", f"connection failed mid-answer: {exc.strerror or exc}") from None
    finally:
        writer.close()
