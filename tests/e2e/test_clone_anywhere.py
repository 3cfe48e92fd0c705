"""The README's test command must pass wherever a person clones the repository: under
/root, under a `mktemp -d` directory (both 0700), under a path with spaces. This copies the
checkout, venv included, into such a place and runs from there the two kinds of test that
depend on where the checkout lives: one that reads files as an unprivileged user, and one
that runs the guard's own hardened unit (ProtectHome=, PrivateTmp=) under systemd-nspawn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import nspawn
from tests.support.paths import REPO
from tests.support.real_parts import real_part_unavailable

TESTS = [
    "tests/unit/sources/test_agentconf.py::test_unreadable_file",
    "tests/e2e/test_systemd.py::test_no_restart_when_a_live_pools_backend_is_down",
]


def _files() -> list[str]:
    """What a clone of the working tree holds: tracked files and new ones not ignored."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, check=True, timeout=30).stdout
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture
def private_clone() -> Iterator[Path]:
    if os.geteuid() != 0:
        real_part_unavailable("a 0700 clone", "needs root, as CI and the README's command run")
    if not (REPO / ".git").exists():
        real_part_unavailable("a 0700 clone", f"{REPO} is not a git checkout")
    if nspawn.unavailable_reason():
        real_part_unavailable("systemd-nspawn", str(nspawn.unavailable_reason()))
    private = Path(tempfile.mkdtemp(prefix="guard-clone-"))
    try:
        assert private.stat().st_mode & 0o777 == 0o700
        clone = private / "my clone"
        for name in _files():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
        # The venv moves with the clone, as one made there by `make venv` would sit: its
        # python is a symlink to the base interpreter and finds its site-packages beside it.
        shutil.copytree(sys.prefix, clone / ".venv", symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "ruff", "pip"))
        yield clone
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_suite_passes_from_a_private_clone_with_a_space_in_its_path(private_clone: Path) -> None:
    python = private_clone / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(private_clone), "GUARD_REQUIRE_REAL_PARTS": "1"}
    where = subprocess.run([str(python), "-c", "import guard, tests; print(guard.__file__, tests.__file__)"],
                           cwd=private_clone, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert where.stdout.count(str(private_clone)) == 2, f"imported from elsewhere: {where.stdout}"
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                            cwd=private_clone, env=env, capture_output=True, text=True, timeout=400)
    summary = result.stdout.strip().splitlines()[-1:] or [""]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(rf"\b{len(TESTS)} passed\b", summary[0]) and "skipped" not in summary[0], summary
