"""The address parts every backend's URL shares, read one way: HOST, HOST:PORT, [IPV6]
and [IPV6]:PORT, and the checks a plain storage URL (nfs://, gluster://) needs. One
reading means one set of messages, each naming what is wrong and never the secret."""

from __future__ import annotations

import ipaddress
from typing import Callable, Optional
from urllib.parse import SplitResult, urlsplit

from guard.backends.base import Endpoint
from guard.model import Pool
from guard.urls import without_userinfo

VIEW_SOURCES = {"management": "management server", "libvirt": "libvirt pool XML"}


def split_host_port(entry: str, what: str) -> tuple[str, Optional[int]]:
    """(host, port or None); `what` names the address in the message ("monitor 'm1:x'",
    "the gateway address"), so a caller whose text may hold a secret does not quote it."""
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            raise ValueError(f"{what} has an unclosed '['")
        host, after = entry[1:close], entry[close + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{what} in [ ] is not an IPv6 address") from None
        if after and not after.startswith(":"):
            raise ValueError(f"unexpected text after the ]: {what}")
        port_text: Optional[str] = after[1:] if after else None
    elif entry.count(":") > 1:
        raise ValueError(f"{what} is IPv6 and goes in brackets, [ADDRESS]:PORT")
    else:
        host, colon, rest = entry.partition(":")
        port_text = rest if colon else None
        if not host:
            raise ValueError(f"{what} names no host")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{what} has a port that is not a TCP port (1-65535)")
    return host, int(port_text)


def split_storage_url(
    text: str, scheme: str, grammar: str, kind: str, this: str
) -> tuple[str, SplitResult, Optional[int]]:
    """(the URL as shown, its parts, its port) for SCHEME://HOST[:PORT]/..., with a
    user:secret@ dropped; `kind` ("an NFS URL") and `this` ("an nfs:// URL") name it in
    messages."""
    shown = without_userinfo(text.strip())
    try:
        parts = urlsplit(shown)
        port = parts.port
    except ValueError:
        raise ValueError(f"not a usable URL (bad host or port): {shown!r}, want {grammar}") from None
    if parts.scheme.lower() != scheme:
        raise ValueError(f"not {this}: {shown!r}, want {grammar}")
    if not parts.hostname:
        raise ValueError(f"no host in {shown!r}, want {grammar}")
    if port == 0:
        raise ValueError(f"port 0 in {shown!r}")
    if parts.query or parts.fragment or shown.endswith(("?", "#")):
        raise ValueError(f"a query or fragment in {shown!r}: {kind} has neither")
    return shown, parts, port


def usable(url: str, parse: Callable[[str], object]) -> Optional[str]:
    """The URL an endpoint() built from a view, or None when its own parser refuses it
    (a view with an odd host or path gives no endpoint rather than a broken probe)."""
    try:
        parse(url)
    except ValueError:
        return None
    return url


def first_host_endpoint(pool: Pool, pool_type: str,
                        build: Callable[[str, int, str], Optional[str]]) -> Optional[Endpoint]:
    """For a pool whose storage is its first source host: the management server lists it
    as ipaddress and path, libvirt's pool XML as <host name [port]> and the source's
    dir or name; `build(host, port, path)` makes the URL (0: the protocol's port)."""
    if pool.type != pool_type or not pool.source_hosts or pool.origin not in VIEW_SOURCES:
        return None
    port = pool.source_port if pool.origin == "libvirt" else 0
    url = build(pool.source_hosts[0], port, pool.source_path)
    return Endpoint(url, VIEW_SOURCES[pool.origin]) if url else None
