"""Imported at start (through PYTHONPATH) only by a process tests/support/faketime.py runs
under libfaketime, never by the guard elsewhere.

libfaketime 0.9.10 (Debian 12's, EPEL's) with FAKETIME_DONT_FAKE_MONOTONIC=1 rewrites the
deadline of clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) as if it were a wall-clock
time, and the kernel refuses it (EINVAL): every time.sleep of Python 3.11, which sleeps
that way, raises OSError, and so does subprocess.run with a timeout
(https://github.com/wolfcw/libfaketime/issues/426). A timed wait on a lock sleeps on
CLOCK_MONOTONIC through sem_clockwait, which libfaketime leaves alone: it stands in for
time.sleep, so the process under test fails for its own reasons, not the preload's.
"""

from __future__ import annotations

import threading
import time

_NEVER_RELEASED = threading.Lock()
_NEVER_RELEASED.acquire()


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _NEVER_RELEASED.acquire(timeout=seconds)


time.sleep = _sleep
