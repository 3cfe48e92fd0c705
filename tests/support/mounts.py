"""A small tmpfs a test can fill or turn read-only under the guard: a real filesystem's
ENOSPC and EROFS, not a patched open()."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.real_parts import real_part_unavailable


@contextmanager
def tmpfs(path: Path, size: str = "64k") -> Iterator[Path]:
    """`path` (created if missing; what it held stays hidden while mounted) as a tmpfs of
    `size`, mode 0700, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        real_part_unavailable("a tmpfs mount", "needs root and mount(8)")
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True, timeout=10)
    if mounted.returncode != 0:
        real_part_unavailable("a tmpfs mount", mounted.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def remount(path: Path, mode: str) -> None:
    """mode "ro" or "rw"."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True,
                   timeout=10)
