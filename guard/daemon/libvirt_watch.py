"""libvirt: pool lifecycle events (libvirtaio), then a full listing after every
(re)connect, so nothing that happened while disconnected is missed.

The journal gets one line when libvirt is lost (with the reason) and one when it is back;
in between, the attempts that fail are counted and said again only every few minutes, with
their count. A connect that fails, or a connection that drops before it was stable, is
retried with back-off."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Optional

from guard.backoff import Backoff
from guard.model import SourceStatus
from guard.sources.libvirt import pool_of, quiet_libvirt, read_libvirt_pools

from .runtime import Runtime
from .state import State

LIBVIRT_RETRY_FIRST_S = 0.5
LIBVIRT_RETRY_CAP_S = 30.0
LIBVIRT_STABLE_S = 30.0
"""A connection that lived this long was a working one: the next failure starts the
back-off over. One that drops sooner (a libvirtd restarting in a loop) keeps backing off."""
LIBVIRT_SETTLE_S = 1.0
"""After an outage, libvirt is said back once a connection stayed open this long: one that
libvirtd closes at once is one more failed attempt, not a back-and-lost pair per retry."""

UNREACHABLE, DROPPED, CONNECTED = "libvirt-unreachable", "libvirt-disconnected", "libvirt-connected"
DOWN = "libvirt-down"
"""The say-once key of an outage: its first failure is the line that says libvirt is lost."""

_CLOSE_REASONS = {0: "connection closed on an error", 1: "connection closed by libvirtd",
                  2: "keepalive timed out", 3: "connection closed by the guard"}
"""VIR_CONNECT_CLOSE_REASON_ERROR, _EOF, _KEEPALIVE and _CLIENT, in the lost line's words."""


class LibvirtLink:
    """What the journal was last told about libvirt, so each change is said once."""

    def __init__(self, rt: Runtime, state: State, uri: str) -> None:
        self.rt = rt
        self.state = state
        self.uri = uri
        self.up: Optional[bool] = None
        """None until the first connect or failure is said."""
        self.lost_at = 0.0

    def back(self) -> None:
        if self.up is not True:
            away = {"down_s": round(time.monotonic() - self.lost_at, 1)} if self.up is False else {}
            self.rt.emit(CONNECTED, uri=self.uri, **away, **self.rt.after_failures(DOWN))
        self.up = True

    def failed(self, reason: str) -> None:
        """The first failure after libvirt was up (or at start) says it is lost; the rest
        of the outage is counted under DOWN, said again only every few minutes."""
        problem = f"{self.uri}: {reason}"
        self.state.mark("libvirt", SourceStatus("libvirt", False, problem))
        if self.up is not False:
            event = DROPPED if self.up else UNREACHABLE
            self.up = False
            self.lost_at = time.monotonic()
            self.rt.repeats.clear(DOWN)
            self.rt.repeats.say(DOWN, self.uri)
            self.rt.emit(event, uri=self.uri, error=problem, level="warning")
            return
        unsaid = self.rt.repeats.say(DOWN, self.uri)
        if unsaid is not None:
            self.rt.emit(UNREACHABLE, uri=self.uri, error=problem, repeated=unsaid, level="warning")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def watch_libvirt(rt: Runtime, state: State) -> None:
    """The quiet error handler goes in before the first open: libvirt's own stderr line
    would repeat with every retry, without the guard's context."""
    import libvirt

    quiet_libvirt()
    backoff = Backoff(LIBVIRT_RETRY_FIRST_S, LIBVIRT_RETRY_CAP_S)
    uri = rt.config.libvirt.uri
    link = LibvirtLink(rt, state, uri)
    while not rt.stopping.is_set():
        try:
            conn = await rt.in_thread(libvirt.openReadOnly, uri)
        except libvirt.libvirtError as exc:
            link.failed(_first_line(exc))
            await rt.sleep(backoff.next())
            continue
        began = time.monotonic()
        reason = await _session(rt, state, libvirt, conn, link)
        if rt.stopping.is_set():
            return
        if time.monotonic() - began >= LIBVIRT_STABLE_S:
            backoff.reset()
        link.failed(reason)
        await rt.sleep(backoff.next())


async def _session(rt: Runtime, state: State, libvirt: Any, conn: Any, link: LibvirtLink) -> str:
    """Until the connection closes or the guard stops: returns why it ended."""
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    why = "connection closed"
    ends: tuple[asyncio.Future[Any], ...] = ()

    def on_close(_conn: Any, reason: int, _opaque: Any) -> None:
        nonlocal why
        why = _CLOSE_REASONS.get(reason, why)
        loop.call_soon_threadsafe(closed.set)

    def on_pool(_conn: Any, pool: Any, event: int, _detail: int, _opaque: Any) -> None:
        loop.call_soon_threadsafe(_pool_event, rt, state, libvirt, pool, event)

    callback = None
    try:
        try:
            conn.setKeepAlive(5, 3)
        except libvirt.libvirtError as exc:
            # The test driver and local drivers refuse it: no keepalive, the close
            # callback still tells a dropped connection.
            rt.warn_once("libvirt-keepalive", "libvirt-no-keepalive", _first_line(exc),
                         uri=link.uri, level="info")
        conn.registerCloseCallback(on_close, None)
        callback = conn.storagePoolEventRegisterAny(
            None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, on_pool, None)
        await refresh_pools(rt, state)
        ends = (rt.own(rt.stopping.wait()), rt.own(closed.wait()))
        if link.up is False:
            await asyncio.wait(ends, timeout=LIBVIRT_SETTLE_S, return_when=asyncio.FIRST_COMPLETED)
        if not (closed.is_set() or rt.stopping.is_set()):
            link.back()
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        return why
    except libvirt.libvirtError as exc:
        return _first_line(exc)
    finally:
        for end in ends:
            end.cancel()
        if callback is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.storagePoolEventDeregisterAny(callback)
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _pool_event(rt: Runtime, state: State, libvirt: Any, handle: Any, event: int) -> None:
    name = handle.name()
    rt.emit("libvirt-pool-event", pool=name, lifecycle=event, level="debug")
    rt.own(refresh_pool(rt, state, libvirt, handle, name))


async def refresh_pool(rt: Runtime, state: State, libvirt: Any, handle: Any, name: str) -> None:
    """The pool an event names, read again through the watch's own connection: on a
    host with dozens of pools, listing them all on every event was most of an event's
    way to a finding. One at a time and in the events' order, so the last read wins."""
    async with state.pool_reads:
        try:
            found = await rt.in_thread(pool_of, handle)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                await refresh_pools(rt, state)
                return
            found = None  # undefined: gone from libvirt
        kept = tuple(p for p in state.libvirt_pools if p.name != name)
        state.libvirt_pools = kept + ((found,) if found is not None else ())
        rt.dirty.set()


async def refresh_pools(rt: Runtime, state: State) -> None:
    pools, status = await rt.in_thread(read_libvirt_pools, rt.config.libvirt.uri, rt.config.probes.timeout)
    state.libvirt_pools = tuple(pools)
    state.mark("libvirt", status)
