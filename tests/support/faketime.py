"""A wall clock that jumps under one running process while its monotonic clock runs on,
as NTP stepping the clock or an operator's `date -s` jumps a host's: libfaketime
preloaded, with an offset it reads from a file on every call (FAKETIME_NO_CACHE), so a
test steps the clock of a daemon that is already running.

Only the process started with `env()` (and its children) sees the jump: the test, the
stand-in agent and the emulators keep the real time. File times are left real
(NO_FAKE_STAT), and so is /proc/stat's boot time, which psutil adds to a process's start
ticks for its start time: an agent's start time in the faked process stays where it was,
as it does in a guard that read the boot time once before the step.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from tests.support.real_parts import real_part_unavailable

LIBRARY = "libfaketime.so.1"
LIBRARY_GLOBS = ("/usr/lib/*/faketime/" + LIBRARY, "/usr/lib64/faketime/" + LIBRARY,
                 "/usr/local/lib/faketime/" + LIBRARY)
"""Debian's multiarch directory, EPEL's, and `make install` from the sources."""
SITE = Path(__file__).resolve().parent / "faketime_site"
PREFLIGHT_STEP_S = 86400
PREFLIGHT_TIMEOUT_S = 30.0


def find_library() -> Optional[str]:
    """Where the package put it, asked of dpkg first; the globs cover RPM systems and a
    build from source."""
    try:
        listed = subprocess.run(["dpkg", "-L", "libfaketime"], capture_output=True, text=True,
                                timeout=10, check=False).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        listed = []
    found = [p for p in listed if p.endswith("/" + LIBRARY)]
    found += [p for pattern in LIBRARY_GLOBS for p in sorted(glob.glob(pattern))]
    return next((p for p in found if os.path.isfile(p)), None)


class SteppedClock:
    """The offset of the faked wall clock from the real one, in whole seconds."""

    def __init__(self, workdir: Path) -> None:
        library = find_library()
        if library is None:
            real_part_unavailable("libfaketime", "not installed (Debian, EPEL: libfaketime)")
        self.library = library
        self.file = workdir / "faketime.rc"
        self.offset = 0
        self._write(self.file, 0)
        self._preflight(workdir)

    def env(self, timestamp_file: Optional[Path] = None) -> dict[str, str]:
        return {
            "LD_PRELOAD": self.library,
            "FAKETIME_TIMESTAMP_FILE": str(timestamp_file or self.file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "NO_FAKE_STAT": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p),
        }

    def step(self, seconds: int) -> None:
        self.offset += seconds
        self._write(self.file, self.offset)

    def now(self) -> float:
        """The time the faked process reads now."""
        return time.time() + self.offset

    @staticmethod
    def _write(path: Path, offset: int) -> None:
        """Whole or not at all: libfaketime reads the file on every call, and a half
        written one would be a clock at the real time for a moment."""
        part = path.with_name(path.name + ".part")
        part.write_text(f"{offset:+d}\n")
        os.replace(part, path)

    def _preflight(self, workdir: Path) -> None:
        """A process under the preload, stepped a day ahead, must read the wall clock a day
        ahead, the system's monotonic clock, and sleep as asked: otherwise a test of the
        daemon would prove nothing, or fail for the preload's reasons."""
        probe = workdir / "faketime-preflight.rc"
        self._write(probe, PREFLIGHT_STEP_S)
        code = ("import json, time\nbefore = time.monotonic()\ntime.sleep(0.05)\n"
                "print(json.dumps([time.time(), time.monotonic(), time.monotonic() - before,\n"
                "                  time.clock_gettime(time.CLOCK_BOOTTIME)]))\n")
        env = dict(os.environ, **self.env(probe))
        try:
            result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    timeout=PREFLIGHT_TIMEOUT_S, check=False)
            wall, monotonic, slept, booted = json.loads(result.stdout)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            real_part_unavailable("libfaketime", f"{self.library}: a probe failed: {exc}")
        real_wall, real_monotonic = time.time(), time.monotonic()
        real_booted = time.clock_gettime(time.CLOCK_BOOTTIME)
        if abs(wall - real_wall - PREFLIGHT_STEP_S) > 5:
            real_part_unavailable("libfaketime", f"{self.library} did not move the wall clock a day ahead "
                                  f"({wall - real_wall:+.0f}s): {result.stderr.strip()[-300:]}")
        if abs(monotonic - real_monotonic) > 5 or abs(booted - real_booted) > 5 or not 0.04 <= slept < 1:
            real_part_unavailable("libfaketime", f"{self.library} moved the monotonic or boot clock or broke "
                                  f"sleeping (monotonic {monotonic - real_monotonic:+.1f}s, boot clock "
                                  f"{booted - real_booted:+.1f}s, slept {slept:.2f}s)")
