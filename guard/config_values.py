"""Values in guard.toml and its credentials file: durations, maintenance windows, typed
keys read from one TOML table (with the one-line error naming the file, the key and the
fix), and the file-mode rules the daemon, running as root, holds config files to."""

from __future__ import annotations

import os
import re
import stat
from typing import Any


class ConfigError(Exception):
    """A config or credential problem, already phrased as the one line to print."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from "30s", "10m", "1h30m", "250ms"; ValueError on anything else."""
    spec = text.strip()
    pos, total = 0, 0.0
    while pos < len(spec):
        match = _DURATION_PART.match(spec, pos)
        if not match:
            raise ValueError(text)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not spec or total <= 0:
        raise ValueError(text)
    return total


def check_file_mode(path: str, what: str, private: bool) -> None:
    """Refuse files others could change (or, for secrets, read): the daemon runs as root.

    A file owned by another non-root user is refused too, since its owner could rewrite
    it whatever its mode says.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found; create it or fix the path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: {what} is not a regular file; point the setting at a file")
    mode = stat.S_IMODE(info.st_mode)
    mask = 0o077 if private else 0o022
    if mode & mask:
        fix = "chmod 600" if private else "chmod go-w"
        kind = "group/world-accessible" if private else "group/world-writable"
        raise ConfigError(f"{path}: {what} file is {kind} (mode {mode:04o}); run `{fix} {path}`")
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f"{path}: {what} file is owned by uid {info.st_uid}; "
            f"run `chown root {path}` so only root can change it"
        )


_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a whole number"}


class TableReader:
    """Takes typed values out of one TOML table and remembers which keys were used."""

    def __init__(self, path: str, table: dict[str, Any], prefix: str) -> None:
        self.path = path
        self.table = table
        self.prefix = prefix
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _fail(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.path}: key '{self._name(key)}' {problem}; {fix}")

    def _get(self, key: str, default: Any, kind: type, example: str) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise self._fail(
                key, f"must be {_TYPE_NAMES[kind]}, not {value!r}", f"write {example}"
            )
        return value

    def string(self, key: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = self._get(key, default, str, f'{key} = "..."')
        if choices and value not in choices:
            raise self._fail(key, f"is {value!r}", "use one of: " + ", ".join(choices))
        return value

    def path_value(self, key: str, default: str) -> str:
        value = self.string(key, default)
        if value and not os.path.isabs(value):
            raise self._fail(key, f"is a relative path ({value!r})", "give an absolute path")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._get(key, default, bool, f"{key} = true")

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self._get(key, default, int, f"{key} = {default}")
        if value < minimum:
            raise self._fail(key, f"is {value}", f"use a whole number >= {minimum}")
        return value

    def duration(self, key: str, default: float) -> float:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        example = f'write a string such as {key} = "30s" (units ms, s, m, h, d)'
        if not isinstance(value, str):
            raise self._fail(key, f"must be a duration string, not {value!r}", example)
        try:
            return parse_duration(value)
        except ValueError:
            raise self._fail(key, f"is not a duration ({value!r})", example) from None

    def windows(self, key: str) -> tuple[tuple[int, int], ...]:
        self.used.add(key)
        value = self.table.get(key, [])
        example = f'write {key} = ["02:00-05:00", "22:30-23:59"] (local time)'
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, f"must be a list of strings, not {value!r}", example)
        parsed = []
        for text in value:
            match = _WINDOW.match(text.strip())
            if not match:
                raise self._fail(key, f"has a window {text!r} that is not HH:MM-HH:MM", example)
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
                raise self._fail(key, f"has a window {text!r} with an impossible time", example)
            parsed.append((h1 * 60 + m1, h2 * 60 + m2))
        return tuple(parsed)

    def finish(self) -> None:
        known = ", ".join(sorted(self.used))
        for key in self.table:
            if key not in self.used:
                raise self._fail(key, "is unknown", f"remove it or use one of: {known}")
