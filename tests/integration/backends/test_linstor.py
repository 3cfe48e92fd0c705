"""The LINSTOR probe, against a real (emulated) controller over real sockets on 127.0.0.1.

What an operator relies on: a live controller reads "healthy" with its version and this
node's state; every way a controller can be dead or wrong gets its own status word
(refused, timeout, dns, tls, http-error, bad-answer) instead of a traceback; and the
probe never takes longer than its timeout, however the far end misbehaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from guard.backends import ProbeTarget, http, linstor, probe_all_now, wire
from guard.config import Config, LinstorConfig, ProbesConfig
from guard.model import ProbeResult
from tests.support.emulators.linstor import CONTROLLER_VERSION, LinstorEmulator
from tests.support.paths import REPO
from tests.support.pki import make_test_pki, server_cert

HOST = "127.0.0.1"
NODE = "kvm1"
TOKEN = "T"
TIMEOUT = 0.5
# The deadline is a contract: the probe's own timeout plus scheduling slack, no more.
SLACK = 0.3
CLI_TIMEOUT = 30.0


# -- helpers ---------------------------------------------------------------------------


def config(**kwargs: str) -> LinstorConfig:
    """A LinstorConfig that never reads the host's own /var/lib/linstor.d/auth.json."""
    values = {"auth_json": "/nonexistent/cloudstack-guard-test/auth.json", "node": NODE}
    values.update(kwargs)
    return LinstorConfig(**values)


def run_probe(url: str, cfg: LinstorConfig, timeout: float = 3.0) -> tuple[ProbeResult, float]:
    """The probe as the CLI runs it (one asyncio.run), with the wall time of the whole call."""
    started = time.monotonic()
    result = asyncio.run(linstor.probe(url, cfg, timeout))
    return result, time.monotonic() - started


def request_lines(emulator: LinstorEmulator) -> list[tuple[str, str, dict[str, list[str]]]]:
    return [(r.method, r.path, r.query) for r in emulator.requests]


def free_port() -> int:
    """A port nothing listens on: bound once to get a number, then closed."""
    with socket.socket() as probe_socket:
        probe_socket.bind((HOST, 0))
        return probe_socket.getsockname()[1]


class _Listener:
    """A raw TCP listener on 127.0.0.1 handing each connection to `handle` in a thread."""

    def __init__(self, handle: Callable[[socket.socket, threading.Event], None]) -> None:
        self.handle = handle
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5.0)
            self.handle(conn, self.stopping)
        except OSError:
            pass  # the probe hanging up on us is the expected end
        except BaseException as exc:  # noqa: BLE001 - surfaced by close()
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.accepter.join(5.0)
        self.sock.close()
        for thread in self.threads:
            thread.join(5.0)
        assert not [t for t in self.threads if t.is_alive()], "test server threads did not stop"
        assert not self.errors, f"test server failed: {self.errors!r}"


