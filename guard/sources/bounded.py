"""Blocking library calls under a deadline."""

from __future__ import annotations

import threading
from typing import Any, Callable


def run_bounded(work: Callable[[], Any], timeout: float) -> Any:
    """Run blocking library code with a deadline. A hung libvirtd blocks its client
    forever; the daemon thread is abandoned rather than allowed to hold up the check."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            result["error"] = exc

    thread = threading.Thread(target=target, name="bounded-call", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g}s")
    if "error" in result:
        raise result["error"]
    return result["value"]
