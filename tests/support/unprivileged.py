"""Run code as an unprivileged user, so tests of unreadable files and hidden sockets mean
something under CI, which runs as root (root reads files whatever their mode).

nobody cannot traverse a 0700 directory, and a clone under /root or `mktemp -d` is in one,
venv included. So the child runs the base interpreter (the venv's python is a symlink to
it; the runtime dependencies are the distribution's, in its site-packages) on a
world-readable copy of the package, and the files it reads live in `world_readable_dir()`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

_PROGRAM = """
import json, sys, importlib
module, name, path = sys.argv[1:4]
found, status = getattr(importlib.import_module(module), name)(path)
print(json.dumps({"found": bool(found), "ok": status.ok, "detail": status.detail}))
"""


def _open_to_all(root: Path) -> None:
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


@lru_cache(maxsize=1)
def _package_copy() -> Path:
    """The guard package copied once per test run into a directory anyone can read."""
    target = Path(tempfile.mkdtemp(prefix="guard-unprivileged-"))
    atexit.register(shutil.rmtree, target, True)
    shutil.copytree(REPO / "guard", target / "guard", ignore=shutil.ignore_patterns("__pycache__"))
    _open_to_all(target)
    return target


@contextlib.contextmanager
def world_readable_dir() -> Iterator[Path]:
    """A fresh directory every user can traverse (pytest's tmp_path sits in a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="guard-world-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def python_as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -c code args...` as nobody (or as us if not root), importing the package copy."""
    copy = _package_copy()
    return subprocess.run(
        [os.path.realpath(sys.executable), "-c", code, *args],
        user="nobody" if os.geteuid() == 0 else None, cwd=copy, capture_output=True, text=True,
        timeout=60, env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )


def read_as_nobody(module: str, function: str, path: str) -> dict[str, Any]:
    """`function(path)` from `module` in a child running as nobody."""
    result = python_as_nobody(_PROGRAM, module, function, path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
