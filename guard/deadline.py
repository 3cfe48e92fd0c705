"""Blocking library calls under a deadline."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class Bounded:
    """Blocking library code started now in a daemon thread, collected later with a
    deadline. A hung libvirtd or management server blocks its client indefinitely; the
    thread is then abandoned, never allowed to hold up the check or the interpreter's exit."""

    def __init__(self, work: Callable[[], Any], name: str = "bounded-call") -> None:
        self._result: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self._result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            self._result["error"] = exc

    def result(self, timeout: float) -> Any:
        """Raises TimeoutError once `timeout` has passed since the call was started."""
        self._thread.join(max(0.0, timeout - (time.monotonic() - self._started)))
        if self._thread.is_alive():
            raise TimeoutError(f"no answer within {timeout:g}s")
        if "error" in self._result:
            raise self._result["error"]
        return self._result["value"]


def run_bounded(work: Callable[[], Any], timeout: float) -> Any:
    return Bounded(work).result(timeout)
