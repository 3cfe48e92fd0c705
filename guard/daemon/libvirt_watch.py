"""libvirt: pool lifecycle events (libvirtaio), then a full listing after every
(re)connect, so nothing that happened while disconnected is missed. A connect that
fails, or a connection that drops before it was stable, is retried with back-off, and
said once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from guard.backoff import Backoff
from guard.model import SourceStatus
from guard.sources.libvirt import quiet_libvirt, read_libvirt_pools

from .runtime import Runtime
from .state import State

LIBVIRT_RETRY_FIRST_S = 0.5
LIBVIRT_RETRY_CAP_S = 30.0
LIBVIRT_STABLE_S = 30.0
"""A connection that lived this long was a working one: the next failure starts the
back-off over. One that drops sooner (a driver that closes at once) keeps backing off."""


UNREACHABLE, DROPPED, ERROR, CONNECTED = "libvirt-unreachable", "libvirt-disconnected", "libvirt-error", \
    "libvirt-connected"


async def watch_libvirt(rt: Runtime, state: State) -> None:
    """A connection that keeps dropping before it is stable is said once (connected,
    then disconnected), not at every cycle: its keys are forgotten only once a session
    lasted LIBVIRT_STABLE_S, or the warning repeats after a few minutes with its count."""
    import libvirt

    quiet_libvirt()
    backoff = Backoff(LIBVIRT_RETRY_FIRST_S, LIBVIRT_RETRY_CAP_S)
    uri = rt.config.libvirt.uri
    while not rt.stopping.is_set():
        try:
            conn = await rt.in_thread(libvirt.openReadOnly, uri)
        except libvirt.libvirtError as exc:
            problem = f"{uri}: {str(exc).splitlines()[0]}"
            state.mark("libvirt", SourceStatus("libvirt", False, problem))
            if rt.warn_once(UNREACHABLE, UNREACHABLE, problem, uri=uri):
                rt.repeats.clear(CONNECTED)
            await rt.sleep(backoff.next())
            continue
        began = time.monotonic()
        await _session(rt, state, libvirt, conn, uri)
        if rt.stopping.is_set():
            return
        if time.monotonic() - began >= LIBVIRT_STABLE_S:
            backoff.reset()
            for key in (DROPPED, ERROR):
                rt.repeats.clear(key)
        problem = f"{uri}: connection closed"
        state.mark("libvirt", SourceStatus("libvirt", False, problem))
        if rt.warn_once(DROPPED, DROPPED, problem, uri=uri):
            rt.repeats.clear(CONNECTED)
        await rt.sleep(backoff.next())


async def _session(rt: Runtime, state: State, libvirt: Any, conn: Any, uri: str) -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def on_close(_conn: Any, _reason: int, _opaque: Any) -> None:
        loop.call_soon_threadsafe(closed.set)

    def on_pool(_conn: Any, pool: Any, event: int, _detail: int, _opaque: Any) -> None:
        loop.call_soon_threadsafe(_pool_event, rt, state, pool.name(), event)

    callback = None
    try:
        try:
            conn.setKeepAlive(5, 3)
        except libvirt.libvirtError as exc:
            # The test driver and local drivers refuse it: no keepalive, the close
            # callback still tells a dropped connection.
            rt.warn_once("libvirt-keepalive", "libvirt-no-keepalive", str(exc).splitlines()[0],
                         uri=uri, level="info")
        conn.registerCloseCallback(on_close, None)
        callback = conn.storagePoolEventRegisterAny(
            None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, on_pool, None)
        rt.say_once(CONNECTED, CONNECTED, uri, uri=uri, **rt.after_failures(UNREACHABLE))
        await refresh_pools(rt, state)
        waits = {rt.own(rt.stopping.wait()), rt.own(closed.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    except libvirt.libvirtError as exc:
        rt.warn_once(ERROR, ERROR, str(exc).splitlines()[0], uri=uri)
    finally:
        if callback is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.storagePoolEventDeregisterAny(callback)
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _pool_event(rt: Runtime, state: State, name: str, event: int) -> None:
    rt.emit("libvirt-pool-event", pool=name, lifecycle=event, level="debug")
    rt.own(refresh_pools(rt, state))


async def refresh_pools(rt: Runtime, state: State) -> None:
    pools, status = await rt.in_thread(read_libvirt_pools, rt.config.libvirt.uri, rt.config.probes.timeout)
    state.libvirt_pools = tuple(pools)
    state.mark("libvirt", status)
