"""What every storage backend offers the guard.

For a pool of its type: where its storage answers (`endpoint`, built from one source's
view of the pool: the management server's ipaddress/path, libvirt's pool XML, or the
backend's own config file), and whether it answers now (`probe`), asked in the
backend's own protocol and classified as ProbeResult.status says (healthy, refused,
timeout, dns, tls, http-error, bad-answer, auth). A bare TCP connect is never a health
probe: a hung daemon still accepts. A probe never raises: every failure is a status;
guard.backends.probe_all stops it at its deadline whatever it does.

An endpoint is a URL in the backend's own scheme, the same form `cloudstack-guard probe`
takes on its command line (nfs://HOST[:PORT]/PATH, rbd://MON[,MON][:PORT]/POOL, ...).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Protocol

from guard.config import Config
from guard.model import Pool, ProbeResult


class Endpoint(NamedTuple):
    url: str
    source: str
    """Where the endpoint came from, for the finding: "management server", "libvirt pool
    XML", "/etc/storpool.conf", "history"."""


class Backend(Protocol):
    name: str
    schemes: tuple[str, ...]
    """URL schemes `cloudstack-guard probe <url>` hands to this backend."""

    def validate(self, url: str) -> None:
        """Raise ValueError with one line naming what is wrong with the URL, before any
        probe: `cloudstack-guard probe` answers UNKNOWN (exit 3) for an unusable target."""
        ...

    def endpoint(self, pool: Pool) -> Optional[Endpoint]:
        """Where this pool's storage answers, from this one view of it; None when this
        view does not say."""
        ...

    async def probe(self, url: str, config: Config, timeout: float) -> ProbeResult:
        ...


class ProbeTarget(NamedTuple):
    """One pool's backend to ask, and where."""

    pool_uuid: str
    backend: str
    endpoint: str
    source: str = ""
