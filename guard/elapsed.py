"""How long ago each restart of the history was, in real time.

The history keeps wall-clock times, since it must outlive the guard and the host's boot.
A cooldown, a rate window and the settle time are spans of real time, though, and NTP or
an operator steps the wall clock while they run. Measured on the wall clock, a step a
day forward ends a cooldown that had minutes left and empties the rate window, and a step
an hour back holds them an hour longer.

So each restart the guard asks for is recorded with the kernel's boot id and the boot
clock (CLOCK_BOOTTIME: seconds since boot, counting suspend, never stepped), and while
the host runs in that boot every reader (the daemon, a guard restarted after a step,
`check`, `restart-agent`) takes its age from them. A restart from an earlier boot, or
recorded before the history kept the boot clock, is timed by the daemon on the monotonic
clock from the moment it first sees it; the one-shot commands have no earlier look to
time it from and use the wall clock.

The functions are pure: the caller reads the clocks (boot_clock) and passes them in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import NamedTuple, Optional

from guard.history import History, RestartRecord

BOOT_ID = "/proc/sys/kernel/random/boot_id"

STEP_S = 2.0
"""NTP slews both clocks alike; only a step (or a suspend, which stops the monotonic
clock) moves one against the other. A smaller move is not worth a journal line."""

Ages = Mapping[float, float]
"""Seconds since each restart, keyed by its `at`."""


class BootClock(NamedTuple):
    boot_id: str
    """"" where the kernel does not say (no /proc): then no restart is timed by it."""
    seconds: float


def boot_clock() -> BootClock:
    try:
        with open(BOOT_ID, encoding="ascii") as handle:
            boot_id = handle.read(64).strip()
    except (OSError, ValueError):
        boot_id = ""
    return BootClock(boot_id, time.clock_gettime(time.CLOCK_BOOTTIME))


def boot_ages(history: History, clock: BootClock) -> dict[float, float]:
    """The ages of the restarts recorded in this boot, keyed by `at` as Ages are."""
    if not clock.boot_id:
        return {}
    return {r.at: max(0.0, clock.seconds - r.boot_s) for r in history.restarts
            if r.boot_id == clock.boot_id and r.boot_s is not None}


def age(record: RestartRecord, now: float, ages: Optional[Ages] = None) -> float:
    """Taken from `ages` when the caller timed the restart, else from the wall clock."""
    if ages is not None and record.at in ages:
        return ages[record.at]
    return now - record.at


class RestartClock:
    """The daemon's timing of the restarts it has seen, for those the boot clock does not
    time (boot_ages). It lives only in memory: the monotonic clock starts again at every
    boot, and a guard restarted after a step goes back to the wall clock's measure for
    such restarts."""

    def __init__(self) -> None:
        self._first: dict[float, tuple[float, float]] = {}
        """For each restart, the monotonic reading at the first look and its age then."""
        self._unsaved: set[float] = set()
        self._offset: Optional[float] = None

    def started(self, at: float, steady: float) -> None:
        """A restart this process records at wall time `at`. It is timed from now, not
        from the first look at the saved record, since a step can come in between."""
        self._first[at] = (steady, 0.0)
        self._unsaved.add(at)

    def ages(self, history: History, wall: float, steady: float, boot: BootClock) -> dict[float, float]:
        """Those of this boot from the boot clock, the others as this process timed them.
        One first seen ahead of the wall clock (the clock was stepped back since it was
        recorded) is taken as just made: its real age cannot be known, and zero is the
        one that keeps every limit."""
        timed = {}
        for record in history.restarts:
            timed[record.at] = self._first.get(record.at) or (steady, max(0.0, wall - record.at))
            self._unsaved.discard(record.at)
        timed.update({at: self._first[at] for at in self._unsaved})
        self._first = timed
        ages = {at: before + steady - seen for at, (seen, before) in timed.items()}
        ages.update(boot_ages(history, boot))
        return ages

    def step(self, wall: float, steady: float) -> Optional[float]:
        """How far the wall clock moved against the monotonic one since the last call,
        when it was stepped; None when it was not."""
        offset = wall - steady
        previous, self._offset = self._offset, offset
        if previous is None or abs(offset - previous) <= STEP_S:
            return None
        return offset - previous
