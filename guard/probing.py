"""`cloudstack-guard probe TARGET...`: what an operator names on the command line, made
into probe targets and probed all at once under one deadline.

A target is a primary-storage URL in a backend's scheme, or the id of a pool the guard
has seen (a uuid, or StorPool's `<template>;<uuid>`), whose type and endpoint the history
kept. A target that names no backend, or a URL its backend cannot use, is unusable: the
command answers UNKNOWN for it before probing anything, since the command line is wrong.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from typing import Union

from guard.backends import Backend, all_backends, backend_for_url, backend_named, probe_bounded
from guard.config import Config
from guard.drivers import driver_for
from guard.history import History
from guard.model import Pool, ProbeResult, pool_id
from guard.urls import without_userinfo

POOL_ID_RE = re.compile(
    r"^(?:[^;/\s]+;)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


@dataclass(frozen=True)
class Planned:
    target: str
    backend: Backend
    url: str
    source: str


@dataclass(frozen=True)
class Unusable:
    target: str
    reason: str


def shown_by(backend: Backend, url: str) -> str:
    """The URL without its secrets, as the backend knows its own URLs (an RBD secret is
    base64 and may hold '/', which ends a plain URL's authority)."""
    return str(getattr(backend, "shown", without_userinfo)(url))


def supported_schemes() -> str:
    return ", ".join(f"{s}://" for b in all_backends() for s in b.schemes)


def plan(target: str, history: History) -> Union[Planned, Unusable]:
    shown = without_userinfo(target) if "SP_AUTH_TOKEN" not in target else "(a StorPool URL)"
    if POOL_ID_RE.match(target):
        known = history.pool(pool_id(target))
        if known is None:
            return Unusable(shown, "the guard has not seen this pool; pass its storage URL")
        backend = backend_named(driver_for(known.type).probe)
        if backend is None:
            return Unusable(shown, f"no backend probes {known.type or 'this'} pools")
        url = known.url
        if not url:
            found = backend.endpoint(Pool(known.uuid, known.type, "history"))
            url = found.url if found else ""
        if not url:
            return Unusable(shown, "no endpoint known for this pool; pass its storage URL")
        return Planned(shown, backend, url, "history")
    backend = backend_for_url(target)
    if backend is None:
        return Unusable(shown, f"no backend probes this scheme; supported: {supported_schemes()}")
    shown = shown_by(backend, target)
    try:
        backend.validate(target)
    except ValueError as exc:
        return Unusable(shown, f"not a usable {backend.name} URL: {exc}")
    return Planned(shown, backend, target, "command line")


async def probe_planned(planned: list[Planned], config: Config, timeout: float) -> list[ProbeResult]:
    """In argument order; each distinct endpoint asked once, all at the same time."""
    unique = {(p.backend.name, p.url): p for p in planned}
    answers = await asyncio.gather(*(probe_bounded(p.backend, p.url, config, timeout)
                                     for p in unique.values()))
    results = dict(zip(unique, answers))
    return [replace(results[p.backend.name, p.url], source=p.source) for p in planned]
