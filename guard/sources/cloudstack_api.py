"""The three read-only CloudStack API calls the guard makes, signed as the management
server checks them, over the standard library's HTTP client.

`cs`, and requests beneath it, cost every `check` 300-450 ms of imports on a Debian 12
host (chardet's language tables, pygments, pytz): four times the interpreter with
libvirt and psutil, paid every minute on every hypervisor a monitoring system watches.
Three GET commands need none of it.

The signature is ApiServer.verifyRequest's (apache/cloudstack, server/src/main/java/com/
cloud/api/ApiServer.java): every parameter but `signature`, names sorted, values encoded
as java.net.URLEncoder does with `+` as `%20`, joined with `&`, the whole string
lowercased, HMAC-SHA1 with the secret key, base64. With `signatureVersion=3` the server
refuses a request past its `expires`, so a captured URL is not good for long.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import http.client
import json
import re
import socket
import time
import urllib.parse
from typing import Any, Optional

from guard.hostname import for_lookup

PAGE_SIZE = 500
MAX_PAGES = 200
"""A server whose `count` never adds up must not keep a check paging forever."""
EXPIRES_S = 600
_UNRESERVED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")
_TAG = re.compile(r"<[^>]*>")
_EXCERPT_CHARS = 80


class ApiError(Exception):
    """One line, safe to print: never carries the key, the secret or a signature."""


def java_encode(value: str) -> str:
    """java.net.URLEncoder.encode(value, "UTF-8") with `+` written `%20`: Python's quote()
    leaves `~` alone where Java writes `%7E`, and the difference breaks a signature."""
    out = []
    for byte in value.encode("utf-8"):
        if byte in _UNRESERVED:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def signed_query(params: dict[str, str], key: str, secret: str, now: Optional[float] = None) -> str:
    expires = time.gmtime((time.time() if now is None else now) + EXPIRES_S)
    signed = dict(params, apiKey=key, response="json", signatureVersion="3",
                  expires=time.strftime("%Y-%m-%dT%H:%M:%S+0000", expires))
    query = "&".join(f"{name}={java_encode(signed[name])}" for name in sorted(signed))
    digest = hmac.new(secret.encode("utf-8"), query.lower().encode("utf-8"), hashlib.sha1).digest()
    return f"{query}&signature={java_encode(base64.b64encode(digest).decode('ascii'))}"


class Client:
    """One management server, as guard.toml's [management] names it."""

    def __init__(self, endpoint: str, key: str, secret: str, timeout: float,
                 verify_tls: bool = True, ca: str = "") -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError("the endpoint is not an http:// or https:// URL")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path or "/"
        self.key, self.secret, self.timeout = key, secret, timeout
        self.verify_tls, self.ca = verify_tls, ca

    def _connection(self) -> http.client.HTTPConnection:
        connection = self._plain_or_tls()
        connection._create_connection = _connect  # type: ignore[attr-defined]
        return connection

    def _plain_or_tls(self) -> http.client.HTTPConnection:
        if not self.https:
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        import ssl  # only an https endpoint pays for it

        if self.verify_tls:
            context = ssl.create_default_context(cafile=self.ca or None)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=context)

    def call(self, command: str, **params: str) -> dict[str, Any]:
        """The answer's one inner object (`{"<command>response": {...}}`'s value)."""
        query = signed_query(dict(params, command=command), self.key, self.secret)
        try:
            connection = self._connection()
            try:
                connection.request("GET", f"{self.path}?{query}", headers={"Accept": "application/json"})
                response = connection.getresponse()
                status, reason = response.status, response.reason
                content_type = response.getheader("Content-Type") or ""
                server_date = response.getheader("Date") or ""
                body = _body(response)
            finally:
                connection.close()
        except (socket.timeout, TimeoutError):
            raise ApiError("no answer within the timeout") from None
        except ConnectionRefusedError:
            raise ApiError("connection refused") from None
        except OSError as exc:
            raise ApiError(_os_error(exc)) from None
        except http.client.HTTPException as exc:
            raise ApiError(f"not an HTTP answer ({type(exc).__name__})") from None
        try:
            return _answer(status, reason, content_type, body)
        except ApiError as exc:
            if status == 401:
                raise ApiError(f"{exc}{skew_hint(server_date, time.time())}") from None
            raise

    def list_all(self, command: str, **params: str) -> list[dict[str, Any]]:
        """Every item, page after page, as the server counts them."""
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            answer = self.call(command, page=str(page), pagesize=str(PAGE_SIZE), **params)
            lists = [value for name, value in answer.items() if name != "count"]
            if not lists:
                break
            if len(lists) != 1 or not isinstance(lists[0], list) or \
                    not all(isinstance(item, dict) for item in lists[0]):
                raise ApiError("unexpected answer shape")
            items.extend(lists[0])
            count = answer.get("count")
            total = count if isinstance(count, int) and not isinstance(count, bool) else len(items)
            if len(items) >= total or len(lists[0]) < PAGE_SIZE:
                break
        return items


