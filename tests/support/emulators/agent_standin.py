"""Stand-in for the cloudstack-agent process (not its behaviour with pools).

The guard finds the agent by its command line, reads its log and looks at its connection
to the management server. This process reproduces exactly those outward traits of the
4.19 JVM: `com.cloud.agent.AgentShell` on the command line, an ESTABLISHED TCP connection
to the first `host` of agent.properties, and the log4j 1 lines the real agent writes at
start, while (re)connecting and on a signal shutdown, with strings taken from Agent.java,
NioClient.java and NioConnection.java.

    python -m tests.support.emulators.agent_standin com.cloud.agent.AgentShell \\
        --properties PATH --log PATH [--version 4.19.1.2]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Callable, Optional, TextIO

AGENT_SHELL = "com.cloud.agent.AgentShell"
AGENT = "com.cloud.agent.Agent"
NIO_CLIENT = "com.cloud.utils.nio.NioClient"
NIO_CONNECTION = "com.cloud.utils.nio.NioConnection"
MAIN_CLASS = AGENT_SHELL
DEFAULT_VERSION = "4.19.1.2"
RETRY_SECONDS = 1.0

_REPO_ROOT = Path(__file__).resolve().parents[3]
_STARTED_MARKER = "agent.properties found at "
_SHUTDOWN_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_live: list[subprocess.Popen[bytes]] = []


class _Shutdown(BaseException):
    """Raised from the signal handler so any blocking call unwinds at once."""


def read_properties(text: str) -> dict[str, str]:
    """Enough of java.util.Properties for agent.properties; kept apart from the guard's
    own parser so the stand-in cannot share its bugs."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        end = next((i for i, ch in enumerate(line) if ch in "=: \t\f"), len(line))
        value = line[end:].lstrip(" \t\f")
        if value[:1] in ("=", ":"):
            value = value[1:].lstrip(" \t\f")
        props[line[:end]] = value
    return props


class Log4j:
    """Writes `%d{ISO8601} %-5p [%c{3}] (%t:%x) (logid:%X{logcontextid}) %m%n`, flushed
    per line so a reader tailing the file sees each line as the agent would write it.
    SIGTERM is held off while a line is written so the shutdown line never lands in the
    middle of another one, and a lock keeps the lines (and the stack traces that follow
    a message) of concurrent threads whole, as log4j's appender lock does."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def log(self, level: str, category: str, thread: str, message: str, logid: str = "") -> None:
        now = datetime.now()
        stamp = now.strftime("%Y-%m-%d %H:%M:%S") + f",{now.microsecond // 1000:03d}"
        short = ".".join(category.split(".")[-3:])
        line = f"{stamp} {level:<5} [{short}] ({thread}:null) (logid:{logid}) {message}\n"
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _SHUTDOWN_SIGNALS)
        try:
            with self._lock:
                self.stream.write(line)
                self.stream.flush()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _connect(log: Log4j, host: str, port: int, thread: str, logid: str) -> socket.socket | None:
    log.log("INFO", NIO_CLIENT, thread, f"Connecting to {host}:{port}", logid)
    try:
        sock = socket.create_connection((host, port), timeout=5.0)
    except OSError:
        log.log(
            "WARN", NIO_CONNECTION, thread,
            f"Unable to connect to remote: is there a server running on port {port}", logid,
        )
        return None
    log.log("INFO", NIO_CLIENT, thread, f"Connected to {host}:{port}", logid)
    return sock


def _hold(sock: socket.socket) -> None:
    """Keep the link until the server closes it, as the agent's NIO selector would."""
    sock.settimeout(0.5)
    while True:
        try:
            if not sock.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def management_address(props: dict[str, str]) -> tuple[str, int]:
    """The first `host` of agent.properties (a comma list, maybe `@<lb algorithm>`) and `port`."""
    host = props.get("host", "localhost").split("@")[0].split(",")[0].strip()
    return host, int(props.get("port", "8250"))


def write_startup(log: Log4j, properties_path: str, version: str) -> None:
    """AgentShell's first lines, which mark a new incarnation of the agent in its log."""
    log.log("INFO", AGENT_SHELL, "main", "Agent started")
    log.log("INFO", AGENT_SHELL, "main", f"Implementation Version is {version}")
    log.log("INFO", AGENT_SHELL, "main", f"{_STARTED_MARKER}{properties_path}")


