"""The LINSTOR emulator must be faithful, or every guard test built on it proves nothing.

Faithful means: its JSON validates against LINBIT's own OpenAPI spec, the real
`python-linstor` client talks to it, and its failure modes are the real thing at the
socket level (a refused connect, a silent listener, a rejected TLS handshake).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, NamedTuple, NoReturn, Optional
from urllib.parse import quote, urlsplit

import jsonschema
import linstor
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.emulators.linstor import (
    CONNECTION_STATUSES,
    GARBAGE_BODY,
    REST_API_VERSION,
    LinstorEmulator,
)
from tests.support.paths import REPO, SHARED
from tests.support.pki import make_test_pki

SPEC_PATH = SHARED / "reference" / "linstor" / "rest_v1_openapi.yaml"
TOKEN = "s3cr3t-token-for-tests"


def _missing_real_part(reason: str) -> NoReturn:
    """Skip, unless the run promised real parts: then a missing one is a failure."""
    if os.environ.get("GUARD_REQUIRE_REAL_PARTS") == "1":
        pytest.fail(f"{reason} (GUARD_REQUIRE_REAL_PARTS=1 forbids skipping)")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


# -- the real OpenAPI spec as JSON Schema ---------------------------------------------

# OpenAPI 3.0 keywords that JSON Schema lacks or means differently; `nullable` is turned
# into an explicit null alternative instead of being dropped.
_OPENAPI_ONLY = {"nullable", "example", "discriminator", "xml", "externalDocs", "deprecated"}


def _convert(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"$ref": schema["$ref"]}  # OpenAPI 3.0 ignores a $ref's siblings
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _OPENAPI_ONLY:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(sub) for sub in value]
        else:
            out[key] = value
    if schema.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


class Spec:
    """The spec's schemas, resolvable by $ref, plus a check the spec itself cannot make:

    OpenAPI objects allow undeclared properties, so a misspelt optional field in the
    emulator would validate; `undeclared` reports every key the spec does not name.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        schemas = document["components"]["schemas"]
        self.components = {"schemas": {name: _convert(s) for name, s in schemas.items()}}

    def response(self, path: str, method: str, status: str) -> dict[str, Any]:
        answer = self.document["paths"][path][method]["responses"][status]
        if "$ref" in answer:
            answer = self._pointer(self.document, answer["$ref"])
        return _convert(answer["content"]["application/json"]["schema"])

    @staticmethod
    def component(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def validator(self, schema: dict[str, Any]) -> jsonschema.Draft4Validator:
        # OpenAPI 3.0 schemas are a dialect of JSON Schema draft 4/5.
        root = {"components": self.components, "allOf": [schema]}
        return jsonschema.Draft4Validator(
            root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
        )

    def problems(self, schema: dict[str, Any], instance: Any) -> list[str]:
        errors = [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in self.validator(schema).iter_errors(instance)
        ]
        return errors + [f"{where}: not declared in the spec" for where in
                         self.undeclared(instance, schema, "$")]

    @staticmethod
    def _pointer(document: dict[str, Any], ref: str) -> Any:
        node: Any = document
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node

    def _deref(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self._pointer({"components": self.components}, schema["$ref"])
        return schema

    def _declared(self, schema: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        schema = self._deref(schema)
        properties = dict(schema.get("properties", {}))
        additional = schema.get("additionalProperties")
        for part in schema.get("allOf", []):
            more, extra = self._declared(part)
            properties.update(more)
            additional = additional if additional is not None else extra
        return properties, additional

    def undeclared(self, instance: Any, schema: dict[str, Any], where: str) -> list[str]:
        schema = self._deref(schema)
        for keyword in ("oneOf", "anyOf"):
            if keyword in schema:
                matching = [s for s in schema[keyword] if self.validator(s).is_valid(instance)]
                return self.undeclared(instance, matching[0], where) if matching else []
        if isinstance(instance, list) and isinstance(schema.get("items"), dict):
            return [p for i, item in enumerate(instance)
                    for p in self.undeclared(item, schema["items"], f"{where}[{i}]")]
        if not isinstance(instance, dict):
            return []
        properties, additional = self._declared(schema)
        found = []
        for key, value in instance.items():
            if key in properties:
                found += self.undeclared(value, properties[key], f"{where}.{key}")
            elif isinstance(additional, dict):
                found += self.undeclared(value, additional, f"{where}.{key}")
            elif properties:
                found.append(f"{where}.{key}")
        return found


@pytest.fixture(scope="module")
def spec() -> Spec:
    if not SPEC_PATH.is_file():
        _missing_real_part(
            f"LINSTOR OpenAPI spec not found at {SPEC_PATH}: the emulator's JSON cannot be "
            "checked against the real API (it lives in ../shared beside the checkout)"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    jsonschema.Draft4Validator.check_schema(
        {"components": {"schemas": Spec(document).components["schemas"]}}
    )
    return Spec(document)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    try:
        return make_test_pki(tmp_path_factory.mktemp("pki"))
    except RuntimeError as exc:
        _missing_real_part(f"cannot make test certificates: {exc}")


# -- plain HTTP helpers ---------------------------------------------------------------


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def status_and_body(self) -> tuple[int, bytes]:
        return self.status, self.body


def fetch(
    url: str,
    path: str,
    headers: Optional[dict[str, str]] = None,
    context: Optional[ssl.SSLContext] = None,
    method: str = "GET",
) -> Reply:
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=3, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3)
    try:
        connection.request(method, path, headers={"Connection": "close", **(headers or {})})
        answer = connection.getresponse()
        return Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


def tls_attempt(
    port: int, context: ssl.SSLContext, hostname: str, timeout: float = 2.0
) -> tuple[str, Optional[BaseException]]:
    """Handshake, then wait for the server's first bytes; says at which stage it failed.

    Nothing is sent after the handshake, so a server that closes on us does so cleanly
    and its TLS alert is not lost to a TCP reset.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        try:
            conn = context.wrap_socket(raw, server_hostname=hostname)
        except OSError as exc:  # ssl.SSLError and socket.timeout are OSErrors
            return "handshake", exc
        with conn:
            try:
                conn.recv(1)
            except OSError as exc:
                return "read", exc
            return "read", None


def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture()
def emulator() -> Iterator[LinstorEmulator]:
    with LinstorEmulator(nodes=["kvm1"]) as emu:
        yield emu


@pytest.fixture(scope="module")
def cluster() -> Iterator[LinstorEmulator]:
    """A small, varied, read-only cluster for the schema checks."""
    with LinstorEmulator(nodes=["kvm1", "kvm3"]) as emu:
        emu.add_node("kvm2", "OFFLINE")
        emu.add_resource_definition("cs-volume-empty", resource_group="cloudstack-pool")
        emu.add_resource("cs-volume-a", "kvm1", in_use=True)
        emu.add_resource("cs-volume-a", "kvm2")
        emu.add_resource("cs-volume-b", "kvm3", storage_pool="thin")
        yield emu


# -- 1. every body validates against the real spec ----------------------------------

SCHEMA_CASES = [
    ("/v1/controller/version", 200, ("path", "/v1/controller/version", "get", "200")),
    ("/v1/nodes", 200, ("path", "/v1/nodes", "get", "200")),
    ("/v1/nodes?nodes=kvm2", 200, ("path", "/v1/nodes", "get", "200")),
    # The spec has no GET on /v1/nodes/{node}; the real controller (Nodes.listSingleNode)
    # serves it and answers with the bare Node object.
    ("/v1/nodes/kvm1", 200, ("component", "Node")),
    ("/v1/view/resources", 200, ("path", "/v1/view/resources", "get", "200")),
    ("/v1/view/resources?nodes=kvm2", 200, ("path", "/v1/view/resources", "get", "200")),
    ("/v1/resource-definitions", 200, ("path", "/v1/resource-definitions", "get", "200")),
    ("/v1/resource-definitions?with_volume_definitions=true", 200,
     ("path", "/v1/resource-definitions", "get", "200")),
    ("/v1/nodes/no-such-node", 404, ("component", "ApiCallRcList")),
    ("/v1/no/such/thing", 404, ("component", "ApiCallRcList")),
]


def _schema(spec: Spec, where: tuple[str, ...]) -> dict[str, Any]:
    if where[0] == "component":
        return spec.component(where[1])
    return spec.response(*where[1:])


@pytest.mark.parametrize(("path", "status", "where"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_json_bodies_match_the_real_spec(
    spec: Spec, cluster: LinstorEmulator, path: str, status: int, where: tuple[str, ...]
) -> None:
    reply = fetch(cluster.url, path)
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert spec.problems(_schema(spec, where), body) == []
    if status >= 400:
        # ret_code is a Java long with the error mask bits set, hence negative.
        assert all(entry["ret_code"] < 0 for entry in body)
        assert all(datetime.fromisoformat(entry["created_at"]) for entry in body)


def test_error_lists_for_auth_and_methods_match_the_spec(spec: Spec) -> None:
    with LinstorEmulator(nodes=["kvm1"], token=TOKEN) as emu:
        unauthorized = fetch(emu.url, "/v1/nodes")
        refused_method = fetch(
            emu.url, "/v1/nodes", {"Authorization": f"Bearer {TOKEN}"}, method="POST"
        )
    assert (unauthorized.status, refused_method.status) == (401, 405)
    for reply in (unauthorized, refused_method):
        assert spec.problems(spec.component("ApiCallRcList"), reply.json()) == []


def test_the_spec_and_the_emulator_agree_on_statuses_and_version(spec: Spec) -> None:
    node = spec.document["components"]["schemas"]["Node"]["properties"]
    assert tuple(node["connection_status"]["enum"]) == CONNECTION_STATUSES
    assert spec.document["info"]["version"] == REST_API_VERSION


def test_every_spec_status_is_served_and_others_are_refused(spec: Spec) -> None:
    with LinstorEmulator() as emu:
        for status in CONNECTION_STATUSES:
            emu.add_node(f"n-{status.lower().replace('_', '-')}", status)
        nodes = fetch(emu.url, "/v1/nodes").json()
        with pytest.raises(ValueError, match="connection status"):
            emu.add_node("bad", "MISSING_EXT_TOOLS")
    assert spec.problems(spec.response("/v1/nodes", "get", "200"), nodes) == []
    assert sorted(n["connection_status"] for n in nodes) == sorted(CONNECTION_STATUSES)


_names = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z")


def test_random_cluster_states_match_the_spec(spec: Spec) -> None:
    with LinstorEmulator() as emu:

        @settings(max_examples=20, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(
            nodes=st.lists(st.tuples(_names, st.sampled_from(CONNECTION_STATUSES)),
                           max_size=4, unique_by=lambda n: n[0]),
            resources=st.lists(
                st.tuples(_names, st.lists(st.integers(0, 3), max_size=3, unique=True),
                          st.booleans()),
                max_size=3, unique_by=lambda r: r[0]),
        )
        def check(nodes: list[tuple[str, str]], resources: list[tuple[str, list[int], bool]]
                  ) -> None:
            try:
                for name, status in nodes:
                    emu.add_node(name, status)
                for rsc, where, in_use in resources:
                    emu.add_resource_definition(rsc, resource_group="cloudstack-pool")
                    for index in where:
                        if index < len(nodes):
                            emu.add_resource(rsc, nodes[index][0], in_use=in_use)
                listed = fetch(emu.url, "/v1/nodes").json()
                assert {(n["name"], n["connection_status"]) for n in listed} == set(nodes)
                checks = [("/v1/nodes", spec.response("/v1/nodes", "get", "200"), listed)]
                for path in ("/v1/view/resources",
                             "/v1/resource-definitions?with_volume_definitions=true"):
                    schema = spec.response(path.split("?")[0], "get", "200")
                    checks.append((path, schema, fetch(emu.url, path).json()))
                for name, _ in nodes[:1]:
                    checks.append(("node", spec.component("Node"),
                                   fetch(emu.url, f"/v1/nodes/{quote(name)}").json()))
                for path, schema, body in checks:
                    assert spec.problems(schema, body) == [], path
            finally:
                for name, _ in nodes:
                    emu.remove_node(name)
                for rsc, _, _ in resources:
                    emu.remove_resource_definition(rsc)

        check()


# -- 2. the real python-linstor client ----------------------------------------------


def test_python_linstor_lists_nodes(emulator: LinstorEmulator) -> None:
    emulator.add_node("kvm2", "OFFLINE")
    with linstor.Linstor(emulator.url, timeout=5) as client:
        everything = client.node_list_raise()
        just_kvm2 = client.node_list_raise(filter_by_nodes=["kvm2"])
    assert [(n.name, n.connection_status) for n in everything.nodes] == [
        ("kvm1", "ONLINE"), ("kvm2", "OFFLINE")]
    assert [n.name for n in just_kvm2.nodes] == ["kvm2"]
    asked = [(r.path, r.query) for r in emulator.requests if r.path == "/v1/nodes"]
    assert asked == [("/v1/nodes", {}), ("/v1/nodes", {"nodes": ["kvm2"]})]
    assert all(r.header("Authorization") is None for r in emulator.requests)


def test_python_linstor_sends_a_token_over_http_only_when_told_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with LinstorEmulator(nodes=["kvm1"], token=TOKEN) as emu:
        careful = linstor.Linstor(emu.url, timeout=5, auth_token=TOKEN)
        with pytest.raises(linstor.LinstorApiCallError, match="Unauthorized"):
            careful.connect()
        assert "not sending auth token over insecure connection" in capsys.readouterr().err
        emu.clear_requests()

        told = linstor.Linstor(emu.url, timeout=5, auth_token=TOKEN)
        told.allow_insecure = True
        with told:
            nodes = told.node_list_raise().nodes
        assert [(n.name, n.connection_status) for n in nodes] == [("kvm1", "ONLINE")]
        # The plain-HTTP redirect probe never carries the token; the real calls do.
        by_token = {(r.path, r.header("Authorization")) for r in emu.requests}
        assert by_token == {("/v1/controller/version", None),
                            ("/v1/controller/version", f"Bearer {TOKEN}"),
                            ("/v1/nodes", f"Bearer {TOKEN}")}


# The client builds its context with the deprecated ssl.PROTOCOL_TLS; not ours to fix.
@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
def test_python_linstor_over_mutual_tls_with_token(pki: dict[str, Path]) -> None:
    with LinstorEmulator(nodes=["kvm1"], token=TOKEN, server_cert=pki["server_cert"],
                         server_key=pki["server_key"], client_ca=pki["ca"]) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        client = linstor.Linstor(emu.url, timeout=5, auth_token=TOKEN)
        client.cafile = str(pki["ca"])  # also switches on hostname checking
        client.certfile, client.keyfile = str(pki["client_cert"]), str(pki["client_key"])
        with client:
            assert client.is_secure_connection
            nodes = client.node_list_raise().nodes
        assert [(n.name, n.connection_status) for n in nodes] == [("kvm1", "ONLINE")]
        assert [r.header("Authorization") for r in emu.requests] == [f"Bearer {TOKEN}"] * 2


def test_python_linstor_rejects_garbage_and_a_stopped_controller(
    emulator: LinstorEmulator,
) -> None:
    emulator.set_garbage(True)
    with pytest.raises(linstor.LinstorError, match="Unable to parse REST json data"):
        linstor.Linstor(emulator.url, timeout=5).connect()
    emulator.stop()
    with pytest.raises(linstor.LinstorNetworkError, match="Connection refused"):
        linstor.Linstor(emulator.url, timeout=5).connect()


# -- 3. failure modes, at the socket level ------------------------------------------


def test_stop_refuses_for_real_and_start_reuses_the_port(emulator: LinstorEmulator) -> None:
    port = emulator.port
    emulator.stop()
    assert not emulator.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    emulator.start()
    assert emulator.port == port
    assert fetch(emulator.url, "/health").status_and_body == (200, b"")


def test_hang_mode_holds_new_and_open_connections_then_serves_them(
    emulator: LinstorEmulator,
) -> None:
    open_connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=0.5)
    open_connection.request("GET", "/v1/controller/version")
    assert open_connection.getresponse().read()
    emulator.set_hang(True)

    fresh = socket.create_connection(("127.0.0.1", emulator.port), timeout=0.5)
    fresh.sendall(b"GET /v1/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    with pytest.raises(socket.timeout):
        fresh.recv(1)
    open_connection.request("GET", "/v1/nodes")
    with pytest.raises(socket.timeout):
        open_connection.getresponse()
    assert emulator.held_connections == 2

    emulator.set_hang(False)
    fresh.settimeout(2)
    assert fresh.recv(12) == b"HTTP/1.1 200"
    assert eventually(lambda: emulator.held_connections == 0)
    fresh.close()
    open_connection.close()


def test_stop_is_prompt_with_held_idle_and_half_open_connections(pki: dict[str, Path]) -> None:
    emu = LinstorEmulator(nodes=["kvm1"], server_cert=pki["server_cert"],
                          server_key=pki["server_key"])
    emu.start()
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    idle = http.client.HTTPSConnection("127.0.0.1", emu.port, timeout=3, context=context)
    idle.request("GET", "/health")
    idle.getresponse().read()
    no_hello = socket.create_connection(("127.0.0.1", emu.port), timeout=3)
    emu.set_hang(True)
    held = socket.create_connection(("127.0.0.1", emu.port), timeout=3)
    try:
        # Hang mode sends nothing at all, not even the server's half of a TLS handshake.
        stage, error = tls_attempt(emu.port, context, "localhost", timeout=0.3)
        assert stage == "handshake" and isinstance(error, socket.timeout)
        assert eventually(lambda: emu.held_connections >= 2)
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 1.0
        for sock in (held, no_hello):
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
    finally:
        for sock in (held, no_hello):
            sock.close()
        idle.close()
        emu.stop()


def test_unhealthy_health_says_why_and_needs_no_token() -> None:
    with LinstorEmulator(token=TOKEN) as emu:
        assert fetch(emu.url, "/health").status_and_body == (200, b"")
        emu.set_unhealthy("Database connection lost")
        sick = fetch(emu.url, "/health")
        assert sick.status_and_body == (500, b"Database connection lost")
        assert sick.headers["content-type"].startswith("text/plain")
        emu.set_healthy()
        assert fetch(emu.url, "/health").status_and_body == (200, b"")


def test_garbage_mode_answers_200_with_something_that_is_not_json(
    emulator: LinstorEmulator,
) -> None:
    emulator.set_garbage(True)
    reply = fetch(emulator.url, "/v1/nodes")
    assert reply.status_and_body == (200, GARBAGE_BODY)
    with pytest.raises(ValueError):
        reply.json()
    assert fetch(emulator.url, "/health").status_and_body == (200, b"")
    emulator.set_garbage(False)
    assert fetch(emulator.url, "/v1/nodes").json()[0]["name"] == "kvm1"


def test_token_is_required_on_v1_only() -> None:
    with LinstorEmulator(nodes=["kvm1"], token=TOKEN) as emu:
        missing = fetch(emu.url, "/v1/nodes")
        wrong = fetch(emu.url, "/v1/nodes", {"Authorization": "Bearer nope"})
        scheme_case = fetch(emu.url, "/v1/nodes", {"Authorization": f"bearer {TOKEN}"})
        basic = fetch(emu.url, "/v1/nodes", {"Authorization": f"Basic {TOKEN}"})
    for reply in (missing, wrong, basic):
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == 'Bearer realm="linstor-controller"'
        assert reply.json()[0]["message"] == "Unauthorized: token invalid or not provided"
    assert scheme_case.status == 200
    assert [r.header("Authorization") for r in emu.requests] == [
        None, "Bearer nope", f"bearer {TOKEN}", f"Basic {TOKEN}"]


def test_tls_with_client_ca_rejects_a_client_without_certificate(pki: dict[str, Path]) -> None:
    with LinstorEmulator(nodes=["kvm1"], server_cert=pki["server_cert"],
                         server_key=pki["server_key"], client_ca=pki["ca"]) as emu:
        tls12 = ssl.create_default_context(cafile=str(pki["ca"]))
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        stage, error = tls_attempt(emu.port, tls12, "127.0.0.1")
        assert stage == "handshake"
        assert isinstance(error, ssl.SSLError) and "alert" in str(error).lower()

        # TLS 1.3 finishes the client's side of the handshake before the server checks the
        # client certificate, so the rejection arrives as an alert on the first read.
        tls13 = ssl.create_default_context(cafile=str(pki["ca"]))
        tls13.minimum_version = ssl.TLSVersion.TLSv1_3
        stage, error = tls_attempt(emu.port, tls13, "localhost")
        assert isinstance(error, ssl.SSLError) and "certificate required" in str(error).lower()

        with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with_cert.load_cert_chain(pki["client_cert"], pki["client_key"])
        assert fetch(emu.url, "/health", context=with_cert).status == 200
        assert [r.path for r in emu.requests] == ["/health"]
        assert eventually(lambda: len(emu.connection_errors) == 2)


# -- cluster state controls ---------------------------------------------------------


def test_node_and_resource_controls_show_in_answers(emulator: LinstorEmulator) -> None:
    emulator.add_node("kvm2")
    device = emulator.add_resource("cs-vol", "kvm1", in_use=True)
    emulator.add_resource("cs-vol", "KVM2")
    assert device == "/dev/drbd1000"
    with pytest.raises(ValueError):
        emulator.add_node("KVM1")

    on_kvm1 = fetch(emulator.url, "/v1/view/resources?nodes=kvm1").json()
    assert [(r["name"], r["node_name"], r["state"]) for r in on_kvm1] == [
        ("cs-vol", "kvm1", {"in_use": True})]
    assert on_kvm1[0]["volumes"][0]["device_path"] == device

    emulator.set_node_status("kvm2", "OFFLINE")
    on_kvm2 = fetch(emulator.url, "/v1/view/resources?nodes=kvm2").json()
    assert on_kvm2[0]["state"] == {}  # an offline satellite reports nothing
    assert fetch(emulator.url, "/v1/nodes/KVM2").json()["connection_status"] == "OFFLINE"

    emulator.remove_resource("cs-vol", "kvm1")
    assert fetch(emulator.url, "/v1/view/resources?nodes=kvm1").json() == []
    emulator.remove_node("kvm2")
    assert fetch(emulator.url, "/v1/nodes/kvm2").status == 404
    assert fetch(emulator.url, "/v1/view/resources").json() == []
    assert [d["name"] for d in fetch(emulator.url, "/v1/resource-definitions").json()] == [
        "cs-vol"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_command_line_serves_until_signalled(signum: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.emulators.linstor", "--port", "0",
         "--node", "kvm1", "--node", "kvm2=OFFLINE"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "the emulator printed no URL within 10 s"
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        nodes = fetch(url, "/v1/nodes").json()
        assert [(n["name"], n["connection_status"]) for n in nodes] == [
            ("kvm1", "ONLINE"), ("kvm2", "OFFLINE")]
        process.send_signal(signum)
        assert process.wait(timeout=5) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=1).close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
