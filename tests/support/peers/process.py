"""One real peer daemon run by a test: started in the foreground as a child, ready when
its port answers a connect, paused with SIGSTOP (hung: it still accepts, never answers),
stopped for good. Every wait is bounded, and stop() always reaps the child."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional


class PeerError(RuntimeError):
    """The peer would not start: the message carries the tail of its log."""


class PeerProcess:
    def __init__(self, name: str, argv: list[str], log: Path, ports: tuple[int, ...],
                 cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.ports = ports
        self.cwd = cwd
        self.env = env
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self, timeout: float = 20.0) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it until stop()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
                                         start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        waiting = list(self.ports)
        while waiting:
            if self.proc.poll() is not None:
                raise PeerError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PeerError(f"{self.name} did not listen on {waiting} within {timeout:g}s: "
                                f"{self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.05)

    def tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self, timeout: float = 2.0) -> None:
        """SIGSTOP the whole process group: connects still succeed (the kernel accepts
        them), nothing answers. Returns once every thread is stopped: the stop reaches
        each thread on its own, and a thread still running when a probe connects (a
        loaded machine, seen 1 run in 5 with glusterd) answers it."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not _all_stopped(self.proc.pid):
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name} did not stop within {timeout:g}s of SIGSTOP")
            time.sleep(0.005)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        self.proc = None


def _all_stopped(pid: int) -> bool:
    """Every thread of the process in the stopped state (T) in /proc/PID/task/*/stat."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        states = []
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii", errors="replace") as stat:
                states.append(stat.read().rpartition(")")[2].split()[0])
    except (OSError, IndexError):
        return False
    return all(state in ("T", "t") for state in states)
