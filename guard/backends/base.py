"""What every storage backend offers the guard: for a pool of its type, where its
storage answers (the endpoint, from the URL the management server or the history gives)
and whether it answers now, asked in the backend's own protocol under one hard deadline
and classified as ProbeResult.status says (healthy, refused, timeout, dns, tls,
http-error, bad-answer). A probe never raises: every failure is a status."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from guard.config import Config
from guard.model import ProbeResult


class Backend(Protocol):
    name: str
    schemes: tuple[str, ...]
    """URL schemes `cloudstack-guard probe <url>` hands to this backend."""

    async def probe(self, endpoint: str, config: Config, timeout: float) -> ProbeResult:
        ...


class ProbeTarget(NamedTuple):
    """One pool's backend to ask, and where."""

    pool_uuid: str
    backend: str
    endpoint: str
