"""A stand-in StorPool management API for tests: StorPool is proprietary and cannot run here.

It speaks the documented JSON-over-HTTP API on 127.0.0.1 (python-storpool's spapi.py
and its API reference): `GET /ctrl/1.0/<Query>` with `Authorization: Storpool v1:<token>`,
success `{"generation": N, "data": ...}`, refusal `{"error": {"name", "descr",
"transient"}}`. ServicesList's data follows sptypes.ClusterStatus: clusterStatus, and
clients, servers, mgmt, bridges, iscsiTargets keyed by id, each entry with id, nodeId,
status, version and startTime.

What could not be verified: the error name and HTTP status StorPool gives a wrong or
missing token; no source read shows them. This one answers HTTP 401 with the name
AUTH_ERROR_NAME, and the guard's probe decides by the status code, not by the name.

It fails as a real one does: stop() closes the port (connection refused), set_hang()
accepts and never answers, set_garbage() answers an HTML page, set_cluster_down() gives
the transient error a cluster without quorum gives ("If the whole cluster is not
operational this call will return an error", spapi.py servicesList).

By hand:  python -m tests.support.emulators.storpool --port 8181 --token T --client 3=running
It prints its address and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional

from tests.support.emulators.serving import LoopbackHTTPServer

HOST = "127.0.0.1"
VERSION = "21.0.242.e4bd93afd"
START_TIME = 1735000000
AUTH_ERROR_NAME = "authFailed"
AUTH_ERROR_DESCR = "Invalid authorization token"
GARBAGE = b"<html><body><h1>It works!</h1></body></html>\n"
_JOIN_TIMEOUT = 5.0


class _Server(LoopbackHTTPServer):

    def __init__(self, port: int, emulator: StorPoolEmulator) -> None:
        self.emulator = emulator
        self.held: set[socket.socket] = set()
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer (the probe's deadline) is no error."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "StorPool-mgmt-emulator"
    sys_version = ""
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded instead of logged."""

    def do_GET(self) -> None:
        emulator = self.server.emulator
        emulator._record(self.path, self.headers.get("Authorization"))
        if not emulator._wait_while_hung(self.server, self.connection):
            return
        status, body, content_type = emulator._answer(self.path, self.headers.get("Authorization"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class StorPoolEmulator:
    """The API on 127.0.0.1; the port stays the same across stop() and start()."""

    def __init__(self, port: int = 0, *, token: str,
                 clients: Optional[dict[int, str]] = None,
                 servers: Optional[dict[int, str]] = None) -> None:
        self._port = port
        self.token = token
        self._lock = threading.Condition()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._clients: dict[int, str] = dict(clients if clients is not None else {1: "running"})
        self._servers: dict[int, str] = dict(servers if servers is not None else {1: "running"})
        self._hang = self._garbage = self._cluster_down = False
        self.generation = 1
        self.requests: list[tuple[str, Optional[str]]] = []

    def __enter__(self) -> StorPoolEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            self._server = _Server(self._port, self)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True,
                                            name=f"storpool-emulator-{self._port}")
        self._thread.start()

    def stop(self) -> None:
        """Close the port and every connection, held ones too: then it refuses for real."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._lock.notify_all()
        if server is None or thread is None:
            return
        server.shutdown()
        for conn in list(server.held):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        thread.join(_JOIN_TIMEOUT)

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("no port before the first start()")
        return self._port

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def set_client(self, node_id: int, status: str) -> None:
        with self._lock:
            self._clients[node_id] = status
            self.generation += 1

    def remove_client(self, node_id: int) -> None:
        with self._lock:
            self._clients.pop(node_id, None)
            self.generation += 1

    def set_hang(self, hang: bool) -> None:
        """Accept and read requests, answer nothing until released (or stopped)."""
        with self._lock:
            self._hang = hang
            self._lock.notify_all()

    def set_garbage(self, garbage: bool) -> None:
        with self._lock:
            self._garbage = garbage

    def set_cluster_down(self, down: bool) -> None:
        with self._lock:
            self._cluster_down = down

    def _record(self, path: str, authorization: Optional[str]) -> None:
        with self._lock:
            self.requests.append((path, authorization))

    def _wait_while_hung(self, server: _Server, conn: socket.socket) -> bool:
        with self._lock:
            server.held.add(conn)
            try:
                while self._hang and self._server is server:
                    self._lock.wait(0.1)
                return self._server is server
            finally:
                server.held.discard(conn)

    def _answer(self, path: str, authorization: Optional[str]) -> tuple[int, bytes, str]:
        with self._lock:
            if self._garbage:
                return 200, GARBAGE, "text/html"
            if authorization != f"Storpool v1:{self.token}":
                return self._error(401, AUTH_ERROR_NAME, AUTH_ERROR_DESCR)
            if path.split("?")[0] != "/ctrl/1.0/ServicesList":
                return self._error(404, "invalidParam", f"Unknown query {path}")
            if self._cluster_down:
                return self._error(503, "clusterNotReady", "The cluster is not operational", True)
            return 200, json.dumps({"generation": self.generation, "data": self._services()}).encode(), \
                "application/json"

    @staticmethod
    def _error(status: int, name: str, descr: str, transient: bool = False) -> tuple[int, bytes, str]:
        body = {"error": {"name": name, "descr": descr, "transient": transient}}
        return status, json.dumps(body).encode(), "application/json"

    def _services(self) -> dict[str, Any]:
        def entry(service_id: int, status: str, **extra: Any) -> dict[str, Any]:
            return {"id": service_id, "nodeId": service_id, "status": status, "version": VERSION,
                    "startTime": START_TIME if status == "running" else None, **extra}

        return {
            "clusterStatus": "running" if "running" in self._servers.values() else "down",
            "mgmt": {"1": entry(1, "running", active=True)},
            "clients": {str(i): entry(i, s) for i, s in sorted(self._clients.items())},
            "servers": {str(i): entry(i, s, missingDisks=[], pendingDisks=[])
                        for i, s in sorted(self._servers.items())},
            "bridges": {},
            "iscsiTargets": {},
        }


def _service(spec: str) -> tuple[int, str]:
    node, _, status = spec.partition("=")
    return int(node), status or "running"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="A StorPool API emulator for tests.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--token", default="T", help="the SP_AUTH_TOKEN it accepts")
    parser.add_argument("--client", action="append", default=[], metavar="ID[=STATUS]")
    parser.add_argument("--server", action="append", default=[], metavar="ID[=STATUS]")
    args = parser.parse_args(argv)
    clients = dict(map(_service, args.client)) if args.client else None
    servers = dict(map(_service, args.server)) if args.server else None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with StorPoolEmulator(args.port, token=args.token, clients=clients, servers=servers) as emulator:
        print(emulator.address, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
