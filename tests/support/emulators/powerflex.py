"""A stand-in PowerFlex (ScaleIO) gateway for tests, because no real gateway can run here.

It serves, over real HTTPS, the REST calls a client opens a gateway session with, in the
shapes CloudStack's ScaleIOGatewayClientImpl, goscaleio and PyPowerFlex expect:

- GET /api/login with HTTP basic auth user:password answers the session token as a bare
  JSON string (`"..."`), or 401 with the gateway's error object
  `{"message", "httpStatusCode", "errorCode"}` (goscaleio types.Error) for wrong ones;
- GET /api/version answers the version as a JSON string (`"3.6"`). goscaleio's
  GetVersion asks it without credentials and logs in only on a 401, PyPowerFlex always
  logs in first, so gateways answer it both ways: `version_needs_auth` picks one;
- GET /api/logout with basic auth user:token ends the session;
- anything else: 404 with the error object.

It fails the ways a gateway fails: stop() (the port refuses), a path whose requests are
never answered (set_hang), and another web server's page on every path (set_garbage).
Run as a program, the whole process can be SIGSTOPped:

    python -m tests.support.emulators.powerflex --cert server.pem --key server.key \
        --user admin --password-file pw.txt [--port 8443] [--version-needs-auth]

It prints its URL on stdout and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import secrets
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from tests.support.emulators.serving import LoopbackHTTPServer, serve_until_signalled

HOST = "127.0.0.1"
VERSION = "3.6"
GARBAGE_BODY = b"<html><body><h1>It works!</h1></body></html>\n"
_HANDSHAKE_TIMEOUT = 10.0
_JOIN_TIMEOUT = 5.0

PathLike = Union[str, Path]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    authorization: Optional[str]
    """The Authorization header as sent, to check who sent which secret where."""


class _Server(LoopbackHTTPServer):

    def __init__(self, port: int, emulator: PowerFlexGatewayEmulator) -> None:
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        super().__init__((HOST, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread: a client that never
        # finishes one must not hold up accept().
        thread = threading.Thread(target=self._run, args=(request, client_address), daemon=True,
                                  name=f"powerflex-emulator-conn-{client_address[1]}")
        with self.emulator._cond:
            self.threads.add(thread)
        thread.start()

    def _run(self, request: socket.socket, client_address: Any) -> None:
        connection: socket.socket = request
        try:
            with self.emulator._cond:
                self.connections.add(request)
            tls = self.emulator._tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            with self.emulator._cond:
                self.connections.discard(request)
                self.connections.add(tls)
            connection = tls
            tls.settimeout(_HANDSHAKE_TIMEOUT)
            tls.do_handshake()
            self.RequestHandlerClass(tls, client_address, self)
        except OSError:
            pass  # a client that gave up mid-handshake, or stop() closing under it
        finally:
            with self.emulator._cond:
                self.connections.discard(connection)
                self.connections.discard(request)
                self.threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PowerFlexGatewayEmulator"
    sys_version = ""
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded instead of logged."""

    def do_GET(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path
        authorization = self.headers.get("Authorization")
        emulator._record(RecordedRequest("GET", path, authorization))
        if not emulator._wait_unless_hung(path):
            self.close_connection = True
            return
        status, body, content_type = emulator._answer(path, authorization)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PowerFlexGatewayEmulator:
    """A gateway on 127.0.0.1 (HTTPS only, as every gateway CloudStack talks to) whose
    users, sessions and failures tests control while it runs. Its port stays the same
    across stop() and start()."""

    def __init__(self, cert: PathLike, key: PathLike, *, password: str, username: str = "admin",
                 port: int = 0, version: str = VERSION, version_needs_auth: bool = False) -> None:
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(str(cert), str(key))
        self._username = username
        self._password = password
        self._port = port
        self._version = version
        self._version_needs_auth = version_needs_auth
        self._cond = threading.Condition(threading.RLock())
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._tokens: set[str] = set()
        self._requests: list[RecordedRequest] = []
        self._hang_path: Optional[str] = None
        self._garbage = False
        self._closing = False

    def __enter__(self) -> PowerFlexGatewayEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        with self._cond:
            if self._server is not None:
                return
            self._closing = False
            server = _Server(self._port, self)
            self._port = server.server_address[1]
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"powerflex-emulator-{self._port}", daemon=True)
            self._server, self._thread = server, thread
        thread.start()

    def stop(self) -> None:
        """Close the listener and every connection, held ones included: afterwards the
        port refuses, as a dead gateway's does."""
        with self._cond:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None or thread is None:
                return
            self._closing = True
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        with self._cond:
            connections, threads = list(server.connections), list(server.threads)
        for connection in connections:
            # socket.socket's shutdown only wakes the thread blocked on it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
        thread.join(_JOIN_TIMEOUT)
        for worker in threads:
            worker.join(_JOIN_TIMEOUT)
        stuck = [t.name for t in [thread, *threads] if t.is_alive()]
        if stuck:
            raise RuntimeError(f"emulator threads did not stop: {stuck}")

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the emulator has no port before its first start()")
        return self._port

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def open_sessions(self) -> int:
        with self._cond:
            return len(self._tokens)

    def set_hang(self, path: Optional[str]) -> None:
        """Requests for `path` (e.g. "/api/version") are read and never answered, after
        a complete TLS handshake; None answers them again."""
        with self._cond:
            self._hang_path = path
            self._cond.notify_all()

    def set_garbage(self, garbage: bool) -> None:
        """Answer every path 200 with an HTML page, as another web server would."""
        with self._cond:
            self._garbage = garbage

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)

    def _wait_unless_hung(self, path: str) -> bool:
        """False when stop() ended the wait: the connection is closed unanswered."""
        with self._cond:
            while self._hang_path == path and not self._closing:
                self._cond.wait()
            return not self._closing

    def _basic(self, authorization: Optional[str]) -> Optional[tuple[str, str]]:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, colon, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, secret) if colon else None

    def _session(self, authorization: Optional[str]) -> Optional[str]:
        pair = self._basic(authorization)
        if pair is None or pair[0] != self._username or pair[1] not in self._tokens:
            return None
        return pair[1]

    @staticmethod
    def _error(status: int, message: str) -> tuple[int, bytes, str]:
        body = {"message": message, "httpStatusCode": status, "errorCode": 0}
        return status, json.dumps(body).encode(), "application/json;charset=UTF-8"

    @staticmethod
    def _string(value: str) -> tuple[int, bytes, str]:
        return 200, json.dumps(value).encode(), "application/json;charset=UTF-8"

    def _answer(self, path: str, authorization: Optional[str]) -> tuple[int, bytes, str]:
        with self._cond:
            if self._garbage:
                return 200, GARBAGE_BODY, "text/html"
            if path == "/api/login":
                if self._basic(authorization) != (self._username, self._password):
                    return self._error(401, "Unauthorized")
                token = secrets.token_urlsafe(24)
                self._tokens.add(token)
                return self._string(token)
            if path == "/api/version":
                if self._version_needs_auth and self._session(authorization) is None:
                    return self._error(401, "Unauthorized")
                return self._string(self._version)
            if path == "/api/logout":
                token = self._session(authorization)
                if token is None:
                    return self._error(401, "Unauthorized")
                self._tokens.discard(token)
                return 200, b"", "application/json;charset=UTF-8"
            return self._error(404, f"No resource at {path}")


def main(argv: Optional[list[str]] = None) -> int:
    """Serve until SIGTERM/SIGINT, so a test can run, pause and kill it like a daemon."""
    parser = argparse.ArgumentParser(description="A PowerFlex gateway emulator for tests.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--cert", required=True, help="the server certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--user", default="admin", help="the gateway user")
    parser.add_argument("--password-file", required=True, help="a file holding the user's password")
    parser.add_argument("--version", default=VERSION, help="what /api/version answers")
    parser.add_argument("--version-needs-auth", action="store_true",
                        help="answer /api/version only inside a session")
    args = parser.parse_args(argv)
    password = Path(args.password_file).read_text(encoding="utf-8").strip()
    emulator = PowerFlexGatewayEmulator(args.cert, args.key, username=args.user, password=password,
                                        port=args.port, version=args.version,
                                        version_needs_auth=args.version_needs_auth)
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
