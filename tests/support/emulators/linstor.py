"""A stand-in LINSTOR controller for tests, because no real controller can run here.

It answers the few REST calls the guard and the `python-linstor` client make, in the
shapes of the real OpenAPI spec (tests validate every body against it), and it can fail
the ways a real controller fails in the field: a closed port (a real "connection
refused"), a listener that accepts and never answers, a sick /health, a foreign web
server answering on the port, missing or wrong bearer tokens, and mutual TLS.

Run it by hand for a demo:
    python -m tests.support.emulators.linstor --port 3370 --node kvm1 --node kvm2=OFFLINE
It prints its URL on stdout and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import socket
import ssl
import sys
import threading
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.emulators.serving import LoopbackHTTPServer, serve_until_signalled

HOST = "127.0.0.1"
CONTROLLER_VERSION = "1.31.0"
# The spec file this emulator follows declares itself as REST API 1.28.0.
REST_API_VERSION = "1.28.0"
GIT_HASH = "0123456789abcdef0123456789abcdef01234567"
BUILD_TIME = "2025-04-01T00:00:00+00:00"

# Node.connection_status as the spec enumerates it; python-linstor knows two more
# (MISSING_EXT_TOOLS, DUPLICATE_UNAME) that the spec does not allow.
CONNECTION_STATUSES = (
    "OFFLINE", "CONNECTED", "ONLINE", "VERSION_MISMATCH", "FULL_SYNC_FAILED",
    "AUTHENTICATION_ERROR", "UNKNOWN", "HOSTNAME_MISMATCH", "OTHER_CONTROLLER",
    "AUTHENTICATED", "NO_STLT_CONN",
)

_MASK_ERROR = 0xC000000000000000


def _java_long(value: int) -> int:
    """The controller is Java: its 64-bit return codes arrive as signed longs (negative)."""
    return value - (1 << 64) if value >= (1 << 63) else value


FAIL_INVLD_REQUEST = _java_long(234 | _MASK_ERROR)
FAIL_NOT_FOUND_NODE = _java_long(300 | _MASK_ERROR)
FAIL_ACC_DENIED_COMMAND = _java_long(412 | _MASK_ERROR)

GARBAGE_BODY = b"<html><body><h1>It works!</h1></body></html>\n"
_UUID_NAMESPACE = uuid.UUID("9a4c1d2e-6b1f-4d1e-8f1a-5c0b7d3e2a10")
_HANDSHAKE_TIMEOUT = 10.0
_THREAD_JOIN_TIMEOUT = 5.0

PathLike = Union[str, Path]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator read it, so tests can check who asked what, with which token."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    def header(self, name: str) -> Optional[str]:
        """Header names are case-insensitive in HTTP; they are stored lower-cased."""
        return self.headers.get(name.lower())


@dataclass
class _Node:
    name: str
    status: str


@dataclass
class _ResourceDefinition:
    name: str
    resource_group: str
    size_kib: int
    minor: int
    port: int
    next_node_id: int = 0


@dataclass
class _Resource:
    definition: _ResourceDefinition
    node: str
    storage_pool: str
    node_id: int
    in_use: bool
    created_ms: int


class _Closing(Exception):
    """Raised inside a connection's thread when the emulator stops under it."""


