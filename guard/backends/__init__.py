"""Storage backends behind one interface (base.py), a module each, and the one table
that maps a backend's name to it. guard/drivers.py names the backend of each pool type;
`check`, the daemon, `probe` and the metrics reach every backend through this table, so
adding one means one module and one row here.

A backend's module is imported the first time a pool or URL needs it: a host with one
LINSTOR pool should not pay, on every `check`, for six wire protocols it never speaks
(their imports and dataclasses were a tenth of a check's wall time).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import replace
from typing import Optional
from urllib.parse import urlsplit

from guard.backends.base import Backend, Endpoint, ProbeTarget
from guard.config import Config
from guard.model import ProbeResult
from guard.urls import without_userinfo

NAMES = ("linstor", "nfs", "rbd", "iscsi", "gluster", "storpool", "powerflex")
"""Each is the name of its module here and of the Backend that module's BACKEND is."""


def backend_named(name: Optional[str]) -> Optional[Backend]:
    if name not in NAMES:
        return None
    backend: Backend = importlib.import_module(f"{__name__}.{name}").BACKEND
    return backend


def all_backends() -> list[Backend]:
    """Every backend, for what has to ask each of them (a URL's scheme, the schemes
    `probe` takes)."""
    return [b for b in map(backend_named, NAMES) if b is not None]


def backend_for_url(url: str) -> Optional[Backend]:
    """By the scheme of the URL's first entry (a comma list names HA controllers); an
    entry without one is a bare host:port, as CloudStack stores LINSTOR's."""
    first = url.split(",", 1)[0].strip()
    # A backend whose URLs have no scheme:// of their own says which are its (StorPool's
    # `storpool:` and CloudStack's SP_API_HTTP=...;SP_AUTH_TOKEN=...).
    backends = all_backends()
    for backend in backends:
        claims = getattr(backend, "claims", None)
        if claims is not None and claims(first):
            return backend
    scheme = urlsplit(first).scheme.lower() if "://" in first else "http"
    return next((b for b in backends if scheme in b.schemes), None)


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
    backends = {key: found for key in sources if (found := backend_named(key[0])) is not None}
    unique = sorted(backends)
    results = await asyncio.gather(*(probe_bounded(backends[key], key[1], config,
                                                   config.probes.timeout)
                                     for key in unique))
    return {key: replace(result, source=sources[key]) for key, result in zip(unique, results)}


def probe_all_now(targets: list[ProbeTarget], config: Config) -> dict[tuple[str, str], ProbeResult]:
    """probe_all for a caller outside an event loop (`check`)."""
    return asyncio.run(probe_all(targets, config)) if targets else {}


__all__ = ["NAMES", "Backend", "Endpoint", "ProbeTarget", "all_backends", "backend_for_url",
           "backend_named", "probe_all", "probe_all_now", "probe_bounded"]
