"""A log's rotated set, and the order rotated files were written in: logrotate's
numbered names (`agent.log.1`, `agent.log.2.gz`, and `.1` as copytruncate's copy) and
dateext names (`agent.log-20240101[.gz]`), and log4j's own time-based names
(`agent.log.2024-01-01[.gz]`). `check`, `analyze` and the log follower all ask here."""

from __future__ import annotations

import os
import re

_ROTATED_NUMBER = re.compile(r"\.(\d{1,6})(?:\.gz)?")
_ROTATED_DATE = re.compile(r"[.-](\d{4})-?(\d\d)-?(\d\d)(?:[-_.]?(\d{1,6}))?(?:\.gz)?")


def log_set(path: str) -> list[str]:
    """The rotated set of a log, oldest first and the current file last.

    Knows logrotate's numbered names (`agent.log.1`, `agent.log.2.gz`) and dateext names
    (`agent.log-20240101[.gz]`), and log4j's own time-based names
    (`agent.log.2024-01-01[.gz]`). When both schemes are present, modification times
    order them.
    """
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        names = []
    numbered: list[tuple[tuple[int, ...], str]] = []
    dated: list[tuple[tuple[int, ...], str]] = []
    for name in names:
        if not name.startswith(base) or name == base:
            continue
        suffix = name[len(base):]
        m = _ROTATED_NUMBER.fullmatch(suffix)
        if m:
            numbered.append(((-int(m.group(1)),), os.path.join(directory, name)))
            continue
        m = _ROTATED_DATE.fullmatch(suffix)
        if m:
            key = tuple(int(g or 0) for g in m.groups())
            dated.append((key, os.path.join(directory, name)))
    if numbered and dated:
        def age(item: tuple[tuple[int, ...], str]) -> tuple[float, str]:
            try:
                return (os.stat(item[1]).st_mtime, item[1])
            except OSError:
                return (0.0, item[1])
        rotated = [p for _, p in sorted(numbered + dated, key=age)]
    else:
        rotated = [p for _, p in sorted(numbered or dated)]
    if os.path.isfile(path):
        rotated.append(path)
    return rotated




_ROTATION = re.compile(r"(\.\d+|-\d{8}|\.\d{4}-\d{2}-\d{2}(-\d{2})?)?(\.gz)?$")


def ordered(paths: list[str]) -> list[str]:
    """Rotated files in the order they were written, whatever order the shell gave:
    each file's place in its rotated set."""
    def place(path: str) -> tuple[int, str]:
        base = _ROTATION.sub("", path)
        siblings = [os.path.realpath(p) for p in log_set(base)]
        real = os.path.realpath(path)
        return (siblings.index(real) if real in siblings else len(siblings), path)

    return sorted(paths, key=place)


def copytruncate_copy(path: str) -> str:
    """Where logrotate's copytruncate left the lines a follower had not read yet."""
    return path + ".1"
