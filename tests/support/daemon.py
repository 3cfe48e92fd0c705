"""Runs `cloudstack-guard run` as a subprocess the way systemd would, minus systemd: a
notify socket the test owns receives READY/STATUS/WATCHDOG, and the JSON log lines on
stderr are collected as they arrive."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

from tests.support.paths import REPO


class RunningDaemon:
    def __init__(self, config: Path, workdir: Path, watchdog_usec: int = 1_000_000,
                 env: Optional[Mapping[str, str]] = None) -> None:
        """`env` is added to the daemon's environment (a preloaded library, a PATH)."""
        self.notify_path = workdir / f"notify-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.notify_path))
        self.sock.settimeout(0.1)
        self.notifications: list[tuple[float, str]] = []
        self.logs: list[dict[str, Any]] = []
        self.log_bytes = 0
        """Everything written to stderr, as the journal would store it."""
        self.started = time.monotonic()
        environment = dict(os.environ, **(env or {}), NOTIFY_SOCKET=str(self.notify_path),
                           WATCHDOG_USEC=str(watchdog_usec), WATCHDOG_PID="")
        environment.pop("WATCHDOG_PID")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "run", "--config", str(config), "--log-format", "json"],
            cwd=REPO, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._threads = [threading.Thread(target=self._read_notify, daemon=True),
                         threading.Thread(target=self._read_logs, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_notify(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                if self.proc.poll() is not None:
                    return
                continue
            except OSError:
                return
            for field in data.decode().split("\n"):
                self.notifications.append((time.monotonic(), field))

    def _read_logs(self) -> None:
        for raw in self.proc.stderr:
            self.log_bytes += len(raw)
            line = raw.decode("utf-8", "replace").strip()
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"event": "non-json", "text": line}
            entry["_at"] = time.monotonic()
            self.logs.append(entry)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode} waiting for {what}: "
                                     f"{self.logs[-5:]}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; last logs: {self.logs[-8:]}")

    def notified(self, prefix: str) -> list[str]:
        return [f for _, f in self.notifications if f.startswith(prefix)]

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name
                and all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        return self.wait_for(lambda: (self.events(name, **match) or [None])[-1], timeout,
                             f"{name} {match}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(2)
        self.sock.close()
        return self.proc.returncode
