"""Storage backends behind one interface (base.py), a module each, and the one table
that maps a backend's name to it. guard/drivers.py names the backend of each pool type;
`check`, the daemon, `probe` and the metrics reach every backend through this table, so
adding one means one module and one row here."""

from __future__ import annotations

import asyncio
from typing import Optional
from urllib.parse import urlsplit

from guard.backends import linstor
from guard.backends.base import Backend, ProbeTarget
from guard.config import Config
from guard.model import ProbeResult

BACKENDS: dict[str, Backend] = {linstor.BACKEND.name: linstor.BACKEND}


def backend_named(name: Optional[str]) -> Optional[Backend]:
    return BACKENDS.get(name) if name else None


def backend_for_url(url: str) -> Optional[Backend]:
    """By the scheme of the URL's first entry (a comma list names HA controllers); an
    entry without one is a bare host:port, as CloudStack stores LINSTOR's."""
    first = url.split(",", 1)[0].strip()
    scheme = urlsplit(first).scheme.lower() if "://" in first else "http"
    return next((b for b in BACKENDS.values() if scheme in b.schemes), None)


async def probe_all(targets: list[ProbeTarget], config: Config) -> dict[tuple[str, str], ProbeResult]:
    """Each distinct (backend, endpoint) once, all at the same time: one hung backend
    delays no other, and each probe has the configured deadline."""
    unique = sorted({(t.backend, t.endpoint) for t in targets if t.backend in BACKENDS})
    results = await asyncio.gather(*(BACKENDS[name].probe(endpoint, config, config.probes.timeout)
                                     for name, endpoint in unique))
    return dict(zip(unique, results))


def probe_all_now(targets: list[ProbeTarget], config: Config) -> dict[tuple[str, str], ProbeResult]:
    """probe_all for a caller outside an event loop (`check`)."""
    return asyncio.run(probe_all(targets, config)) if targets else {}


__all__ = ["BACKENDS", "Backend", "ProbeTarget", "backend_for_url", "backend_named", "probe_all",
           "probe_all_now"]
