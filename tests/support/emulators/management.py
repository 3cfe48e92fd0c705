"""Test-only emulator of the Apache CloudStack management server API.

Why it exists: the guard asks the management server which primary storage pools are in its
host's scope, and no management server can run where the tests run. This emulator answers the
few commands the guard uses the way CloudStack's ApiServlet and ApiServer answer them, so the
guard's client (guard/sources/cloudstack_api.py) meets the real signature check, the real
answer shapes (the bare ``{}`` of an empty list above all) and the real error answers. Its
own tests hold it to Debian's python3-cs 2.7.1 as well, a signer written independently.

Behaviour taken from apache/cloudstack:

- signature (ApiServer.verifyRequest): every parameter except ``signature``, names sorted
  case-sensitively, ``name=URLEncoder.encode(value)`` with ``+`` turned into ``%20``, joined
  with ``&``, the whole string lowercased, HMAC-SHA1 with the secret, base64. ``response`` is
  signed too. With ``signatureVersion=3`` an ``expires`` is required, parsed like
  DateUtil.parseTZDateString, and refused once it lies in the past; without
  ``signatureVersion=3``, ``expires`` is not checked at all.
- every refusal (no command, a command the server does not know, no signature or apiKey,
  missing/unparseable/past ``expires``, unknown key, wrong signature) is the same HTTP 401
  ``{"<command>response": {"uuidList": [], "errorcode": 401, "errortext": "unable to verify
  user credentials and/or request signature"}}`` without ``cserrorcode``; its name is
  ``errorresponse`` for an unknown command and ``null`` when ``command`` is missing.
- list answers (ApiResponseSerializer): ``{"count": N, "<item>": [...]}``; ``count`` is the
  total across pages; nothing matched gives ``{}``; a page past the end gives ``{"count": N}``.
- parameter errors (ParamProcessWorker, BaseListCmd) are HTTP 431 answers with ``cserrorcode``.
  A uuid that names nothing, including the uuid of a removed pool (CloudStack nulls the uuid
  of a deleted pool), is such an error and not an empty list.
- filters as in QueryManagerImpl: listHosts ``name`` is a substring LIKE, ``type`` a suffix
  LIKE, an unknown ``hypervisor`` is ignored; listStoragePools ``clusterid`` does not match
  zone-wide pools (their cluster is NULL); comparisons ignore case (MySQL collation).
- JSON only with ``response=json``; otherwise XML, as CloudStack defaults to.

Commands: listHosts, listStoragePools, listCapabilities. Any other command is unknown to the
emulator and gets the 401 above, which is what CloudStack answers an API-key client for a
command it does not have.

Control over HTTP, on the same server, for a demo that changes the emulator from another
process. No signature, JSON bodies:

    GET    /control/state                        zones, pods, clusters, hosts, pools, mode
    GET    /control/requests                     the recorded API requests
    POST   /control/zones       add_zone() keyword arguments              -> 201 zone
    POST   /control/clusters    add_cluster() keyword arguments           -> 201 cluster
    POST   /control/hosts       add_host() keyword arguments              -> 201 host
    PUT    /control/hosts/<id>/state   {"state": ..., "resourcestate": ...}  -> 200 host
    POST   /control/pools       add_pool() keyword arguments              -> 201 pool
    PUT    /control/pools/<id>/state   {"state": ...}                     -> 200 pool
    DELETE /control/pools/<id>                                            -> 204
    PUT    /control/mode        {"mode": "normal" | "hang" | "slow" | "trickle" | "error" |
                                 "garbage" | "close-mid-answer", ...}
                                 slow takes delay, trickle interval/pieces, error
                                 status/errortext/cserrorcode, garbage body/content_type/status,
                                 close-mid-answer sent                      -> 200
    errors: 400 {"error": ...} for bad JSON or arguments, 404 for unknown paths or ids

Run for a demo (prints the endpoint, then ``agent-port M`` when an agent port is asked for,
and serves until SIGTERM or SIGINT)::

    python -m tests.support.emulators.management --port N --agent-port M --key K --secret S
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import selectors
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "AUTH_ERROR_TEXT",
    "HOST_STATES",
    "POOL_STATES",
    "POOL_TYPES",
    "ManagementEmulator",
    "RecordedRequest",
    "compute_signature",
    "java_url_encode",
    "main",
    "parse_expires",
]

LOOPBACK = "127.0.0.1"
API_PATH = "/client/api"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
XML_CONTENT_TYPE = "text/xml; charset=UTF-8"
DEFAULT_VERSION = "4.19.1.0"
DEFAULT_PAGE_SIZE = 500
AUTH_ERROR_TEXT = "unable to verify user credentials and/or request signature"
INTERNAL_ERROR_TEXT = "Internal error executing command, please contact your system administrator"

CS_ERR_SERVER_API = 9999
CS_ERR_INVALID_PARAMETER = 4350

HOST_STATES = (
    "Creating", "Connecting", "Up", "Down", "Disconnected", "Alert", "Removed", "Error",
    "Rebalancing", "Unknown",
)
RESOURCE_STATES = (
    "Creating", "Enabled", "Disabled", "ErrorInPrepareForMaintenance", "PrepareForMaintenance",
    "ErrorInMaintenance", "Maintenance", "Error", "Degraded",
)
POOL_STATES = (
    "Initial", "Initialized", "Creating", "Attaching", "Up", "PrepareForMaintenance",
    "ErrorInMaintenance", "CancelMaintenance", "Maintenance", "Disabled", "Removed",
)
POOL_TYPES = (
    "Filesystem", "NetworkFilesystem", "IscsiLUN", "Iscsi", "ISO", "LVM", "CLVM", "RBD",
    "SharedMountPoint", "VMFS", "PreSetup", "EXT", "OCFS2", "SMB", "Gluster", "PowerFlex",
    "ManagedNFS", "Linstor", "DatastoreCluster", "StorPool", "FiberChannel",
)
SCOPES = ("HOST", "CLUSTER", "ZONE", "REGION", "GLOBAL")
_HYPERVISORS = {
    name.lower(): name
    for name in (
        "XenServer", "KVM", "VMware", "Hyperv", "VirtualBox", "BareMetal", "Simulator", "Ovm",
        "LXC", "Any", "Ovm3", "Custom",
    )
}
_HYPERVISORS["parallels"] = "Parralels"

_JAVA_UNRESERVED = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_"
)
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_JAVA_INT_RE = re.compile(r"[+-]?[0-9]+")
_EXPIRES_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|Z?[+-]\d{2}(?::?\d{2})?)"
)
_MAX_BODY = 1 << 20
_HOLDING_MODES = frozenset({"hang", "slow", "trickle"})
"""Modes that keep a request waiting: leaving them, or stop(), releases what they hold."""


def java_url_encode(value: str) -> str:
    """Encode like java.net.URLEncoder then ``+`` -> ``%20``, as CloudStack does before signing.

    Python's quote() leaves ``~`` alone where Java writes ``%7E``; the difference decides
    whether a signature matches, so the encoding is spelled out byte by byte.
    """
    out = []
    for byte in value.encode("utf-8"):
        if byte in _JAVA_UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("%20")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def compute_signature(params: Mapping[str, str], secret: str) -> str:
    """The signature CloudStack expects for ``params``, so tests can hand-craft requests."""
    names = sorted((n for n in params if n.lower() != "signature"), key=_java_string_order)
    unsigned = "&".join(f"{name}={java_url_encode(params[name])}" for name in names).lower()
    digest = hmac.new(secret.encode("utf-8"), unsigned.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_expires(value: str) -> dt.datetime:
    """Parse ``expires`` in the forms DateUtil.parseTZDateString accepts; ValueError otherwise.

    Accepted: ISO offset date-times (``Z``, ``+01:00``), cs's ``+0000`` form, up to nine
    fraction digits and the legacy ``...ssZ+0000`` form.
    """
    match = _EXPIRES_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"Unparseable date: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    offset = 0
    if zone != "Z":
        zone = zone.lstrip("Z")
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 60 + int(digits[2:4] or 0)
        if zone[0] == "-":
            offset = -offset
    return dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros,
        tzinfo=dt.timezone(dt.timedelta(minutes=offset)),
    )


def _java_string_order(name: str) -> bytes:
    # Java sorts strings by UTF-16 code units; big-endian UTF-16 bytes compare the same way.
    return name.encode("utf-16-be", "surrogatepass")


def _now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")


def _like(pattern: str, value: Any) -> bool:
    """SQL LIKE under MySQL's default case-insensitive collation."""
    if value is None:
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, str(value), re.IGNORECASE | re.DOTALL) is not None