def _stable_uuid(kind: str, name: str) -> str:
    """Same object, same uuid in every run, so failures are reproducible."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{kind}:{name.casefold()}"))


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _api_call_rc(ret_code: int, message: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"ret_code": ret_code, "message": message}
    entry.update(extra)
    entry["created_at"] = _now_iso()
    return entry


class _Server(LoopbackHTTPServer):
    request_queue_size = 64

    def __init__(self, port: int, emulator: LinstorEmulator) -> None:
        self.emulator = emulator
        self.closing = False
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        super().__init__((HOST, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Our own thread bookkeeping: socketserver's differs between Python versions, and
        # stop() must be able to prove every connection thread is gone.
        thread = threading.Thread(
            target=self._run_connection, args=(request, client_address),
            name=f"linstor-emulator-conn-{client_address[1]}", daemon=True,
        )
        with self.emulator._cond:
            self.threads.add(thread)
        thread.start()

    def _run_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.emulator._cond:
                self.threads.discard(threading.current_thread())

    def finish_request(self, request: Any, client_address: Any) -> None:
        emulator = self.emulator
        connection = request
        self.track(connection)
        try:
            emulator._wait_while_hung(self)
            if emulator._tls_context is not None:
                connection = emulator._tls_context.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
                self.retrack(request, connection)
                connection.settimeout(_HANDSHAKE_TIMEOUT)
                connection.do_handshake()
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            self.untrack(connection)
            if connection is not request:
                connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, _Closing):
            return
        self.emulator._record_error(error)
        if not isinstance(error, OSError):
            traceback.print_exc()

    def track(self, connection: socket.socket) -> None:
        with self.emulator._cond:
            if self.closing:
                raise _Closing()
            self.connections.add(connection)

    def retrack(self, old: socket.socket, new: socket.socket) -> None:
        with self.emulator._cond:
            self.connections.discard(old)
            self.connections.add(new)
            closing = self.closing
        if closing:
            raise _Closing()

    def untrack(self, connection: socket.socket) -> None:
        with self.emulator._cond:
            self.connections.discard(connection)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LinstorEmulator"
    sys_version = ""
    # Idle keep-alive connections die after this, so a forgotten client cannot pin a thread.
    timeout = 60
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Request logging would only clutter test output; requests are recorded instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        if len(segments) > 1 and segments[-1] == "":
            segments.pop()
        emulator._record(RecordedRequest(
            method=self.command,
            path=unquote(parts.path),
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
        ))
        self._drain_body()
        emulator._wait_while_hung(self.server)
        status, body, content_type, extra = emulator._answer(
            self.command, segments, parse_qs(parts.query), self.headers.get("Authorization")
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _drain_body(self) -> None:
        """A request body left unread would be parsed as the next request on keep-alive."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)


Answer = tuple[int, bytes, str, list[tuple[str, str]]]


