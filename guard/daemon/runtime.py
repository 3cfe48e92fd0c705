"""What every part of the daemon shares: the config in force, the journal, the events
that wake the judging loop, and the background tasks the daemon owns."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable
from typing import Any, Callable, Optional

from guard import logsetup
from guard.backoff import Backoff, Repeats
from guard.config import Config

TASK_RETRY_FIRST_S = 1.0
TASK_RETRY_CAP_S = 60.0


def jittered(interval: float) -> float:
    return interval * random.uniform(0.9, 1.1)  # noqa: S311 - spreading load, not security


class Runtime:
    """Made inside the running event loop: on Python 3.9 an asyncio.Event binds to the
    loop that exists when it is made."""

    def __init__(self, config_path: Optional[str], config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.log = logsetup.get_logger()
        self.repeats = Repeats()
        self.stopping = asyncio.Event()
        self.dirty = asyncio.Event()
        """Something changed: the judging loop evaluates again."""
        self.probe_now = asyncio.Event()
        self.confirm_now = asyncio.Event()
        """A pool missing from one listing: list again soon, to confirm it."""
        self.owned: set[asyncio.Future[Any]] = set()
        self.sources: list[asyncio.Future[Any]] = []

    def emit(self, event: str, **fields: Any) -> None:
        level = fields.pop("level", "info")
        getattr(self.log, level)(event, **fields)

    def say_once(self, key: str, event: str, text: str, **fields: Any) -> bool:
        """Said once; said again when `text` changes, or every few minutes with the count
        of the repeats that went unsaid (guard/backoff.py). True when it was said."""
        unsaid = self.repeats.say(key, f"{event}: {text}")
        if unsaid is None:
            return False
        self.emit(event, **({"repeated": unsaid} if unsaid else {}), **fields)
        return True

    def warn_once(self, key: str, event: str, text: str, **fields: Any) -> bool:
        fields.setdefault("level", "warning")
        return self.say_once(key, event, text, error=text, **fields)

    def after_failures(self, key: str) -> dict[str, int]:
        """The condition behind `key` ended: how many of its warnings went unsaid."""
        unsaid = self.repeats.clear(key)
        return {"unsaid_warnings": unsaid} if unsaid else {}

    async def in_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, work, *args)

    def own(self, work: Awaitable[Any]) -> asyncio.Future[Any]:
        """Kept until done (the event loop holds tasks only weakly, so an unkept one can
        vanish mid-run), and cancelled and awaited on stop."""
        task = asyncio.ensure_future(work)
        self.owned.add(task)
        task.add_done_callback(self.owned.discard)
        return task

    def spawn_source(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """A watcher that raises is started again, backing off, and said once."""

        async def guarded() -> None:
            backoff = Backoff(TASK_RETRY_FIRST_S, TASK_RETRY_CAP_S)
            while not self.stopping.is_set():
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken source must not stop the daemon
                    self.warn_once(f"task-{name}", "task-failed", f"{type(exc).__name__}: {exc}",
                                   task=name, level="error")
                    await asyncio.sleep(backoff.next())

        self.sources.append(self.own(guarded()))

    def stop_sources(self) -> None:
        for task in self.sources:
            task.cancel()
        self.sources = []

    async def sleep(self, seconds: float) -> None:
        """Cut short by a stop."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
