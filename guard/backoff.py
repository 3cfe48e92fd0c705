"""Retrying without spinning, and warning without flooding.

The guard runs on every host of a cloud: a source that keeps failing (libvirtd stopped,
the management server down) must cost each host a few lines, not a journal full, and
must not hammer what it retries. So every retry waits longer than the one before (with
jitter, so a thousand hosts do not retry in step) up to a cap, and a warning that
repeats word for word is said once, then again only when it changes or, with the count
of repeats, every few minutes.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Optional

REPEAT_EVERY_S = 300.0


class Backoff:
    """Exponential delays from `first` to `cap`, each drawn in [half, whole] of its step
    (equal jitter: never shorter than half the step, never in lockstep)."""

    def __init__(self, first: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0
        self._rng = rng

    def next(self) -> float:
        step = min(self.cap, self.first * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return step * (0.5 + self._rng() / 2)

    def reset(self) -> None:
        self.failures = 0


class Repeats:
    """Which warnings to say. `say(key, text)` returns None to stay quiet, else how many
    identical repeats went unsaid before this one; `clear(key)` forgets the key (the
    condition ended) and returns how many went unsaid since it was last said."""

    def __init__(self, every: float = REPEAT_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._last: dict[str, tuple[str, float, int]] = {}

    def say(self, key: str, text: str) -> Optional[int]:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and last[0] == text and now - last[1] < self.every:
            self._last[key] = (text, last[1], last[2] + 1)
            return None
        unsaid = last[2] if last is not None and last[0] == text else 0
        self._last[key] = (text, now, 0)
        return unsaid

    def clear(self, key: str) -> int:
        last = self._last.pop(key, None)
        return last[2] if last is not None else 0