class LinstorEmulator:
    """A LINSTOR controller on 127.0.0.1 whose state and failures tests control while it runs.

    Use as a context manager; the listening port stays the same across stop()/start(), so
    a test can take the controller away and bring it back under the same URL.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        nodes: Iterable[str] = (),
        token: Optional[str] = None,
        server_cert: Optional[PathLike] = None,
        server_key: Optional[PathLike] = None,
        client_ca: Optional[PathLike] = None,
    ) -> None:
        self._port = port
        self._token = token
        self._cond = threading.Condition(threading.RLock())
        self._server: Optional[_Server] = None
        self._serve_thread: Optional[threading.Thread] = None
        self._nodes: dict[str, _Node] = {}
        self._definitions: dict[str, _ResourceDefinition] = {}
        self._resources: dict[tuple[str, str], _Resource] = {}
        # Minors and ports are never reused, as DRBD devices of deleted resources may linger.
        self._next_number = 0
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._hang = False
        self._held = 0
        self._garbage = False
        self._unhealthy_reason: Optional[str] = None
        self._tls_context = self._make_tls_context(server_cert, server_key, client_ca)
        for name in nodes:
            self.add_node(name)

    @staticmethod
    def _make_tls_context(
        cert: Optional[PathLike], key: Optional[PathLike], client_ca: Optional[PathLike]
    ) -> Optional[ssl.SSLContext]:
        if cert is None:
            if key is not None or client_ca is not None:
                raise ValueError("server_key and client_ca need server_cert")
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), None if key is None else str(key))
        if client_ca is not None:
            # Like a controller with a truststore: no client certificate, no handshake.
            context.load_verify_locations(cafile=str(client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LinstorEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen (again) on the emulator's port; a no-op while already listening."""
        with self._cond:
            if self._server is not None:
                return
            server = _Server(self._port, self)
            self._port = server.server_address[1]
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"linstor-emulator-{self._port}", daemon=True,
            )
            self._server, self._serve_thread = server, thread
        thread.start()

    def stop(self) -> None:
        """Close the listener and every open connection, held ones included.

        Afterwards the port refuses connections for real, as a dead controller's does.
        """
        with self._cond:
            server, thread = self._server, self._serve_thread
            self._server = self._serve_thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        with self._cond:
            server.closing = True
            connections = list(server.connections)
            threads = list(server.threads)
            self._cond.notify_all()
        for connection in connections:
            # socket.socket's own shutdown, not SSLSocket's: it only wakes the blocked
            # reader and leaves the TLS object to the thread that owns it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
        server.server_close()
        thread.join(_THREAD_JOIN_TIMEOUT)
        for worker in threads:
            worker.join(_THREAD_JOIN_TIMEOUT)
        stuck = [t.name for t in threads + [thread] if t.is_alive()]
        if stuck:
            raise RuntimeError(f"emulator threads did not stop: {stuck}")

    @property
    def running(self) -> bool:
        with self._cond:
            return self._server is not None

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the emulator has no port before its first start()")
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self._tls_context is not None else "http"
        return f"{scheme}://{HOST}:{self.port}"

    # -- failure modes ---------------------------------------------------------------

    def set_hang(self, hang: bool) -> None:
        """Accept connections but send nothing, not even a TLS handshake, until released.

        Connections held meanwhile are served normally once hang mode ends, like a
        controller coming back from a long stall; stop() closes them instead.
        """
        with self._cond:
            self._hang = hang
            self._cond.notify_all()

    @property
    def held_connections(self) -> int:
        """How many connections hang mode is holding right now, so tests need not guess."""
        with self._cond:
            return self._held

    def set_garbage(self, garbage: bool) -> None:
        """Make /v1/* answer 200 with an HTML page, as if another web server had the port."""
        with self._cond:
            self._garbage = garbage

    def set_unhealthy(self, reason: str) -> None:
        with self._cond:
            self._unhealthy_reason = reason

    def set_healthy(self) -> None:
        with self._cond:
            self._unhealthy_reason = None

    # -- cluster state ---------------------------------------------------------------

    def add_node(self, name: str, status: str = "ONLINE") -> None:
        self._check_status(status)
        with self._cond:
            if name.casefold() in self._nodes:
                raise ValueError(f"node {name!r} exists")
            self._nodes[name.casefold()] = _Node(name, status)

    def set_node_status(self, name: str, status: str) -> None:
        self._check_status(status)
        with self._cond:
            self._nodes[name.casefold()].status = status

    def remove_node(self, name: str) -> None:
        """Drop the node with its resources, so no answer names a node that is gone."""
        with self._cond:
            del self._nodes[name.casefold()]
            for key in [k for k in self._resources if k[1] == name.casefold()]:
                del self._resources[key]

    def add_resource_definition(
        self, name: str, resource_group: str = "DfltRscGrp", size_kib: int = 1048576
    ) -> None:
        with self._cond:
            if name.casefold() in self._definitions:
                raise ValueError(f"resource definition {name!r} exists")
            number = self._next_number
            self._next_number += 1
            self._definitions[name.casefold()] = _ResourceDefinition(
                name, resource_group, size_kib, minor=1000 + number, port=7000 + number
            )

    def remove_resource_definition(self, name: str) -> None:
        with self._cond:
            del self._definitions[name.casefold()]
            for key in [k for k in self._resources if k[0] == name.casefold()]:
                del self._resources[key]

    def add_resource(
        self, resource: str, node: str, storage_pool: str = "DfltStorPool", in_use: bool = False
    ) -> str:
        """Place `resource` on `node` (defining it first if needed); returns its DRBD device."""
        with self._cond:
            node_key = self._nodes[node.casefold()].name.casefold()
            if resource.casefold() not in self._definitions:
                self.add_resource_definition(resource)
            definition = self._definitions[resource.casefold()]
            key = (resource.casefold(), node_key)
            if key in self._resources:
                raise ValueError(f"resource {resource!r} is already on {node!r}")
            self._resources[key] = _Resource(
                definition, self._nodes[node_key].name, storage_pool, definition.next_node_id,
                in_use, int(datetime.now(timezone.utc).timestamp() * 1000),
            )
            definition.next_node_id += 1
            return f"/dev/drbd{definition.minor}"

    def remove_resource(self, resource: str, node: str) -> None:
        with self._cond:
            del self._resources[(resource.casefold(), node.casefold())]

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in CONNECTION_STATUSES:
            raise ValueError(f"{status!r} is not a LINSTOR connection status")

    # -- what happened ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot: requests arriving later do not change a list already returned."""
        with self._cond:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._cond:
            self._requests.clear()

    @property
    def connection_errors(self) -> list[str]:
        """Failures below HTTP (TLS handshakes, resets), which no request record can show."""
        with self._cond:
            return list(self._errors)

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)

    def _record_error(self, error: Optional[BaseException]) -> None:
        with self._cond:
            self._errors.append(repr(error))

    def _wait_while_hung(self, server: _Server) -> None:
        with self._cond:
            if self._hang and not server.closing:
                self._held += 1
                try:
                    self._cond.wait_for(lambda: not self._hang or server.closing)
                finally:
                    self._held -= 1
            if server.closing:
                raise _Closing()

    # -- answers ---------------------------------------------------------------------

    def _answer(
        self,
        method: str,
        segments: list[str],
        query: dict[str, list[str]],
        authorization: Optional[str],
    ) -> Answer:
        with self._cond:
            if segments == ["health"]:
                if self._unhealthy_reason is not None:
                    return 500, self._unhealthy_reason.encode(), "text/plain; charset=utf-8", []
                return 200, b"", "text/plain", []
            if segments[:1] == ["v1"]:
                if self._garbage:
                    return 200, GARBAGE_BODY, "text/html; charset=utf-8", []
                if self._token is not None and not self._token_ok(authorization):
                    return self._error(
                        401, FAIL_ACC_DENIED_COMMAND, "Unauthorized: token invalid or not provided",
                        [("WWW-Authenticate", 'Bearer realm="linstor-controller"')],
                    )
            if method != "GET":
                return self._error(405, FAIL_INVLD_REQUEST, f"Method {method} not supported here")
            return self._route(segments, query)

    def _token_ok(self, authorization: Optional[str]) -> bool:
        if self._token is None:
            return True
        if authorization is None or authorization[:7].lower() != "bearer ":
            return False
        return hmac.compare_digest(authorization[7:].strip().encode(), self._token.encode())

    def _route(self, segments: list[str], query: dict[str, list[str]]) -> Answer:
        if segments == ["v1", "controller", "version"]:
            return self._json(200, {
                "version": CONTROLLER_VERSION, "git_hash": GIT_HASH,
                "build_time": BUILD_TIME, "rest_api_version": REST_API_VERSION,
            })
        if segments == ["v1", "nodes"]:
            wanted = {n.casefold() for n in query.get("nodes", [])}
            return self._json(200, [
                self._node_json(n) for n in self._sorted_nodes()
                if not wanted or n.name.casefold() in wanted
            ])
        if len(segments) == 3 and segments[:2] == ["v1", "nodes"]:
            node = self._nodes.get(segments[2].casefold())
            if node is None:
                # The real controller's words and code for a missing node.
                return self._error(404, FAIL_NOT_FOUND_NODE, f"Node '{segments[2]}' not found.")
            return self._json(200, self._node_json(node))
        if segments == ["v1", "view", "resources"]:
            return self._json(200, self._view_resources(query))
        if segments == ["v1", "resource-definitions"]:
            with_volumes = query.get("with_volume_definitions", ["false"])[-1].lower() == "true"
            return self._json(200, [
                self._definition_json(d, with_volumes)
                for d in sorted(self._definitions.values(), key=lambda d: d.name.casefold())
            ])
        return self._error(404, FAIL_INVLD_REQUEST, f"No REST resource at /{'/'.join(segments)}")

    @staticmethod
    def _json(status: int, body: Any) -> Answer:
        return status, json.dumps(body).encode(), "application/json", []

    def _error(
        self, status: int, ret_code: int, message: str,
        headers: Optional[list[tuple[str, str]]] = None,
    ) -> Answer:
        code, body, content_type, _ = self._json(status, [_api_call_rc(ret_code, message)])
        return code, body, content_type, headers or []

    def _sorted_nodes(self) -> list[_Node]:
        return sorted(self._nodes.values(), key=lambda n: n.name.casefold())

    @staticmethod
    def _node_json(node: _Node) -> dict[str, Any]:
        return {
            "name": node.name,
            "type": "Satellite",
            "props": {"CurStltConnName": "default", "NodeUname": node.name},
            "flags": [],
            "net_interfaces": [{
                "name": "default", "address": HOST, "satellite_port": 3366,
                "satellite_encryption_type": "PLAIN", "is_active": True,
                "uuid": _stable_uuid("netif", node.name),
            }],
            "connection_status": node.status,
            "uuid": _stable_uuid("node", node.name),
            "storage_providers": ["DISKLESS", "LVM", "LVM_THIN", "FILE", "FILE_THIN"],
            "resource_layers": ["DRBD", "STORAGE"],
            "unsupported_providers": {},
            "unsupported_layers": {},
            "platform": "LINUX",
        }

    def _view_resources(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        nodes = {n.casefold() for n in query.get("nodes", [])}
        names = {n.casefold() for n in query.get("resources", [])}
        pools = {p.casefold() for p in query.get("storage_pools", [])}
        selected = [
            r for r in self._resources.values()
            if (not nodes or r.node.casefold() in nodes)
            and (not names or r.definition.name.casefold() in names)
            and (not pools or r.storage_pool.casefold() in pools)
        ]
        selected.sort(key=lambda r: (r.definition.name.casefold(), r.node.casefold()))
        return [self._resource_json(r) for r in selected]

    def _resource_json(self, res: _Resource) -> dict[str, Any]:
        definition = res.definition
        online = self._nodes[res.node.casefold()].status == "ONLINE"
        drbd_device = f"/dev/drbd{definition.minor}"
        backing = f"/dev/linstor_vg/{definition.name}_00000"
        size = definition.size_kib
        disk_state = {"disk_state": "UpToDate"} if online else {}
        peers = {
            other.node: {
                "connected": online and self._nodes[other.node.casefold()].status == "ONLINE",
                "message": "Connected" if online and self._nodes[
                    other.node.casefold()].status == "ONLINE" else "Connecting",
            }
            for other in self._resources.values()
            if other.definition is definition and other is not res
        }
        return {
            "name": definition.name,
            "node_name": res.node,
            "props": {"StorPoolName": res.storage_pool},
            "flags": [],
            "layer_object": {
                "type": "DRBD",
                "resource_name_suffix": "",
                "drbd": {
                    "drbd_resource_definition": self._drbd_definition_json(definition),
                    "node_id": res.node_id,
                    "peer_slots": 7,
                    "al_stripes": 1,
                    "al_size": 32,
                    "flags": [],
                    "drbd_volumes": [{
                        "drbd_volume_definition": {
                            "resource_name_suffix": "", "volume_number": 0,
                            "minor_number": definition.minor,
                        },
                        "device_path": drbd_device,
                        "backing_device": backing,
                        "meta_disk": "internal",
                        "allocated_size_kib": size,
                        "usable_size_kib": size,
                        **disk_state,
                    }],
                    "connections": peers,
                    "promotion_score": 10102,
                    "may_promote": online and not res.in_use,
                },
                "children": [{
                    "type": "STORAGE",
                    "resource_name_suffix": "",
                    "storage": {"storage_volumes": [{
                        "volume_number": 0, "device_path": backing,
                        "allocated_size_kib": size, "usable_size_kib": size, **disk_state,
                    }]},
                }],
            },
            # A satellite that is not ONLINE reports no state: the controller cannot know.
            "state": {"in_use": res.in_use} if online else {},
            "uuid": _stable_uuid("resource", f"{definition.name}@{res.node}"),
            "create_timestamp": res.created_ms,
            "volumes": [{
                "volume_number": 0,
                "storage_pool_name": res.storage_pool,
                "provider_kind": "LVM_THIN",
                "device_path": drbd_device,
                "allocated_size_kib": size,
                "usable_size_kib": size,
                "props": {},
                "flags": [],
                "state": disk_state,
                "uuid": _stable_uuid("volume", f"{definition.name}@{res.node}/0"),
            }],
        }

    @staticmethod
    def _drbd_definition_json(definition: _ResourceDefinition) -> dict[str, Any]:
        return {
            "resource_name_suffix": "", "peer_slots": 7, "al_stripes": 1,
            "al_stripe_size_kib": 32, "port": definition.port, "transport_type": "IP",
            "secret": _stable_uuid("secret", definition.name).replace("-", "")[:20],
            "down": False,
        }

    def _definition_json(
        self, definition: _ResourceDefinition, with_volumes: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": definition.name,
            "props": {},
            "flags": [],
            "layer_data": [
                {"type": "DRBD", "data": self._drbd_definition_json(definition)},
                {"type": "STORAGE"},
            ],
            "uuid": _stable_uuid("rd", definition.name),
            "resource_group_name": definition.resource_group,
        }
        if with_volumes:
            body["volume_definitions"] = [{
                "volume_number": 0,
                "size_kib": definition.size_kib,
                "props": {},
                "flags": [],
                "layer_data": [
                    {"type": "DRBD", "data": {
                        "resource_name_suffix": "", "volume_number": 0,
                        "minor_number": definition.minor,
                    }},
                    {"type": "STORAGE"},
                ],
                "uuid": _stable_uuid("vd", f"{definition.name}/0"),
            }]
        return body


def _parse_node(spec: str) -> tuple[str, str]:
    name, _, status = spec.partition("=")
    return name, status or "ONLINE"


def main(argv: Optional[list[str]] = None) -> int:
    """Serve until SIGTERM/SIGINT, so a demo script can start and kill it like a daemon."""
    parser = argparse.ArgumentParser(description="A LINSTOR controller emulator for tests.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--node", action="append", default=[], metavar="NAME[=STATUS]",
                        help="a satellite node, ONLINE unless a status is given")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /v1/*")
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--key", help="private key of --cert (PEM)")
    parser.add_argument("--client-ca", help="require client certificates issued by this CA")
    args = parser.parse_args(argv)

    emulator = LinstorEmulator(
        args.port, token=args.token, server_cert=args.cert, server_key=args.key,
        client_ca=args.client_ca,
    )
    for spec in args.node:
        emulator.add_node(*_parse_node(spec))
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