def _connect(address: tuple[str, int], timeout: Optional[float] = None,
             source_address: Optional[tuple[str, int]] = None) -> socket.socket:
    """http.client's own connect, with the host name given as guard/hostname.py says."""
    host, port = address
    return socket.create_connection((for_lookup(host), port), timeout,  # type: ignore[arg-type]
                                    source_address)


def _body(response: http.client.HTTPResponse) -> bytes:
    try:
        return response.read()
    except http.client.IncompleteRead as exc:
        got = len(exc.partial)
        promised = got + exc.expected if exc.expected is not None else None
        of = f" ({got} of {promised} bytes)" if promised is not None else ""
        raise ApiError(f"the server closed the connection mid-answer{of}") from None


def _os_error(exc: OSError) -> str:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS verification failed ({exc.verify_message}; set [management] ca)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or 'handshake'})"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the endpoint's host ({exc.strerror})"
    return f"cannot connect ({exc.strerror or type(exc).__name__})"


def skew_hint(server_date: str, now: float) -> str:
    """Why a signature the server refuses may have been right: with signatureVersion=3
    ApiServer.verifyRequest refuses a request whose `expires` has passed by its own
    clock, and `expires` is EXPIRES_S after this host's. A host clock that far behind the
    server's (the answer's Date header says the server's) makes every request expired."""
    from datetime import timezone
    from email.utils import parsedate_to_datetime  # loaded with http.client anyway

    try:
        stamp = parsedate_to_datetime(server_date)
        server = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return ""
    behind = server - now
    if behind < EXPIRES_S - 60:
        return ""
    return (f"; this host's clock is {behind / 60:.0f} min behind the server's (its HTTP Date), "
            f"so each request's signature expires before it arrives: check NTP")


def _answer(status: int, reason: str, content_type: str, body: bytes) -> dict[str, Any]:
    """CloudStack answers `{"<command>response": {...}}`, errors too (with errortext);
    anything else is said for what it is."""
    try:
        document = json.loads(body.decode("utf-8"))
    except ValueError:
        prefix = "" if status == 200 else f"HTTP {status} {reason}, "
        raise ApiError(f"{prefix}the answer is not JSON: {describe(content_type, body)}") from None
    except RecursionError:
        raise ApiError("the answer is JSON nested too deeply to read") from None
    inner = next(iter(document.values()), None) if isinstance(document, dict) and len(document) == 1 else None
    if status != 200:
        if isinstance(inner, dict) and "errortext" in inner:
            code = one_line(str(inner.get("errorcode", status)))
            raise ApiError(f"API error: {code} {one_line(str(inner['errortext']))}")
        raise ApiError(f"HTTP {status} {reason}")
    if not isinstance(inner, dict):
        raise ApiError("unexpected answer shape")
    return inner


def describe(content_type: str, body: bytes) -> str:
    """Content type, size and the start of the text (of a web page, its words): enough to
    recognise a proxy's error page or a login portal standing where the API should be."""
    content_type = content_type or "no Content-Type"
    if not body:
        return f"{content_type}, empty"
    text = body[:4096].decode("utf-8", "replace")
    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        text = html.unescape(_TAG.sub(" ", text))
    text = one_line("".join(c if c.isprintable() else " " for c in text))
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "..."
    size = f"{content_type}, {len(body)} bytes"
    return f"{size}: {text}" if text else size


def one_line(text: str) -> str:
    """A status detail is one line: error texts and web pages carry newlines."""
    return " ".join(text.split())
