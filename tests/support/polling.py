"""Waiting for something a real process does, without a fixed sleep."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """The predicate's first truthy result, or its last result once `timeout` passed;
    callers assert on it, so a timeout reads as the failed expectation itself."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)