def write_stopping(log: Log4j) -> None:
    """What the JVM's shutdown hook logs on SIGTERM/SIGINT."""
    log.log("INFO", AGENT, "AgentShutdownThread", "Stopping the agent: Reason = sig.kill")


class ManagementLink:
    """The agent's one TCP connection to its management server: connect, retry while
    refused, hold it, and reconnect when the server drops it, logging as the agent does.

    `on_connected()` runs after every (re)connection, for callers that also log what the
    server's startup answer makes the agent write.
    """

    def __init__(
        self, log: Log4j, host: str, port: int,
        on_connected: Optional[Callable[[], None]] = None,
    ) -> None:
        self.log = log
        self.host = host
        self.port = port
        self.on_connected = on_connected
        self.sock: Optional[socket.socket] = None

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def run(self) -> None:
        """Never returns by itself; a caller stops it by raising out of it or by exiting."""
        log, host, port = self.log, self.host, self.port
        self.sock = _connect(log, host, port, "main", "")
        while self.sock is None:
            time.sleep(RETRY_SECONDS)
            log.log("INFO", AGENT, "main", f"Connecting to host:{host}")
            self.sock = _connect(log, host, port, "main", "")
        while True:
            if self.on_connected is not None:
                self.on_connected()
            _hold(self.sock)
            self.close()
            thread, logid = "Agent-Handler-1", secrets.token_hex(4)
            log.log(
                "INFO", AGENT, thread,
                f"Lost connection to host: {host}. Attempting reconnection while we "
                "still have 0 commands in progress.", logid,
            )
            while self.sock is None:
                log.log("INFO", AGENT, thread, f"Reconnecting to host:{host}", logid)
                self.sock = _connect(log, host, port, thread, logid)
                time.sleep(RETRY_SECONDS)
            log.log("INFO", AGENT, thread, f"Connected to the host: {host}", logid)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


def run(properties_path: str, log_path: str, version: str) -> int:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Shutdown

    for signum in _SHUTDOWN_SIGNALS:
        signal.signal(signum, on_signal)

    host, port = management_address(read_properties(Path(properties_path).read_text()))

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as stream:
        log = Log4j(stream)
        link = ManagementLink(log, host, port)
        try:
            write_startup(log, properties_path, version)
            link.run()
        except _Shutdown:
            for signum in _SHUTDOWN_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            write_stopping(log)
        finally:
            link.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-in for the cloudstack-agent process")
    parser.add_argument("main_class", choices=[MAIN_CLASS])
    parser.add_argument("--properties", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--version", default=DEFAULT_VERSION)
    args = parser.parse_args(argv)
    return run(args.properties, args.log, args.version)


def start_standin(
    properties: str | os.PathLike[str],
    log: str | os.PathLike[str],
    version: str = DEFAULT_VERSION,
    ready_timeout: float = 10.0,
) -> subprocess.Popen[bytes]:
    """Start the stand-in and return once it has written its startup lines."""
    log_file = Path(log)
    offset = log_file.stat().st_size if log_file.exists() else 0
    argv = [
        sys.executable, "-m", "tests.support.emulators.agent_standin", MAIN_CLASS,
        "--properties", os.fspath(properties), "--log", os.fspath(log), "--version", version,
    ]
    proc = subprocess.Popen(
        argv, cwd=_REPO_ROOT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    _live.append(proc)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _live.remove(proc)
            raise RuntimeError(f"agent stand-in exited with {proc.returncode} at start")
        with contextlib.suppress(OSError), open(log_file, "rb") as stream:
            stream.seek(offset)
            if _STARTED_MARKER.encode() in stream.read():
                return proc
        time.sleep(0.02)
    stop_standin(proc)
    raise RuntimeError(f"agent stand-in wrote no startup lines to {log_file} in {ready_timeout}s")


def stop_group(proc: subprocess.Popen[bytes], live: list, timeout: float = 5.0) -> int:
    """SIGTERM its process group like `systemctl stop`, SIGKILL if it hangs; the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    if proc in live:
        live.remove(proc)
    return proc.returncode


def stop_standin(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    return stop_group(proc, _live, timeout)


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        stop_standin(proc)


if __name__ == "__main__":
    sys.exit(main())
