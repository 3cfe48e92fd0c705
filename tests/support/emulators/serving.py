"""An emulator run as a process of its own (a systemd unit in the e2e tests, a peer a
test can SIGSTOP): it prints where it listens, then serves until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import socketserver
import threading
from http.server import ThreadingHTTPServer
from typing import Any


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The emulators' HTTP server on 127.0.0.1: connection threads never hold up exit or
    stop(), and binding does no reverse DNS lookup (HTTPServer.server_bind's, which can
    stall for seconds on a host without a resolver)."""

    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


def serve_until_signalled(emulator: Any) -> int:
    """`emulator` is a context manager with a `url`."""
    done = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with emulator:
        print(emulator.url, flush=True)
        while not done.wait(0.5):
            pass
    return 0