def _eq(wanted: str, value: Any) -> bool:
    return value is not None and str(value).lower() == wanted.lower()


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One API request as the emulator saw it, so tests can assert what a client really sent.

    ``status`` is None for a request held in hang mode or closed unanswered in slow mode;
    ``refused`` says why a request got 401.
    """

    method: str
    command: Optional[str]
    params: dict[str, str]
    status: Optional[int]
    refused: Optional[str] = None


class _ApiError(Exception):
    def __init__(self, status: int, text: str, cserrorcode: Optional[int] = CS_ERR_SERVER_API):
        super().__init__(text)
        self.status = status
        self.text = text
        self.cserrorcode = cserrorcode


@dataclasses.dataclass
class _Row:
    iid: int
    data: dict[str, Any]
    removed: bool = False


_Answer = tuple[int, bytes, str, list[tuple[str, str]], Optional[str]]


class ManagementEmulator:
    """A CloudStack management server API on 127.0.0.1, with a control API for tests.

    ``start()``/``stop()`` run and close the HTTP API only (a closed port gives a real
    "connection refused"); the optional agent port has ``start_agent_port()`` and
    ``stop_agent_port()``. As a context manager both start, and ``close()`` stops both.
    A default zone, pod and cluster exist from the start (``zone_id``, ``pod_id``,
    ``cluster_id``), so a test can add hosts and pools straight away.
    """

    def __init__(
        self,
        credentials: Mapping[str, str] | Iterable[tuple[str, str]] = (
            ("test-key", "test-secret"),
        ),
        *,
        port: int = 0,
        agent_port: Optional[int] = None,
        version: str = DEFAULT_VERSION,
        default_page_size: int = DEFAULT_PAGE_SIZE,
        log: Optional[Callable[[str], None]] = None,
    ) -> None:
        pairs = credentials.items() if isinstance(credentials, Mapping) else credentials
        self._credentials = dict(pairs)
        if not self._credentials:
            raise ValueError("at least one (api key, secret) pair is needed")
        self._lock = threading.RLock()
        self._life = threading.Lock()
        self._port = port
        self._agent = _AgentListener(agent_port) if agent_port is not None else None
        self._version = version
        self._default_page_size = default_page_size
        self._log = log
        self._iids = itertools.count(1)
        self._zones: dict[str, _Row] = {}
        self._pods: dict[str, _Row] = {}
        self._clusters: dict[str, _Row] = {}
        self._hosts: dict[str, _Row] = {}
        self._pools: dict[str, _Row] = {}
        self._requests: list[RecordedRequest] = []
        self._mode = "normal"
        self._mode_options: dict[str, Any] = {}
        self._hold_release = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.management_server_id = str(uuid.uuid4())
        self._commands: dict[str, Callable[[dict[str, str]], tuple[str, dict[str, Any]]]] = {
            "listHosts": self._list_hosts,
            "listStoragePools": self._list_storage_pools,
            "listCapabilities": self._list_capabilities,
        }
        zone = self.add_zone("zone1")
        self.zone_id: str = zone["id"]
        self.pod_id: str = self._pod_of_zone(self.zone_id).data["id"]
        self.cluster_id: str = self.add_cluster("cluster1")["id"]

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> ManagementEmulator:
        self.start()
        if self._agent is not None:
            self.start_agent_port()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Listen on 127.0.0.1 (again on the same port after stop())."""
        with self._life:
            if self._server is not None:
                return
            with self._lock:
                self._hold_release = threading.Event()
            server = _Server(self._port, self)
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="cs-emulator-http",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listening socket and every open connection, hung ones included."""
        with self._life:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            self._server = self._thread = None
            with self._lock:
                self._hold_release.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout)
            server.close_connections(timeout)

    def close(self) -> None:
        """Stop the API and the agent port."""
        self.stop()
        self.stop_agent_port()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the emulator has not been started yet")
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{API_PATH}"

    @property
    def control_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/control"

    # ---------------------------------------------------------------- agent port

    def start_agent_port(self) -> int:
        """Listen on the agent port (an ephemeral one if none was configured); returns it."""
        with self._life:
            if self._agent is None:
                self._agent = _AgentListener(0)
            self._agent.start()
            return self._agent.port

    def stop_agent_port(self) -> None:
        """Close the agent listener and drop every held connection, as a stopped server does."""
        with self._life:
            if self._agent is not None:
                self._agent.stop()

    @property
    def agent_port(self) -> Optional[int]:
        return None if self._agent is None or self._agent.port == 0 else self._agent.port

    @property
    def agent_connection_count(self) -> int:
        return 0 if self._agent is None else self._agent.connection_count

    # --------------------------------------------------------------------- modes

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    def normal(self) -> None:
        """Answer normally again; requests held in hang, slow or trickle mode are closed
        unanswered (or, in trickle mode, mid-answer)."""
        self._set_mode("normal", {})

    def hang(self) -> None:
        """Accept and read requests but never answer them, like a stuck server."""
        self._set_mode("hang", {})

    def slow(self, delay: float = 30.0) -> None:
        """Answer every API request normally, but only ``delay`` seconds after it came in and
        with nothing on the wire before: a server busy on a locked database row, or a proxy
        waiting for its upstream. Unlike hang, the answer does come, so a client that waits
        without a timeout of its own is caught waiting. A mode change or stop() during the
        delay closes the connection unanswered."""
        if delay < 0:
            raise ValueError("delay must not be negative")
        self._set_mode("slow", {"delay": float(delay)})

    def trickle(self, interval: float = 0.5, pieces: int = 40) -> None:
        """Send the status line and headers at once, then the body of the normal answer in
        ``pieces`` parts ``interval`` seconds apart: every read a client makes gets bytes well
        within a per-read timeout, so only a deadline on the whole answer stops it (the
        slow-loris shape of a congested link or an overloaded proxy)."""
        if interval <= 0 or pieces < 1:
            raise ValueError("interval must be positive and pieces at least 1")
        self._set_mode("trickle", {"interval": float(interval), "pieces": int(pieces)})

    def close_mid_answer(self, sent: Optional[int] = None) -> None:
        """Send the normal answer's status line and headers, its Content-Length promising the
        whole body, then only ``sent`` bytes of the body (half of it by default, always fewer
        than all), then close the connection: what a client sees when the server is killed
        while writing, or a proxy's upstream connection breaks mid-answer."""
        if sent is not None and sent < 0:
            raise ValueError("sent must not be negative")
        self._set_mode("close-mid-answer", {"sent": sent})

    def fail(
        self,
        status: int = 530,
        errortext: str = INTERNAL_ERROR_TEXT,
        cserrorcode: Optional[int] = CS_ERR_SERVER_API,
    ) -> None:
        """Answer every API request with CloudStack's error JSON and this HTTP status."""
        self._set_mode(
            "error", {"status": status, "errortext": errortext, "cserrorcode": cserrorcode}
        )

    def garbage(
        self,
        body: bytes | str = b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        content_type: str = "text/html",
        status: int = 200,
    ) -> None:
        """Answer every API request with a body that is not CloudStack JSON: by default HTTP
        200 (a captive portal, a proxy's login page), with another ``status`` the error page
        of a proxy or of the servlet container in front of the API."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self._set_mode("garbage", {"body": data, "content_type": content_type, "status": status})

    def _set_mode(self, mode: str, options: dict[str, Any]) -> None:
        with self._lock:
            if self._mode in _HOLDING_MODES and (mode, options) != (self._mode, self._mode_options):
                self._hold_release.set()
            if mode in _HOLDING_MODES and self._hold_release.is_set():
                self._hold_release = threading.Event()
            self._mode = mode
            self._mode_options = options

    # ------------------------------------------------------------- control API

    def add_zone(self, name: str, *, zone_id: Optional[str] = None) -> dict[str, Any]:
        """Add a zone with one pod (CloudStack always puts clusters into a pod)."""
        with self._lock:
            zone = {"id": zone_id or str(uuid.uuid4()), "name": name}
            self._zones[zone["id"]] = _Row(next(self._iids), zone)
            pod = {
                "id": str(uuid.uuid4()),
                "name": "pod1",
                "zoneid": zone["id"],
                "zonename": name,
            }
            self._pods[pod["id"]] = _Row(next(self._iids), pod)
            return copy.deepcopy(zone)

    def add_cluster(
        self,
        name: str,
        *,
        zone_id: Optional[str] = None,
        cluster_id: Optional[str] = None,
        hypervisor: str = "KVM",
    ) -> dict[str, Any]:
        with self._lock:
            zone = self._zone_row(zone_id or self.zone_id)
            pod = self._pod_of_zone(zone.data["id"])
            cluster = {
                "id": cluster_id or str(uuid.uuid4()),
                "name": name,
                "podid": pod.data["id"],
                "podname": pod.data["name"],
                "zoneid": zone.data["id"],
                "zonename": zone.data["name"],
                "hypervisortype": hypervisor,
                "clustertype": "CloudManaged",
                "allocationstate": "Enabled",
                "managedstate": "Managed",
            }
            self._clusters[cluster["id"]] = _Row(next(self._iids), cluster)
            return copy.deepcopy(cluster)

    def add_host(
        self,
        name: str,
        *,
        cluster_id: Optional[str] = None,
        host_id: Optional[str] = None,
        state: str = "Up",
        resourcestate: str = "Enabled",
        ipaddress: str = LOOPBACK,
        host_type: str = "Routing",
        hypervisor: str = "KVM",
        version: Optional[str] = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add a host; returns it as listHosts shows it. ``extra`` adds or overrides fields."""
        _check_choice("state", state, HOST_STATES)
        _check_choice("resourcestate", resourcestate, RESOURCE_STATES)
        with self._lock:
            cluster = self._cluster_row(cluster_id or self.cluster_id).data
            host = {
                "id": host_id or str(uuid.uuid4()),
                "name": name,
                "state": state,
                "type": host_type,
                "ipaddress": ipaddress,
                "zoneid": cluster["zoneid"],
                "zonename": cluster["zonename"],
                "podid": cluster["podid"],
                "podname": cluster["podname"],
                "version": version or self._version,
                "hypervisor": hypervisor,
                "cpusockets": 1,
                "cpunumber": 4,
                "cpuspeed": 2400,
                "memorytotal": 8589934592,
                "memoryused": 1073741824,
                "managementserverid": self.management_server_id,
                "clusterid": cluster["id"],
                "clustername": cluster["name"],
                "clustertype": "CloudManaged",
                "islocalstorageactive": False,
                "created": _now_text(),
                "resourcestate": resourcestate,
                "hahost": False,
                "hasannotations": False,
            }
            host.update(extra)
            self._hosts[host["id"]] = _Row(next(self._iids), host)
            return copy.deepcopy(host)

    def set_host_state(
        self, host_id: str, state: str, *, resourcestate: Optional[str] = None
    ) -> dict[str, Any]:
        _check_choice("state", state, HOST_STATES)
        if resourcestate is not None:
            _check_choice("resourcestate", resourcestate, RESOURCE_STATES)
        with self._lock:
            host = self._host_row(host_id).data
            if state != "Up" and host["state"] == "Up":
                host["disconnected"] = _now_text()
            host["state"] = state
            if resourcestate is not None:
                host["resourcestate"] = resourcestate
            return copy.deepcopy(host)

    def add_pool(
        self,
        name: str,
        *,
        pool_type: str = "NetworkFilesystem",
        scope: str = "CLUSTER",
        cluster_id: Optional[str] = None,
        zone_id: Optional[str] = None,
        pool_id: Optional[str] = None,
        ipaddress: str = LOOPBACK,
        path: str = "/export/primary",
        state: str = "Up",
        provider: str = "DefaultPrimary",
        hypervisor: Optional[str] = None,
        disksizetotal: int = 1099511627776,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add a primary storage pool; returns it as listStoragePools shows it.

        CLUSTER and HOST pools sit in a cluster (default: the default cluster); ZONE pools
        have no pod or cluster, as in CloudStack.
        """
        _check_choice("pool_type", pool_type, POOL_TYPES)
        _check_choice("scope", scope, ("CLUSTER", "ZONE", "HOST"))
        _check_choice("state", state, POOL_STATES[:-1])
        with self._lock:
            pool: dict[str, Any] = {"id": pool_id or str(uuid.uuid4())}
            if scope == "ZONE":
                zone = self._zone_row(zone_id or self.zone_id).data
                pool.update(zoneid=zone["id"], zonename=zone["name"])
                hypervisor = hypervisor or "KVM"
            else:
                cluster = self._cluster_row(cluster_id or self.cluster_id).data
                pool.update(
                    zoneid=cluster["zoneid"],
                    zonename=cluster["zonename"],
                    podid=cluster["podid"],
                    podname=cluster["podname"],
                )
                hypervisor = hypervisor or cluster["hypervisortype"]
            pool.update(name=name, ipaddress=ipaddress, path=path, created=_now_text())
            pool["type"] = pool_type
            if scope != "ZONE":
                pool.update(clusterid=cluster["id"], clustername=cluster["name"])
            pool.update(
                disksizetotal=disksizetotal,
                disksizeallocated=0,
                disksizeused=0,
                state=state,
                scope=scope,
                overprovisionfactor="2.0",
                hypervisor=hypervisor,
                provider=provider,
                storagecapabilities={"VOLUME_SNAPSHOT_QUIESCEVM": "false"},
                hasannotations=False,
            )
            pool.update(extra)
            self._pools[pool["id"]] = _Row(next(self._iids), pool)
            return copy.deepcopy(pool)

    def remove_pool(self, pool_id: str) -> None:
        """Soft-remove a pool: never listed again, and its uuid no longer resolves."""
        with self._lock:
            row = self._pool_row(pool_id)
            row.removed = True
            row.data["state"] = "Removed"

    def set_pool_state(self, pool_id: str, state: str) -> dict[str, Any]:
        _check_choice("state", state, POOL_STATES[:-1])
        with self._lock:
            row = self._pool_row(pool_id)
            row.data["state"] = state
            return copy.deepcopy(row.data)

    def snapshot(self) -> dict[str, Any]:
        """Everything the emulator holds, for the control endpoint and for debugging."""
        with self._lock:
            return copy.deepcopy(
                {
                    "zones": [r.data for r in self._zones.values()],
                    "pods": [r.data for r in self._pods.values()],
                    "clusters": [r.data for r in self._clusters.values()],
                    "hosts": [r.data for r in self._hosts.values()],
                    "pools": [r.data for r in self._pools.values() if not r.removed],
                    "removed_pools": [i for i, r in self._pools.items() if r.removed],
                    "mode": self._mode,
                    "agent_port": self.agent_port,
                    "agent_connections": self.agent_connection_count,
                }
            )

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _zone_row(self, zone_id: str) -> _Row:
        return _lookup(self._zones, zone_id, "zone")

    def _cluster_row(self, cluster_id: str) -> _Row:
        return _lookup(self._clusters, cluster_id, "cluster")

    def _host_row(self, host_id: str) -> _Row:
        return _lookup(self._hosts, host_id, "host")

    def _pool_row(self, pool_id: str) -> _Row:
        row = self._pools.get(pool_id)
        if row is None or row.removed:
            raise KeyError(f"no live pool {pool_id}")
        return row

    def _pod_of_zone(self, zone_id: str) -> _Row:
        return next(r for r in self._pods.values() if r.data["zoneid"] == zone_id)

    # ------------------------------------------------------------- API requests

    def _emit(self, message: str) -> None:
        if self._log is not None:
            self._log(message)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _handle_api(self, handler: _Handler, method: str, query: str, form: str) -> None:
        if method not in ("GET", "POST"):
            handler.send(405, b"Method Not Allowed", "text/plain")
            return
        params = _request_params(query, form)
        command = params.get("command")
        seen = {k: v for k, v in params.items() if k.lower() != "signature"}
        with self._lock:
            mode, options, release = self._mode, dict(self._mode_options), self._hold_release
        if mode == "hang" or (mode == "slow" and release.wait(options["delay"])):
            self._record(RecordedRequest(method, command, seen, None))
            release.wait()
            return
        if mode == "garbage":
            status, body, ctype, headers, refused = (
                options["status"], options["body"], options["content_type"], [], None
            )
        elif mode == "error":
            status = options["status"]
            json_wanted = params.get("response", "").lower() == "json"
            name = self._error_name(params, status)
            body, ctype = self._render(
                name,
                _error_body(status, options["errortext"], options["cserrorcode"]),
                json_wanted,
            )
            headers, refused = [("X-Description", options["errortext"])], None
        else:
            status, body, ctype, headers, refused = self._answer(params)
        self._record(RecordedRequest(method, command, seen, status, refused))
        if mode == "close-mid-answer":
            sent = options["sent"]
            handler.send(status, body, ctype, headers,
                         sent=len(body) // 2 if sent is None else min(sent, max(len(body) - 1, 0)))
        elif mode == "trickle":
            handler.send(status, body, ctype, headers,
                         pace=(options["interval"], options["pieces"], release))
        else:
            handler.send(status, body, ctype, headers)

    def _answer(self, params: dict[str, str]) -> _Answer:
        json_wanted = params.get("response", "").lower() == "json"
        refused = self._verify(params)
        if refused is not None:
            self._emit(f"refused: {refused}")
            if not params:
                name = "errorresponse"
            elif "command" not in params:
                name = "null"
            else:
                name = self._error_name(params, 401)
            body, ctype = self._render(name, _error_body(401, AUTH_ERROR_TEXT, None), json_wanted)
            return 401, body, ctype, [], refused
        command = params["command"]
        try:
            with self._lock:
                name, answer = self._commands[command](params)
                body, ctype = self._render(name, answer, json_wanted)
        except _ApiError as err:
            name = self._error_name(params, err.status)
            body, ctype = self._render(
                name, _error_body(err.status, err.text, err.cserrorcode), json_wanted
            )
            return err.status, body, ctype, [("X-Description", err.text)], None
        return 200, body, ctype, [], None

    def _error_name(self, params: Mapping[str, str], status: int) -> str:
        command = params.get("command")
        if status == 432 or command not in self._commands:
            return "errorresponse"
        return f"{command.lower()}response"

    def _verify(self, params: Mapping[str, str]) -> Optional[str]:
        """ApiServer.verifyRequest for an API-key request: the reason to refuse, or None."""
        command = params.get("command")
        if command is None:
            return "missing command"
        if command not in self._commands:
            return f"unknown command {command}"
        signature = api_key = signature_version = expires = None
        for name in sorted(params, key=_java_string_order):
            lowered = name.lower()
            if lowered == "signature":
                signature = params[name]
            elif lowered == "apikey":
                api_key = params[name]
            elif lowered == "signatureversion":
                signature_version = params[name]
            elif lowered == "expires":
                expires = params[name]
        if signature is None or api_key is None:
            return "missing signature or apiKey"
        if signature_version == "3":
            if expires is None:
                return "signatureVersion 3 without expires"
            try:
                expires_at = parse_expires(expires)
            except ValueError:
                return f"unparseable expires {expires!r}"
            if expires_at < dt.datetime.now(dt.timezone.utc):
                return f"expired at {expires}"
        secret = self._credentials.get(api_key)
        if secret is None:
            return "unknown apiKey"
        expected = compute_signature(params, secret)
        if not hmac.compare_digest(signature.encode("utf-8"), expected.encode("utf-8")):
            return "signature mismatch"
        return None

    def _render(self, name: str, body: dict[str, Any], json_wanted: bool) -> tuple[bytes, str]:
        if json_wanted:
            text = json.dumps({name: body}, separators=(",", ":"), ensure_ascii=False)
            return text.encode("utf-8"), JSON_CONTENT_TYPE
        inner = "".join(_xml_element(key, value) for key, value in body.items())
        text = (
            f'<?xml version="1.0" encoding="UTF-8"?><{name} cloud-stack-version='
            f"{quoteattr(self._version)}>{inner}</{name}>"
        )
        return text.encode("utf-8"), XML_CONTENT_TYPE

    # ----------------------------------------------------------------- commands

    def _list_hosts(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        cmd = "listhosts"
        cluster = self._resolve(cmd, params, "clusterid", self._clusters)
        host_id = self._resolve(cmd, params, "id", self._hosts)
        pod = self._resolve(cmd, params, "podid", self._pods)
        zone = self._resolve(cmd, params, "zoneid", self._zones)
        page, page_size = self._paging(cmd, params)
        hypervisor = _HYPERVISORS.get(params.get("hypervisor", "").lower())
        name, state, host_type = params.get("name"), params.get("state"), params.get("type")
        resource_state, keyword = params.get("resourcestate"), params.get("keyword")
        rows = []
        for row in self._hosts.values():
            host = row.data
            if (
                (host_id is not None and host["id"] != host_id)
                or (cluster is not None and host.get("clusterid") != cluster)
                or (pod is not None and host.get("podid") != pod)
                or (zone is not None and host.get("zoneid") != zone)
                or (name is not None and not _like(f"%{name}%", host.get("name")))
                or (host_type is not None and not _like(f"%{host_type}", host.get("type")))
                or (state is not None and not _eq(state, host.get("state")))
                or (resource_state is not None and not _eq(resource_state, host["resourcestate"]))
                or (hypervisor not in (None, "Any") and host.get("hypervisor") != hypervisor)
                or (keyword is not None and not any(
                    _like(f"%{keyword}%", host.get(k)) for k in ("name", "state", "type")
                ))
            ):
                continue
            rows.append(row)
        return f"{cmd}response", _list_body("host", rows, page, page_size)

    def _list_storage_pools(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        cmd = "liststoragepools"
        cluster = self._resolve(cmd, params, "clusterid", self._clusters)
        pod = self._resolve(cmd, params, "podid", self._pods)
        zone = self._resolve(cmd, params, "zoneid", self._zones)
        pool_id = self._resolve(cmd, params, "id", self._pools)
        page, page_size = self._paging(cmd, params)
        scope = params.get("scope")
        if scope is not None and scope.upper() not in SCOPES:
            raise _ApiError(431, f"Invalid scope type: {scope}", CS_ERR_INVALID_PARAMETER)
        status = params.get("status")
        if status is not None and status.lower() not in (s.lower() for s in POOL_STATES):
            raise _ApiError(431, f"Invalid status: {status}", CS_ERR_INVALID_PARAMETER)
        name, path, address = params.get("name"), params.get("path"), params.get("ipaddress")
        keyword = params.get("keyword")
        rows = []
        for row in self._pools.values():
            pool = row.data
            if row.removed or (
                (pool_id is not None and pool["id"] != pool_id)
                or (cluster is not None and pool.get("clusterid") != cluster)
                or (pod is not None and pool.get("podid") != pod)
                or (zone is not None and pool.get("zoneid") != zone)
                or (name is not None and not _eq(name, pool.get("name")))
                or (path is not None and not _eq(path, pool.get("path")))
                or (address is not None and not _eq(address, pool.get("ipaddress")))
                or (scope is not None and not _eq(scope, pool.get("scope")))
                or (status is not None and not _eq(status, pool.get("state")))
                or (keyword is not None and not any(
                    _like(f"%{keyword}%", pool.get(k)) for k in ("name", "type")
                ))
            ):
                continue
            rows.append(row)
        return f"{cmd}response", _list_body("storagepool", rows, page, page_size)

    def _list_capabilities(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        capability = {
            "securitygroupsenabled": False,
            "dynamicrolesenabled": True,
            "cloudstackversion": self._version,
            "userpublictemplateenabled": True,
            "supportELB": "false",
            "projectinviterequired": False,
            "allowusercreateprojects": True,
            "customdiskofferingminsize": 1,
            "customdiskofferingmaxsize": 1024,
            "regionsecondaryenabled": False,
            "kvmsnapshotenabled": False,
            "allowuserviewdestroyedvm": False,
            "allowuserexpungerecovervm": False,
            "allowuserexpungerecovervolume": False,
            "allowuserviewalldomainaccounts": False,
            "kubernetesserviceenabled": False,
            "kubernetesclusterexperimentalfeaturesenabled": False,
            "defaultuipagesize": 20,
        }
        return "listcapabilitiesresponse", {"capability": capability}

    def _resolve(
        self, cmd: str, params: Mapping[str, str], name: str, table: Mapping[str, _Row]
    ) -> Optional[str]:
        """ParamProcessWorker.translateUuidToInternalId for a pre-3.x uuid parameter.

        Returns the uuid to filter on ("" matches nothing) or None without the parameter.
        A uuid that names nothing, a removed pool's included, is a 431 error.
        """
        value = params.get(name)
        if value is None:
            return None
        if value == "-1":
            return ""
        if _UUID_RE.fullmatch(value) is None and _JAVA_INT_RE.fullmatch(value):
            internal = int(value)
            if internal < 1:
                raise _ApiError(431, f"Invalid value provided for API arg: {name}")
            found = [r for r in table.values() if r.iid == internal and not r.removed]
            return found[0].data["id"] if found else ""
        for row in table.values():
            if not row.removed and row.data["id"].lower() == value.lower():
                return row.data["id"]
        raise _ApiError(
            431,
            f"Unable to execute API command {cmd} due to invalid value. Invalid parameter "
            f"{name} value={value} due to incorrect long value format, or entity does not "
            "exist or due to incorrect parameter annotation for the field in api cmd class.",
        )

    def _paging(self, cmd: str, params: Mapping[str, str]) -> tuple[Optional[int], Optional[int]]:
        """BaseListCmd's page/pagesize rules: (start index, page size); None means unlimited."""
        page = _int_param(cmd, params, "page")
        page_size = _int_param(cmd, params, "pagesize")
        raw_size, raw_page = params.get("pagesize"), params.get("page")
        if raw_size is not None and _JAVA_INT_RE.fullmatch(raw_size) is None:
            raise _ApiError(431, f'For input string: "{raw_size}"')
        if raw_page is None and raw_size is not None and int(raw_size) != -1:
            raise _ApiError(431, '"page" parameter is required when "pagesize" is specified')
        if raw_size is None and raw_page is not None:
            raise _ApiError(431, '"pagesize" parameter is required when "page" is specified')
        maximum = self._default_page_size
        if page_size is not None and maximum != -1 and page_size > maximum:
            raise _ApiError(
                431,
                f"Page size can't exceed max allowed page size value: {maximum}",
                CS_ERR_INVALID_PARAMETER,
            )
        if page_size == -1 and page is not None:
            raise _ApiError(
                431,
                "Can't specify page parameter when pagesize is -1 (Unlimited)",
                CS_ERR_INVALID_PARAMETER,
            )
        size = page_size if page_size is not None else maximum
        if size == -1:
            return None, None
        start = size * (page - 1) if page is not None and page > 0 else 0
        return start, size

    # ------------------------------------------------------------- control HTTP

    def _handle_control(self, handler: _Handler, method: str, path: str, body: bytes) -> None:
        try:
            status, payload = self._control(method, path.strip("/").split("/")[1:], body)
        except LookupError as err:
            status, payload = 404, {"error": str(err)}
        except (ValueError, TypeError) as err:
            status, payload = 400, {"error": str(err)}
        data = b"" if payload is None else json.dumps(payload).encode("utf-8")
        handler.send(status, data, "application/json")

    def _control(self, method: str, parts: list[str], body: bytes) -> tuple[int, Any]:
        if method == "GET" and parts == ["state"]:
            return 200, self.snapshot()
        if method == "GET" and parts == ["requests"]:
            return 200, [dataclasses.asdict(r) for r in self.requests]
        args = json.loads(body.decode("utf-8") or "{}")
        if not isinstance(args, dict):
            raise ValueError("the body must be a JSON object")
        adders = {
            "zones": self.add_zone,
            "clusters": self.add_cluster,
            "hosts": self.add_host,
            "pools": self.add_pool,
        }
        if method == "POST" and len(parts) == 1 and parts[0] in adders:
            return 201, adders[parts[0]](**args)
        if method == "PUT" and len(parts) == 3 and parts[2] == "state":
            if parts[0] == "hosts":
                return 200, self.set_host_state(parts[1], **args)
            if parts[0] == "pools":
                return 200, self.set_pool_state(parts[1], **args)
        if method == "DELETE" and len(parts) == 2 and parts[0] == "pools":
            self.remove_pool(parts[1])
            return 204, None
        if method == "PUT" and parts == ["mode"]:
            modes: dict[str, Callable[..., None]] = {
                "normal": self.normal,
                "hang": self.hang,
                "slow": self.slow,
                "trickle": self.trickle,
                "error": self.fail,
                "garbage": self.garbage,
                "close-mid-answer": self.close_mid_answer,
            }
            mode = args.pop("mode", None)
            if mode not in modes:
                raise ValueError(f"mode must be one of {sorted(modes)}")
            modes[mode](**args)
            return 200, {"mode": self.mode}
        raise LookupError(f"no control endpoint {method} /control/{'/'.join(parts)}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port: int, emulator: ManagementEmulator) -> None:
        self.emulator = emulator
        self._track = threading.Lock()
        self._workers: dict[threading.Thread, socket.socket] = {}
        super().__init__((LOOPBACK, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked by hand so stop() can cut hung connections and wait for their threads.
        worker = threading.Thread(
            target=self._work, args=(request, client_address), name="cs-emulator-request",
            daemon=True,
        )
        with self._track:
            self._workers[worker] = request
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._track:
                self._workers.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.emulator._emit(f"connection from {client_address} failed: {sys.exc_info()[1]!r}")

    def close_connections(self, timeout: float) -> None:
        with self._track:
            workers = list(self._workers.items())
        for _, conn in workers:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for worker, _ in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    timeout = 30
    server_version = "cloudstack-guard-management-emulator"

    def log_message(self, fmt: str, *args: Any) -> None:
        self.server.emulator._emit(fmt % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, _MAX_BODY)) if length > 0 else b""
        if split.path == API_PATH:
            ctype = self.headers.get("Content-Type", "")
            form = ""
            if ctype.startswith("application/x-www-form-urlencoded"):
                form = body.decode("utf-8", "replace")
            self.server.emulator._handle_api(self, method, split.query, form)
        elif split.path.startswith("/control/"):
            self.server.emulator._handle_control(self, method, split.path, body)
        else:
            self.send(404, b"Not Found", "text/plain")

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        sent: Optional[int] = None,
        pace: Optional[tuple[float, int, threading.Event]] = None,
    ) -> None:
        """One answer. The headers always promise the whole body; ``sent`` writes only that
        many bytes of it before the connection is closed, ``pace`` (interval, pieces, release)
        spreads it over pieces, giving up when ``release`` is set (a mode change or stop)."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if sent is not None:
                self.wfile.write(body[:sent])
                self.close_connection = True
            elif pace is not None:
                interval, pieces, release = pace
                size = max(1, -(-len(body) // pieces))
                for start in range(0, len(body), size):
                    if start and release.wait(interval):
                        self.close_connection = True
                        return
                    self.wfile.write(body[start : start + size])
            else:
                self.wfile.write(body)
        except OSError as err:
            self.server.emulator._emit(f"client went away: {err!r}")


class _AgentListener:
    """Stands in for the management server's agent port 8250.

    The real agent keeps an ESTABLISHED TCP connection there, which the guard looks for;
    this listener accepts connections, reads and discards what comes in, and holds them open.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, self.port))
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sock, self._stopping), name="cs-emulator-agent", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        sock, thread = self._sock, self._thread
        if sock is None or thread is None:
            return
        self._stopping.set()
        thread.join(2.0)
        sock.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()
        self._sock = self._thread = None

    def _run(self, sock: socket.socket, stopping: threading.Event) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while not stopping.is_set():
                for key, _ in selector.select(0.05):
                    if key.fileobj is sock:
                        self._accept(sock, selector)
                    else:
                        self._drain(key.fileobj, selector)

    def _accept(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
        with self._lock:
            self._conns.add(conn)

    def _drain(self, conn: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            selector.unregister(conn)
            with self._lock:
                self._conns.discard(conn)
            conn.close()


def _check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    allowed = tuple(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _lookup(table: Mapping[str, _Row], key: str, kind: str) -> _Row:
    row = table.get(key)
    if row is None:
        raise KeyError(f"no {kind} {key}")
    return row


def _request_params(query: str, form: str) -> dict[str, str]:
    """The servlet's parameter map: form body first, query string overriding (utf8Fixup)."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(form, keep_blank_values=True):
        params.setdefault(name, value)
    for name, value in parse_qsl(query, keep_blank_values=True):
        params[name] = value
    return params


def _int_param(cmd: str, params: Mapping[str, str], name: str) -> Optional[int]:
    raw = params.get(name)
    if raw is None or not raw.strip():
        return None
    if _JAVA_INT_RE.fullmatch(raw) is None or not -(2**31) <= int(raw) < 2**31:
        raise _ApiError(
            431, f"Unable to execute API command {cmd} due to invalid value {raw} for parameter {name}"
        )
    return int(raw)


def _list_body(
    item: str, rows: list[_Row], start: Optional[int], size: Optional[int]
) -> dict[str, Any]:
    """ApiResponseSerializer's list shape: no count and no list key when nothing matched."""
    count = len(rows)
    if start is not None and size is not None:
        rows = rows[start : start + max(size, 0)]
    body: dict[str, Any] = {}
    if count:
        body["count"] = count
        if rows:
            body[item] = [copy.deepcopy(r.data) for r in rows]
    return body


def _error_body(status: int, text: str, cserrorcode: Optional[int]) -> dict[str, Any]:
    body: dict[str, Any] = {"uuidList": [], "errorcode": status}
    if cserrorcode is not None:
        body["cserrorcode"] = cserrorcode
    body["errortext"] = text
    return body


def _xml_element(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "".join(_xml_element(name, item) for item in value)
    if isinstance(value, dict):
        inner = "".join(_xml_element(k, v) for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return f"<{name}>{escape(text)}</{name}>"


def main(argv: Optional[list[str]] = None) -> int:
    """Serve the emulator for a demo until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.emulators.management",
        description="CloudStack management server API emulator (tests and demos only)",
    )
    parser.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (0: any)")
    parser.add_argument(
        "--agent-port", type=int, default=None, help="also hold agent connections on this port"
    )
    parser.add_argument("--key", default="test-key", help="API key")
    parser.add_argument("--secret", default="test-secret", help="secret key")
    parser.add_argument("--cs-version", default=DEFAULT_VERSION, help="reported version")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None
    emulator = ManagementEmulator(
        {args.key: args.secret}, port=args.port, agent_port=args.agent_port,
        version=args.cs_version, log=log,
    )
    with emulator:
        print(emulator.endpoint, flush=True)
        if emulator.agent_port is not None:
            print(f"agent-port {emulator.agent_port}", flush=True)
        while not stopping.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
