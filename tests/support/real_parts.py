"""Real parts a test needs but the machine may lack: skip with the reason on a developer's
machine, fail under GUARD_REQUIRE_REAL_PARTS=1 (CI), so CI never goes green by skipping."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def real_part_unavailable(what: str, reason: str) -> NoReturn:
    message = f"{what} unavailable: {reason}"
    if os.environ.get("GUARD_REQUIRE_REAL_PARTS") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
