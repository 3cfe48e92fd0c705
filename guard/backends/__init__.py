"""Storage backends behind one interface (base.py), a module each, and the one table
that maps a backend's name to it. guard/drivers.py names the backend of each pool type;
`check`, the daemon, `probe` and the metrics reach every backend through this table, so
adding one means one module and one row here."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Optional
from urllib.parse import urlsplit

from guard.backends import gluster, iscsi, linstor, nfs, powerflex, rbd, storpool
from guard.backends.base import Backend, Endpoint, ProbeTarget
from guard.config import Config
from guard.model import ProbeResult
from guard.urls import without_userinfo

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    linstor.BACKEND, nfs.BACKEND, rbd.BACKEND, iscsi.BACKEND, gluster.BACKEND, storpool.BACKEND,
    powerflex.BACKEND)}


def backend_named(name: Optional[str]) -> Optional[Backend]:
    return BACKENDS.get(name) if name else None


def backend_for_url(url: str) -> Optional[Backend]:
    """By the scheme of the URL's first entry (a comma list names HA controllers); an
    entry without one is a bare host:port, as CloudStack stores LINSTOR's."""
    first = url.split(",", 1)[0].strip()
    # A backend whose URLs have no scheme:// of their own says which are its (StorPool's
    # `storpool:` and CloudStack's SP_API_HTTP=...;SP_AUTH_TOKEN=...).
    for backend in BACKENDS.values():
        claims = getattr(backend, "claims", None)
        if claims is not None and claims(first):
            return backend
    scheme = urlsplit(first).scheme.lower() if "://" in first else "http"
    return next((b for b in BACKENDS.values() if scheme in b.schemes), None)


GRACE_S = 0.2
"""How long past its timeout a probe may take to give its own, more precise answer
before it is cut off and called a timeout."""


async def probe_bounded(backend: Backend, url: str, config: Config, timeout: float) -> ProbeResult:
    """The backend's answer, or `timeout` once its deadline passed, whatever the peer
    does; a bug in a probe is a bad-answer with its name, never an exception out of a
    source."""
    started = time.monotonic()
    # A backend whose URLs break the URL grammar (RBD's base64 secret holds '/') says
    # itself how to show one without its secret.
    shown = getattr(backend, "shown", without_userinfo)(url)
    try:
        result = await asyncio.wait_for(backend.probe(url, config, timeout), timeout + GRACE_S)
    except asyncio.TimeoutError:
        return ProbeResult(backend.name, shown, "timeout", f"no complete answer from {shown} "
                           f"within {timeout:g}s", time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - a probe must never take the caller down
        return ProbeResult(backend.name, shown, "bad-answer",
                           f"the {backend.name} probe failed: {type(exc).__name__}",
                           time.monotonic() - started)
    return result


async def probe_all(targets: list[ProbeTarget], config: Config) -> dict[tuple[str, str], ProbeResult]:
    """Each distinct (backend, endpoint) once, all at the same time: one hung backend
    delays no other, and each probe has the configured deadline. Each result names where
    its endpoint came from."""
    sources = {(t.backend, t.endpoint): t.source for t in targets}
    unique = sorted(k for k in sources if k[0] in BACKENDS)
    results = await asyncio.gather(*(probe_bounded(BACKENDS[name], endpoint, config,
                                                   config.probes.timeout)
                                     for name, endpoint in unique))
    return {key: replace(result, source=sources[key]) for key, result in zip(unique, results)}


def probe_all_now(targets: list[ProbeTarget], config: Config) -> dict[tuple[str, str], ProbeResult]:
    """probe_all for a caller outside an event loop (`check`)."""
    return asyncio.run(probe_all(targets, config)) if targets else {}


__all__ = ["BACKENDS", "Backend", "Endpoint", "ProbeTarget", "backend_for_url", "backend_named",
           "probe_all", "probe_all_now", "probe_bounded"]
