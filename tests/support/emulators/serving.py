"""An emulator run as a process of its own (a systemd unit in the e2e tests, a peer a
test can SIGSTOP): it prints where it listens, then serves until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading
from typing import Any


def serve_until_signalled(emulator: Any) -> int:
    """`emulator` is a context manager with a `url`."""
    done = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with emulator:
        print(emulator.url, flush=True)
        while not done.wait(0.5):
            pass
    return 0
