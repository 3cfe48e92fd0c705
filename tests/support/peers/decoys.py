"""What a probe must never take for a healthy peer: a daemon that accepts and never
answers (hung: `timeout`), and a web server on the peer's port that answers
`400 Bad Request` to anything and closes (the wrong protocol: `bad-answer`)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Listener:
    def __init__(self, port: int, answer: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.port = int(self.sock.getsockname()[1])
        self.answer = answer
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if self.answer is None:
                self.held.append(conn)
                continue
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                    conn.sendall(self.answer)

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()
        self.thread.join(timeout=2)
        for conn in self.held:
            conn.close()


HTTP_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: 22\r\n"
            b"Connection: close\r\n\r\n<h1>Bad Request</h1>\r\n")


@contextlib.contextmanager
def hanging_listener(port: int = 0) -> Iterator[int]:
    """A port that accepts every connection and never sends a byte."""
    listener = _Listener(port, None)
    try:
        yield listener.port
    finally:
        listener.close()


@contextlib.contextmanager
def web_server(port: int = 0) -> Iterator[int]:
    """A port where a web server answers 400 Bad Request to anything and closes."""
    listener = _Listener(port, HTTP_400)
    try:
        yield listener.port
    finally:
        listener.close()
