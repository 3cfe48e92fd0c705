"""Run a source reader as an unprivileged user, so tests of unreadable files mean
something under CI, which runs as root (root reads files whatever their mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

_PROGRAM = """
import json, sys, importlib
module, name, path = sys.argv[1:4]
found, status = getattr(importlib.import_module(module), name)(path)
print(json.dumps({"found": bool(found), "ok": status.ok, "detail": status.detail}))
"""


def read_as_nobody(module: str, function: str, path: str) -> dict[str, Any]:
    """`function(path)` from `module` in a child running as nobody (or as us if not root)."""
    user = "nobody" if os.geteuid() == 0 else None
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, module, function, path], user=user, cwd=REPO,
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