@contextlib.contextmanager
def listener(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[_Listener]:
    server = _Listener(handle)
    try:
        yield server
    finally:
        server.close()


def dripping(first: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """Read the request, send `first`, then one byte every 0.2 s until the test ends."""

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(first)
        while not stopping.wait(0.2):
            conn.sendall(b"x")

    return handle


class _ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: dict[str, tuple[int, bytes]], chunked: bool) -> None:
        self.routes = routes
        self.chunked = chunked
        self.paths: list[str] = []
        super().__init__((HOST, 0), _ScriptedHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup of the address.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.server_address[1]


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ScriptedServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the paths are recorded instead."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        status, body = self.server.routes.get(self.path.split("?")[0], (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        if self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 7):
                piece = body[start:start + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True


@contextlib.contextmanager
def scripted_http(
    routes: dict[str, tuple[int, bytes]], chunked: bool = False
) -> Iterator[_ScriptedServer]:
    """A plain HTTP server answering fixed bodies per path, for answers the emulator can't give."""
    server = _ScriptedServer(routes, chunked)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5.0)


def _version_body() -> bytes:
    return json.dumps({"version": "1.20.3", "git_hash": "abc", "build_time": "x",
                       "rest_api_version": "1.16.0"}).encode()


def _nodes_body(status: str = "ONLINE") -> bytes:
    return json.dumps([{"name": NODE, "type": "Satellite", "connection_status": status}]).encode()


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def emulator() -> Iterator[LinstorEmulator]:
    with LinstorEmulator(nodes=[NODE, "kvm2"]) as emu:
        yield emu


@pytest.fixture
def token_emulator() -> Iterator[LinstorEmulator]:
    with LinstorEmulator(nodes=[NODE], token=TOKEN) as emu:
        yield emu


@pytest.fixture
def tls_emulator(pki: dict[str, Path]) -> Iterator[LinstorEmulator]:
    with LinstorEmulator(nodes=[NODE], server_cert=pki["server_cert"],
                         server_key=pki["server_key"]) as emu:
        yield emu


@pytest.fixture
def mtls_emulator(pki: dict[str, Path]) -> Iterator[LinstorEmulator]:
    with LinstorEmulator(nodes=[NODE], server_cert=pki["server_cert"],
                         server_key=pki["server_key"], client_ca=pki["ca"]) as emu:
        yield emu


# -- a healthy controller --------------------------------------------------------------


def test_healthy_controller_reports_version_node_and_walks_the_adaptor_ladder(
    emulator: LinstorEmulator,
) -> None:
    result, _ = run_probe(emulator.url, config())
    assert result.status == "healthy"
    assert result.reachable
    assert result.backend == "linstor"
    assert result.target == emulator.url
    assert result.version == CONTROLLER_VERSION
    assert result.node_status == "ONLINE"
    assert result.http_status is None
    assert CONTROLLER_VERSION in result.detail and NODE in result.detail
    assert 0 < result.latency_s < 3.0
    assert request_lines(emulator) == [
        ("GET", "/health", {}),
        ("GET", "/v1/controller/version", {}),
        ("GET", "/v1/nodes", {"nodes": [NODE]}),
    ]


def test_node_defaults_to_this_hosts_name() -> None:
    hostname = socket.gethostname()
    with LinstorEmulator(nodes=[hostname, "other-node"]) as emu:
        result, _ = run_probe(emu.url, config(node=""))
        assert result.status == "healthy"
        assert result.node_status == "ONLINE"
        assert emu.requests[-1].path == "/v1/nodes"
        assert emu.requests[-1].query == {"nodes": [hostname]}


def test_offline_node_is_still_a_healthy_controller(emulator: LinstorEmulator) -> None:
    emulator.set_node_status(NODE, "OFFLINE")
    result, _ = run_probe(emulator.url, config())
    assert result.status == "healthy"
    assert result.node_status == "OFFLINE"
    assert "OFFLINE" in result.detail


def test_node_unknown_to_the_controller_is_absent(emulator: LinstorEmulator) -> None:
    result, _ = run_probe(emulator.url, config(node="kvm9"))
    assert result.status == "healthy"
    assert result.node_status == "absent"


def test_node_name_matches_regardless_of_case(emulator: LinstorEmulator) -> None:
    """`hostname` and the LINSTOR node name often differ only in case."""
    result, _ = run_probe(emulator.url, config(node=NODE.upper()))
    assert result.node_status == "ONLINE"


def test_bare_host_port_is_probed_over_http(emulator: LinstorEmulator) -> None:
    result, _ = run_probe(f"{HOST}:{emulator.port}", config())
    assert result.status == "healthy"
    assert result.target == f"http://{HOST}:{emulator.port}"


@pytest.mark.parametrize(("raw", "expected"), [
    ("http://ctl", http.Target("http", "ctl", 3370, "")),
    ("https://ctl", http.Target("https", "ctl", 3371, "")),
    ("HTTPS://ctl/", http.Target("https", "ctl", 3371, "")),
    ("ctl:4000", http.Target("http", "ctl", 4000, "")),
    ("ctl", http.Target("http", "ctl", 3370, "")),
    (" https://ctl:9443/linstor/ ", http.Target("https", "ctl", 9443, "/linstor")),
])
def test_parse_target_fills_linstor_default_ports(raw: str, expected: http.Target) -> None:
    assert http.parse_target(raw, linstor.DEFAULT_PORTS) == expected


@pytest.mark.parametrize(("url", "port"), [("http://127.0.0.1", 3370), ("https://127.0.0.1", 3371)])
def test_probe_without_port_goes_to_the_linstor_port(url: str, port: int) -> None:
    """Whatever answers there (normally nothing: refused), the result names the port asked."""
    result, _ = run_probe(url, config(), TIMEOUT)
    assert result.target == f"{url}:{port}"


def test_unusable_url_is_a_bad_answer_not_a_crash() -> None:
    result, _ = run_probe("ftp://ctl", config())
    assert result.status == "bad-answer"
    assert "unusable" in result.detail
    result, _ = run_probe(" , ", config())
    assert result.status == "bad-answer"


# -- dead or unreachable controllers ---------------------------------------------------


def test_stopped_controller_is_refused_and_comes_back_healthy(emulator: LinstorEmulator) -> None:
    emulator.stop()
    result, elapsed = run_probe(emulator.url, config())
    assert result.status == "refused"
    assert not result.reachable
    assert str(emulator.port) in result.detail
    assert elapsed < 1.0
    emulator.start()
    result, _ = run_probe(emulator.url, config())
    assert result.status == "healthy"


def test_unresolvable_name_is_dns() -> None:
    result, elapsed = run_probe("http://linstor-controller.invalid:3370", config())
    assert result.status == "dns"
    assert "linstor-controller.invalid" in result.detail
    assert elapsed < 3.0 + SLACK


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https-handshake"])
def test_hung_controller_times_out_within_the_deadline(
    tls: bool, emulator: LinstorEmulator, tls_emulator: LinstorEmulator, pki: dict[str, Path],
) -> None:
    emu = tls_emulator if tls else emulator
    emu.set_hang(True)
    result, elapsed = run_probe(emu.url, config(ca=str(pki["ca"])), TIMEOUT)
    assert result.status == "timeout"
    assert f"{TIMEOUT:g}s" in result.detail
    assert emu.held_connections == 1  # it really reached the controller and waited
    assert TIMEOUT - 0.05 <= elapsed <= TIMEOUT + SLACK


@pytest.mark.parametrize("first", [
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
], ids=["dripping-headers", "dripping-body"])
def test_dripping_controller_times_out_within_the_deadline(first: bytes) -> None:
    """Per-operation socket timeouts never fire on a byte every 0.2 s; the deadline must."""
    with listener(dripping(first)) as server:
        result, elapsed = run_probe(f"http://{HOST}:{server.port}", config(), TIMEOUT)
    assert result.status == "timeout"
    assert elapsed <= TIMEOUT + SLACK


# -- TLS -------------------------------------------------------------------------------


def test_tls_with_the_controllers_ca_is_healthy(
    tls_emulator: LinstorEmulator, pki: dict[str, Path]
) -> None:
    result, _ = run_probe(tls_emulator.url, config(ca=str(pki["ca"])))
    assert tls_emulator.url.startswith("https://")
    assert result.status == "healthy"
    assert result.version == CONTROLLER_VERSION


def test_tls_without_the_ca_fails_verification(tls_emulator: LinstorEmulator) -> None:
    result, _ = run_probe(tls_emulator.url, config())
    assert result.status == "tls"
    assert "issuer certificate" in result.detail  # OpenSSL's verify message, not a stack dump
    assert tls_emulator.requests == []


def test_unreadable_tls_material_is_tls(tls_emulator: LinstorEmulator, tmp_path: Path) -> None:
    result, _ = run_probe(tls_emulator.url, config(ca=str(tmp_path / "missing-ca.pem")))
    assert result.status == "tls"
    assert "cannot load TLS material" in result.detail


def test_mutual_tls_with_client_certificate_is_healthy(
    mtls_emulator: LinstorEmulator, pki: dict[str, Path]
) -> None:
    cfg = config(ca=str(pki["ca"]), cert=str(pki["client_cert"]), key=str(pki["client_key"]))
    result, _ = run_probe(mtls_emulator.url, cfg)
    assert result.status == "healthy"
    assert result.node_status == "ONLINE"


def test_mutual_tls_without_client_certificate_is_tls_every_time(
    mtls_emulator: LinstorEmulator, pki: dict[str, Path]
) -> None:
    """Under TLS 1.3 the client's handshake ends before the server has seen its (empty)
    certificate, so the rejection only shows on the first read: as an alert, or, when
    the server's reset overtakes the alert (a few percent of runs), as a bare reset.
    Either way the operator must read "tls", not "bad-answer"."""
    statuses = []
    for _ in range(20):
        result, _ = run_probe(mtls_emulator.url, config(ca=str(pki["ca"])))
        statuses.append((result.status, result.detail))
    assert {s for s, _ in statuses} == {"tls"}, statuses
    assert mtls_emulator.requests == []


def _reject_without_alert(pki: dict[str, Path]) -> Callable[[socket.socket, threading.Event], None]:
    """A TLS 1.3 server requiring a client certificate whose rejection alert is lost to
    the TCP reset: the deterministic form of the race in the test above."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(str(pki["server_cert"]), str(pki["server_key"]))
    context.load_verify_locations(cafile=str(pki["ca"]))
    context.verify_mode = ssl.CERT_REQUIRED

    def handle(conn: socket.socket, _stopping: threading.Event) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        rejected = False
        while not rejected:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                data = conn.recv(65536)
                if not data:
                    return
                incoming.write(data)
            except ssl.SSLError:
                outgoing.read()  # the alert: dropped, as if the reset overtook it
                rejected = True
        assert rejected, "a client without a certificate completed the handshake"
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return handle


def test_client_certificate_rejection_seen_only_as_a_reset_is_still_tls(
    pki: dict[str, Path],
) -> None:
    with listener(_reject_without_alert(pki)) as server:
        result, _ = run_probe(f"https://{HOST}:{server.port}", config(ca=str(pki["ca"])))
    assert result.status == "tls", result


# -- the bearer token ------------------------------------------------------------------


def test_token_from_auth_json_is_sent_as_bearer(
    token_emulator: LinstorEmulator, tmp_path: Path
) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"token": TOKEN}))
    result, _ = run_probe(token_emulator.url, config(auth_json=str(auth)))
    assert result.status == "healthy"
    api_calls = [r for r in token_emulator.requests if r.path.startswith("/v1/")]
    assert len(api_calls) == 2
    assert {r.header("Authorization") for r in api_calls} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no-auth-json", "other-token"])
def test_missing_or_wrong_token_is_http_401(
    token: Optional[str], token_emulator: LinstorEmulator, tmp_path: Path
) -> None:
    cfg = config()
    if token is not None:
        auth = tmp_path / "auth.json"
        auth.write_text(json.dumps({"token": token}))
        cfg = config(auth_json=str(auth))
    result, _ = run_probe(token_emulator.url, cfg)
    assert result.status == "http-error"
    assert result.http_status == 401
    assert "Unauthorized" in result.detail  # LINSTOR's own message, not its JSON envelope
    assert not result.detail.lstrip().startswith("/v1/controller/version answered HTTP 401: [")


@pytest.mark.parametrize("content", [
    b"{not json",
    b"",
    json.dumps([{"token": TOKEN}]).encode(),
    json.dumps({"token": 42}).encode(),
    json.dumps({"token": None}).encode(),
    json.dumps({"token": [TOKEN]}).encode(),
    b'{"token": "\xff\xfe"}',
], ids=["not-json", "empty", "a-list", "token-number", "token-null", "token-list", "not-utf8"])
def test_malformed_auth_json_probes_without_token(
    content: bytes, token_emulator: LinstorEmulator, tmp_path: Path
) -> None:
    auth = tmp_path / "auth.json"
    auth.write_bytes(content)
    result, _ = run_probe(token_emulator.url, config(auth_json=str(auth)))
    assert result.status == "http-error"
    assert result.http_status == 401
    assert all(r.header("Authorization") is None for r in token_emulator.requests)


def test_auth_json_that_is_a_directory_probes_without_token(
    token_emulator: LinstorEmulator, tmp_path: Path
) -> None:
    result, _ = run_probe(token_emulator.url, config(auth_json=str(tmp_path)))
    assert result.http_status == 401


# -- wrong answers ---------------------------------------------------------------------


def test_unhealthy_controller_is_http_error_with_its_reason(emulator: LinstorEmulator) -> None:
    emulator.set_unhealthy("database connection lost")
    result, _ = run_probe(emulator.url, config())
    assert result.status == "http-error"
    assert result.http_status == 500
    assert "database connection lost" in result.detail
    assert "/health" in result.detail
    assert [r.path for r in emulator.requests] == ["/health"]  # no point asking further


def test_foreign_web_server_on_the_port_is_bad_answer(emulator: LinstorEmulator) -> None:
    emulator.set_garbage(True)
    result, _ = run_probe(emulator.url, config())
    assert result.status == "bad-answer"
    assert "not JSON" in result.detail
    assert result.version == ""


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_controller_without_health_endpoint_is_probed_further(chunked: bool) -> None:
    """Older controllers answer 404 on /health; the REST API still decides."""
    routes = {"/v1/controller/version": (200, _version_body()),
              "/v1/nodes": (200, _nodes_body("ONLINE"))}
    with scripted_http(routes, chunked=chunked) as server:
        result, _ = run_probe(f"http://{HOST}:{server.server_port}", config())
    assert result.status == "healthy", result
    assert result.version == "1.20.3"
    assert result.node_status == "ONLINE"
    assert server.paths == ["/health", "/v1/controller/version", f"/v1/nodes?nodes={NODE}"]


@pytest.mark.parametrize(("routes", "words"), [
    ({"/health": (200, b""), "/v1/controller/version": (200, b'{"git_hash": "x"}')},
     "no version"),
    ({"/health": (200, b""), "/v1/controller/version": (200, _version_body()),
      "/v1/nodes": (200, b'{"name": "kvm1"}')}, "not a list"),
    ({"/health": (200, b""), "/v1/controller/version": (503, b"")}, "HTTP 503"),
], ids=["version-missing", "nodes-not-a-list", "api-503"])
def test_answers_of_the_wrong_shape_are_classified(
    routes: dict[str, tuple[int, bytes]], words: str
) -> None:
    with scripted_http(routes) as server:
        result, _ = run_probe(f"http://{HOST}:{server.server_port}", config())
    assert result.status == ("http-error" if "HTTP" in words else "bad-answer")
    assert words in result.detail


def test_not_http_at_all_is_bad_answer() -> None:
    def handle(conn: socket.socket, _stopping: threading.Event) -> None:
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    with listener(handle) as server:
        result, _ = run_probe(f"http://{HOST}:{server.port}", config())
    assert result.status == "bad-answer"
    assert "not an HTTP answer" in result.detail


# -- several controllers ---------------------------------------------------------------


@pytest.mark.parametrize("healthy_first", [False, True])
def test_comma_list_is_healthy_if_any_controller_answers(
    healthy_first: bool, emulator: LinstorEmulator
) -> None:
    dead = f"http://{HOST}:{free_port()}"
    urls = [emulator.url, dead] if healthy_first else [dead, emulator.url]
    result, _ = run_probe(",".join(urls), config())
    assert result.status == "healthy"
    assert result.target == emulator.url


def test_comma_list_with_only_dead_controllers_is_not_healthy() -> None:
    url = f"http://{HOST}:{free_port()},http://{HOST}:{free_port()}"
    result, _ = run_probe(url, config())
    assert result.status == "refused"


def test_comma_list_with_a_hung_controller_is_healthy_if_another_answers(
    emulator: LinstorEmulator,
) -> None:
    """A controller host gone dark (SYN dropped, or hung) must not hide the active one:
    with HA controllers, CloudStack stores them all as one comma list."""
    with LinstorEmulator(nodes=[NODE]) as hung:
        hung.set_hang(True)
        result, elapsed = run_probe(f"{hung.url},{emulator.url}", config(), TIMEOUT)
    assert result.status == "healthy", result
    assert result.target == emulator.url
    assert elapsed <= TIMEOUT + SLACK


def _targets(urls: list[str]) -> list[ProbeTarget]:
    return [ProbeTarget(f"pool-{n}", "linstor", url) for n, url in enumerate(urls)]


def _config(timeout: float) -> Config:
    return Config(linstor=config(), probes=ProbesConfig(timeout=timeout))


def test_probe_many_dedups_urls(emulator: LinstorEmulator) -> None:
    results = probe_all_now(_targets([emulator.url] * 3), _config(3.0))
    assert list(results) == [("linstor", emulator.url)]
    assert results["linstor", emulator.url].status == "healthy"
    assert len(emulator.requests) == 3  # one ladder, not three
    assert probe_all_now([], _config(3.0)) == {}


def test_probe_many_runs_controllers_concurrently(emulator: LinstorEmulator) -> None:
    with LinstorEmulator(nodes=[NODE]) as hung_a, LinstorEmulator(nodes=[NODE]) as hung_b:
        hung_a.set_hang(True)
        hung_b.set_hang(True)
        urls = [hung_a.url, emulator.url, hung_b.url, hung_a.url]
        started = time.monotonic()
        results = probe_all_now(_targets(urls), _config(TIMEOUT))
        elapsed = time.monotonic() - started
    assert set(results) == {("linstor", u) for u in (hung_a.url, hung_b.url, emulator.url)}
    assert results["linstor", emulator.url].status == "healthy"
    assert results["linstor", hung_a.url].status == "timeout"
    assert results["linstor", hung_b.url].status == "timeout"
    assert elapsed <= TIMEOUT + SLACK, "hung controllers were probed one after another"


# -- the command line ------------------------------------------------------------------


@pytest.fixture
def guard_toml(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    path = tmp_path / "guard.toml"
    path.write_text(
        f'state_dir = "{state}"\n\n'
        "[probes]\n"
        'timeout = "2s"\n\n'
        "[linstor]\n"
        f'auth_json = "{tmp_path / "no-such-auth.json"}"\n'
    )
    path.chmod(0o644)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
    )


def test_cli_probe_json_healthy_exits_0(guard_toml: Path) -> None:
    with LinstorEmulator(nodes=[socket.gethostname()]) as emu:
        proc = run_cli("probe", emu.url, "--json", "--config", str(guard_toml))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "OK" and doc["exit_code"] == 0
    assert doc["probes"][0]["status"] == "healthy"
    assert doc["probes"][0]["version"] == CONTROLLER_VERSION
    assert doc["probes"][0]["node_status"] == "ONLINE"
    assert doc["findings"] == []


def test_cli_probe_json_refused_exits_2(guard_toml: Path) -> None:
    proc = run_cli("probe", f"http://{HOST}:{free_port()}", "--json", "--config", str(guard_toml))
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "CRITICAL" and doc["exit_code"] == 2
    assert doc["probes"][0]["status"] == "refused"
    assert len(doc["findings"]) == 1


def test_cli_probe_text_mode_first_line(guard_toml: Path, emulator: LinstorEmulator) -> None:
    proc = run_cli("probe", emulator.url, "--config", str(guard_toml))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("CLOUDSTACK-GUARD OK - ")
    emulator.stop()
    proc = run_cli("probe", emulator.url, "--config", str(guard_toml))
    assert proc.returncode == 2, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("CLOUDSTACK-GUARD CRITICAL - ")
    assert "refused" in first


def test_cli_probe_unknown_pool_uuid_exits_3_with_one_line(guard_toml: Path) -> None:
    uuid = "5e4a1c2b-3d4e-4f50-8a6b-7c8d9e0f1a2b"
    proc = run_cli("probe", uuid, "--config", str(guard_toml))
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("CLOUDSTACK-GUARD UNKNOWN - ")
    assert uuid in lines[0]
    assert "Traceback" not in proc.stderr


def test_token_with_control_characters_is_not_sent(tmp_path):
    """A token file must not be able to forge request headers."""
    with LinstorEmulator(nodes=["kvm1"], token="T") as emu:
        auth = tmp_path / "auth.json"
        auth.write_text(json.dumps({"token": "T\r\nX-Injected: yes"}))
        result = asyncio.run(linstor.probe(emu.url, LinstorConfig(auth_json=str(auth), node="kvm1"), 2.0))
        assert result.status == "http-error" and result.http_status == 401
        assert all(r.header("X-Injected") is None and r.header("Authorization") is None
                   for r in emu.requests)


def test_cli_probe_bare_hostname_is_a_url_not_a_pool(guard_toml: Path) -> None:
    proc = run_cli("probe", f"{HOST}:{free_port()}", "--json", "--config", str(guard_toml))
    assert proc.returncode == 2, proc.stdout
    assert json.loads(proc.stdout)["probes"][0]["status"] == "refused"


# -- name resolution that fails oddly or finishes late ------------------------------------


def _join_resolvers(timeout: float = 5.0) -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("resolve-"):
            thread.join(timeout)


def test_host_idna_rejects_is_dns_at_once_and_silent(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getaddrinfo raises UnicodeError, not OSError, for a name idna cannot encode; it is
    a dns answer like any other, not a dead worker thread and a wait for the deadline."""
    # pytest swallows thread exceptions; the CLI prints them on stderr
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    result, elapsed = run_probe("http://a..b:3370", config(), timeout=3.0)
    _join_resolvers()
    assert result.status == "dns", result
    assert "a..b" in result.detail
    assert elapsed < 1.0
    assert capfd.readouterr().err == ""


def test_resolution_ending_after_the_probe_is_silent(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resolver thread outlives the probe's event loop when the deadline passes first;
    its late answer must go nowhere quietly."""
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    release = threading.Event()
    real = socket.getaddrinfo

    def slow_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("slow.example", b"slow.example"):  # the guard looks names up as bytes
            release.wait(5.0)
            return real(HOST, *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(wire.socket, "getaddrinfo", slow_getaddrinfo)
    result, elapsed = run_probe("http://slow.example:3370", config(), timeout=TIMEOUT)
    assert result.status == "timeout" and elapsed < TIMEOUT + SLACK
    release.set()
    _join_resolvers()
    assert capfd.readouterr().err == ""


# -- credentials written into a controller URL ---------------------------------------------


def test_userinfo_in_controller_url_is_never_shown(emulator: LinstorEmulator, tmp_path: Path) -> None:
    secret = "hunter2"
    results = [
        run_probe(f"ftp://admin:{secret}@ctl", config())[0],
        run_probe(f"http://admin:{secret}@ctl:notaport", config())[0],
        run_probe(f"https://admin:{secret}@{HOST}:{emulator.port}",
                  config(ca=str(tmp_path / "missing-ca.pem")))[0],
        run_probe(f"http://admin:{secret}@{HOST}:{free_port()}", config())[0],
        run_probe(f"http://admin:{secret}@{HOST}:{emulator.port},admin:{secret}@{HOST}:{free_port()}",
                  config())[0],
    ]
    assert [r.status for r in results] == ["bad-answer", "bad-answer", "tls", "refused", "healthy"]
    assert "unusable" in results[0].detail and "ctl" in results[0].detail
    assert results[2].target == f"https://{HOST}:{emulator.port}"
    assert results[4].target == f"http://{HOST}:{emulator.port}"
    for result in results:
        assert secret not in result.detail and secret not in result.target, result
        assert "admin" not in result.detail and "admin" not in result.target, result


def test_cli_probe_of_a_scheme_no_backend_speaks_is_unknown_and_names_those_that_are(guard_toml: Path) -> None:
    """The backend table decides, not a URL parser deep inside the LINSTOR probe."""
    proc = run_cli("probe", "sheepdog://10.0.0.9/primary", "--config", str(guard_toml))
    assert proc.returncode == 3, proc.stdout
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("CLOUDSTACK-GUARD UNKNOWN - ")
    assert "sheepdog://10.0.0.9/primary" in lines[0] and "http://, https://" in lines[0]


@pytest.mark.parametrize("kind", ["expired", "another host's"])
def test_an_expired_or_wrong_host_certificate_is_tls_and_never_plain_http(
    pki: dict[str, Path], kind: str
) -> None:
    """Signed by the CA the guard trusts, yet not for this controller now: verification
    fails, the probe says tls, and it never tries http:// instead."""
    expired = kind == "expired"
    san = "IP:127.0.0.1, DNS:localhost" if expired else "DNS:ctl.elsewhere.example"
    cert = server_cert(pki, "expired" if expired else "elsewhere", san, "-1" if expired else "7")
    with LinstorEmulator(nodes=[NODE], server_cert=cert, server_key=pki["server_key"]) as emu:
        result, _ = run_probe(emu.url, config(ca=str(pki["ca"])))
        assert result.status == "tls", result
        assert ("expired" if expired else "mismatch") in result.detail, result.detail
        assert emu.requests == []
