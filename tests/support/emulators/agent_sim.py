"""A cloudstack-agent 4.19 simulator that reproduces the stale LINSTOR pool bug.

apache/cloudstack#10465: the agent keeps every LINSTOR pool it was told about in
LinstorStorageAdaptor's static map until it restarts. On every VM stop, the disk cleanup
asks each storage adaptor in turn to disconnect each disk by path; LINSTOR's adaptor,
visited last, asks the controller of the FIRST pool of its HashMap for this node's resources.
When that pool was deleted without the agent being told and its controller is gone, the
Jersey client's unchecked ProcessingException aborts the stop. Only a restart (empty
caches) clears it. The guard must detect exactly that from the outside, so this process
behaves like the agent where the guard can see it, and nowhere else:

- the process: `com.cloud.agent.AgentShell` on its command line, an ESTABLISHED TCP
  connection to the first management `host` of agent.properties (the connection and its
  log lines come from agent_standin), storage work done by child processes named
  `qemu-img`;
- its log: log4j 1 lines with the real strings of Agent.java, KVMStoragePoolManager.java,
  LibvirtStorageAdaptor.java and LinstorStorageAdaptor.java, including the `Caught:`
  record with a Java stack trace; DEBUG lines only with --debug, as the real default
  level is INFO;
- its behaviour: the pool caches of the ground-truth model (agent_model.py), the adaptor
  loop in upstream order and a real HTTP call to the LINSTOR controller of the pool
  first in LinstorStorageAdaptor's HashMap.

The test drives it through a unix control socket (one JSON object per line, one answer
line per request) in place of the management server's commands:

    {"op": "add-pool", "uuid": U, "type": "Linstor", "url": "http://127.0.0.1:3370"}
    {"op": "delete-pool", "uuid": U}
    {"op": "stop-vm", "name": "i-2-10-VM", "disks": ["/mnt/<nfs uuid>/<volume>.qcow2"]}
    {"op": "storage-work", "seconds": 5}
    {"op": "heartbeat", "uuid": U, "failing": true, "reason": "drbdsetup failed"}
    {"op": "status"}

Its KVM HA monitor heartbeats the pools it holds at the cadence agent.properties sets
(defaults as AgentProperties.java); after the last failed try it writes `SOCKET.rebooted`
in place of rebooting the host.

Run it as `python3 -m tests.support.emulators.agent_sim com.cloud.agent.AgentShell --properties P
--log L --control SOCKET [--version 4.19.1.2] [--hostname NODE] [--debug]` from the
repository root, or by its file path; it needs the standard library and the checkout's
pure modules (guard.javamap, the model), so Debian's /usr/bin/python3 runs it inside a
container.

On SIGTERM it logs `Stopping the agent: Reason = sig.kill` and exits 143 (SIGINT: 130),
as the JVM does (128 + signal number); the packaged cloudstack-agent.service sets no
SuccessExitStatus, so systemd records the stop as `status=143`, the same as for the
real agent.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import itertools
import json
import os
import random
import secrets
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote, urlsplit

if __package__ in (None, ""):
    # Started by file path (a systemd unit's ExecStart): make `tests` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from guard.evidence import version_tuple  # noqa: E402
from guard.javamap import hashmap_order  # noqa: E402
from tests.support.emulators.agent_model import AgentCaches  # noqa: E402
from tests.support.emulators.agent_standin import (  # noqa: E402
    AGENT,
    DEFAULT_VERSION,
    MAIN_CLASS,
    Log4j,
    ManagementLink,
    management_address,
    read_properties,
    stop_group,
    write_startup,
    write_stopping,
)

LIBVIRT_ADAPTOR = "com.cloud.hypervisor.kvm.storage.LibvirtStorageAdaptor"
HA_MONITOR = "com.cloud.hypervisor.kvm.resource.KVMHAMonitor"
LINSTOR_ADAPTOR = "com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor"
MGMT_ID = 32986204979456
"""The management server id in Request/Answer lines (a MAC address as a number)."""
DEFAULT_LINSTOR_TIMEOUT = 2.0
"""Connect and read timeout of the LINSTOR call, seconds. The agent's client has none
worth waiting for in a test; a hung controller only needs to fail the stop."""
LINSTOR_PORT = 3370
LINSTOR_TLS_PORT = 3371
RESOURCE_PREFIX = "cs-"
"""LinstorUtil.RSC_PREFIX: CloudStack's LINSTOR resources are named cs-<volume uuid>."""

_HANDLER_THREADS = 5
_CONTROL_TIMEOUT = 30.0
_REAP_GRACE = 10.0
_SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# KVMStoragePoolManager._storageMapper is a java.util.HashMap of 7 adaptors keyed by pool
# type; its iteration order (String.hashCode spread over 16 buckets, insertion order in a
# bucket) is libvirt, FiberChannel, PowerFlex, Iscsi, StorPool, ManagedNFS, Linstor. So
# LINSTOR's adaptor is asked last, about every path no other adaptor claimed.
ADAPTOR_ORDER = (
    ("libvirt", "LibvirtStorageAdaptor"),
    ("FiberChannel", "FiberChannelAdapter"),
    ("PowerFlex", "ScaleIOStorageAdaptor"),
    ("Iscsi", "IscsiAdmStorageAdaptor"),
    ("StorPool", "StorPoolStorageAdaptor"),
    ("ManagedNFS", "ManagedNfsStorageAdaptor"),
    ("Linstor", "LinstorStorageAdaptor"),
)
# disconnectPhysicalDiskByPath of the adaptors before LINSTOR's: the device paths each one
# claims. LibvirtStorageAdaptor claims only an .iso of an NFS pool defined in libvirt, and
# this simulator defines nothing in libvirt; ScaleIO and ManagedNFS never claim a path.
_PATH_CLAIMS: dict[str, Callable[[str], bool]] = {
    "FiberChannel": lambda path: path.startswith("/dev/mapper/3"),
    "Iscsi": lambda path: path.startswith("/dev/disk/by-path/ip-") and "-iscsi-" in path,
    "StorPool": lambda path: path.startswith(("/dev/storpool/", "/dev/storpool-byid/")),
}
# Pool types served by an adaptor of their own; every other type goes to libvirt and logs
# LibvirtStorageAdaptor's create/remove lines.
OWN_ADAPTOR_TYPES = frozenset(key for key, _ in ADAPTOR_ORDER if key != "libvirt")

# The stack of a Jersey failure inside the stop path of 4.19.1 (Java 11), innermost first.
_STOP_FRAMES = (
    "org.glassfish.jersey.client.internal.HttpUrlConnector.apply(HttpUrlConnector.java:275)",
    "org.glassfish.jersey.client.ClientRuntime.invoke(ClientRuntime.java:300)",
    "org.glassfish.jersey.client.JerseyInvocation.lambda$invoke$0(JerseyInvocation.java:662)",
    "org.glassfish.jersey.client.JerseyInvocation.call(JerseyInvocation.java:697)",
    "org.glassfish.jersey.client.JerseyInvocation.lambda$runInScope$3(JerseyInvocation.java:691)",
    "org.glassfish.jersey.internal.Errors.process(Errors.java:292)",
    "org.glassfish.jersey.internal.Errors.process(Errors.java:274)",
    "org.glassfish.jersey.internal.Errors.process(Errors.java:205)",
    "org.glassfish.jersey.process.internal.RequestScope.runInScope(RequestScope.java:390)",
    "org.glassfish.jersey.client.JerseyInvocation.runInScope(JerseyInvocation.java:691)",
    "org.glassfish.jersey.client.JerseyInvocation.invoke(JerseyInvocation.java:661)",
    "org.glassfish.jersey.client.JerseyInvocation$Builder.method(JerseyInvocation.java:439)",
    "org.glassfish.jersey.client.JerseyInvocation$Builder.get(JerseyInvocation.java:317)",
    "com.linbit.linstor.api.ApiClient.invokeAPI(ApiClient.java:1015)",
    "com.linbit.linstor.api.DevelopersApi.viewResourcesWithHttpInfo(DevelopersApi.java:13580)",
    "com.linbit.linstor.api.DevelopersApi.viewResources(DevelopersApi.java:13503)",
    "com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor.tryDisconnectLinstor(LinstorStorageAdaptor.java:330)",
    "com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath(LinstorStorageAdaptor.java:437)",
    "com.cloud.hypervisor.kvm.storage.KVMStoragePoolManager.disconnectPhysicalDiskByPath(KVMStoragePoolManager.java:213)",
    "com.cloud.hypervisor.kvm.resource.LibvirtComputingResource.cleanupDisk(LibvirtComputingResource.java:3432)",
    "com.cloud.hypervisor.kvm.resource.wrapper.LibvirtStopCommandWrapper.execute(LibvirtStopCommandWrapper.java:112)",
    "com.cloud.hypervisor.kvm.resource.wrapper.LibvirtStopCommandWrapper.execute(LibvirtStopCommandWrapper.java:49)",
    "com.cloud.hypervisor.kvm.resource.wrapper.LibvirtRequestWrapper.execute(LibvirtRequestWrapper.java:78)",
    "com.cloud.hypervisor.kvm.resource.LibvirtComputingResource.executeRequest(LibvirtComputingResource.java:1995)",
    "com.cloud.agent.Agent.processRequest(Agent.java:678)",
    "com.cloud.agent.Agent$AgentRequestHandler.doTask(Agent.java:1108)",
    "com.cloud.utils.nio.Task.call(Task.java:83)",
    "com.cloud.utils.nio.Task.call(Task.java:29)",
    "java.base/java.util.concurrent.FutureTask.run(FutureTask.java:264)",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1128)",
    "java.base/java.util.concurrent.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:628)",
    "java.base/java.lang.Thread.run(Thread.java:829)",
)
# Where HttpURLConnection was when the socket failed; the last frame is HttpUrlConnector's
# call, which its catch block (the first frame above) wrapped into the ProcessingException.
_CONNECT_FRAMES = (
    "java.base/java.net.PlainSocketImpl.socketConnect(Native Method)",
    "java.base/java.net.AbstractPlainSocketImpl.doConnect(AbstractPlainSocketImpl.java:412)",
    "java.base/java.net.AbstractPlainSocketImpl.connectToAddress(AbstractPlainSocketImpl.java:255)",
    "java.base/java.net.AbstractPlainSocketImpl.connect(AbstractPlainSocketImpl.java:237)",
    "java.base/java.net.SocksSocketImpl.connect(SocksSocketImpl.java:392)",
    "java.base/java.net.Socket.connect(Socket.java:609)",
    "java.base/sun.net.NetworkClient.doConnect(NetworkClient.java:177)",
    "java.base/sun.net.www.http.HttpClient.openServer(HttpClient.java:474)",
    "java.base/sun.net.www.http.HttpClient.openServer(HttpClient.java:569)",
    "java.base/sun.net.www.http.HttpClient.<init>(HttpClient.java:242)",
    "java.base/sun.net.www.http.HttpClient.New(HttpClient.java:341)",
    "java.base/sun.net.www.http.HttpClient.New(HttpClient.java:362)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.getNewHttpClient(HttpURLConnection.java:1253)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.plainConnect0(HttpURLConnection.java:1187)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.plainConnect(HttpURLConnection.java:1081)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.connect(HttpURLConnection.java:1015)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.getInputStream0(HttpURLConnection.java:1592)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.getInputStream(HttpURLConnection.java:1520)",
    "java.base/java.net.HttpURLConnection.getResponseCode(HttpURLConnection.java:527)",
    "org.glassfish.jersey.client.internal.HttpUrlConnector._apply(HttpUrlConnector.java:367)",
    "org.glassfish.jersey.client.internal.HttpUrlConnector.apply(HttpUrlConnector.java:273)",
)
_READ_FRAMES = (
    "java.base/java.net.SocketInputStream.socketRead0(Native Method)",
    "java.base/java.net.SocketInputStream.socketRead(SocketInputStream.java:115)",
    "java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)",
    "java.base/java.net.SocketInputStream.read(SocketInputStream.java:140)",
    "java.base/java.io.BufferedInputStream.fill(BufferedInputStream.java:252)",
    "java.base/java.io.BufferedInputStream.read1(BufferedInputStream.java:292)",
    "java.base/java.io.BufferedInputStream.read(BufferedInputStream.java:351)",
    "java.base/sun.net.www.http.HttpClient.parseHTTPHeader(HttpClient.java:754)",
    "java.base/sun.net.www.http.HttpClient.parseHTTP(HttpClient.java:689)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.getInputStream0(HttpURLConnection.java:1615)",
    "java.base/sun.net.www.protocol.http.HttpURLConnection.getInputStream(HttpURLConnection.java:1520)",
    "java.base/java.net.HttpURLConnection.getResponseCode(HttpURLConnection.java:527)",
    "org.glassfish.jersey.client.internal.HttpUrlConnector._apply(HttpUrlConnector.java:367)",
    "org.glassfish.jersey.client.internal.HttpUrlConnector.apply(HttpUrlConnector.java:273)",
)

CONNECTION_REFUSED = "java.net.ConnectException: Connection refused (Connection refused)"
CONNECT_TIMED_OUT = "java.net.SocketTimeoutException: connect timed out"
READ_TIMED_OUT = "java.net.SocketTimeoutException: Read timed out"

_REPO_ROOT = Path(__file__).resolve().parents[3]
_live: list[subprocess.Popen[bytes]] = []


class JerseyFailure(Exception):
    """The unchecked javax.ws.rs.ProcessingException the LINSTOR client throws when the
    controller cannot be reached; nothing between the adaptor and Agent.processRequest
    catches it, so it ends the stop."""

    def __init__(self, cause: str, cause_frames: tuple[str, ...]) -> None:
        super().__init__(f"javax.ws.rs.ProcessingException: {cause}")
        self.cause = cause
        self.cause_frames = cause_frames

    def trace(self) -> list[str]:
        """Throwable.printStackTrace(): the cause's frames shared with the wrapper's are
        folded into `... N more`."""
        return [
            str(self),
            *(f"\tat {frame}" for frame in _STOP_FRAMES),
            f"Caused by: {self.cause}",
            *(f"\tat {frame}" for frame in self.cause_frames),
            f"\t... {len(_STOP_FRAMES) - 1} more",
        ]


def _connect_failure(exc: OSError) -> JerseyFailure:
    if isinstance(exc, socket.timeout):
        return JerseyFailure(CONNECT_TIMED_OUT, _CONNECT_FRAMES)
    if isinstance(exc, ConnectionRefusedError):
        return JerseyFailure(CONNECTION_REFUSED, _CONNECT_FRAMES)
    reason = exc.strerror or str(exc)
    return JerseyFailure(f"java.net.SocketException: {reason} ({reason})", _CONNECT_FRAMES)


def _read_failure(exc: Exception) -> JerseyFailure:
    if isinstance(exc, socket.timeout):
        return JerseyFailure(READ_TIMED_OUT, _READ_FRAMES)
    if isinstance(exc, ConnectionResetError):
        return JerseyFailure("java.net.SocketException: Connection reset", _READ_FRAMES)
    # The server closed the connection without an answer (a controller stopped mid-call).
    return JerseyFailure("java.net.SocketException: Unexpected end of file from server",
                         _READ_FRAMES)


def controller_address(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a LINSTOR pool's host field, read as the agent's client
    reads it: `http://` when no scheme is given, port 3370 (3371 for https) when none."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = parts.scheme.lower()
    default = LINSTOR_TLS_PORT if scheme == "https" else LINSTOR_PORT
    return scheme, parts.hostname or "localhost", parts.port or default


@dataclass(frozen=True)
class Pool:
    """What ModifyStoragePoolCommand gives the agent about a pool."""

    uuid: str
    type: str
    url: str
    path: str
    pool_id: int

    def to_json(self) -> dict[str, str]:
        """StorageFilerTO as the agent's Request lines show it (every value a string)."""
        port = str(controller_address(self.url)[2]) if self.type == "Linstor" else "0"
        return {"id": str(self.pool_id), "uuid": self.uuid, "host": self.url,
                "path": self.path, "port": port, "type": self.type}


@dataclass(frozen=True)
class _Command:
    """One command being processed: the handler thread, the logid and the sequence number
    the agent's log lines carry."""

    thread: str
    logid: str
    seq: str


class SimAgent:
    """The agent's state between restarts, empty at start as in a new JVM: the caches of
    the ground-truth model (agent_model.AgentCaches: _storagePools, each adaptor's map in
    Java HashMap order, the HA monitor), changed by the same rules, and what each
    ModifyStoragePoolCommand said about its pool."""

    def __init__(
        self, log: Log4j, *, management: tuple[str, int], agent_id: str, version: str,
        hostname: str, debug: bool, linstor_timeout: float, work_dir: Path,
    ) -> None:
        self.log = log
        self.agent_id = agent_id
        self.version = version
        self.hostname = hostname
        self.debug = debug
        self.linstor_timeout = linstor_timeout
        self.work_dir = work_dir
        self.link = ManagementLink(log, *management, on_connected=self._startup_answered)
        self.caches = AgentCaches(version_tuple(version))
        self.pools: dict[str, Pool] = {}
        self.children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._pool_ids = itertools.count(1)
        self._sequence = itertools.count(random.getrandbits(62))
        self._handlers = itertools.count()
        self._ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "add-pool": self.add_pool,
            "delete-pool": self.delete_pool,
            "stop-vm": self.stop_vm,
            "storage-work": self.storage_work,
            "status": self.status,
            "heartbeat": self.heartbeat,
        }
        self.failing: dict[str, str] = {}
        """Pools whose heartbeat check fails, with the reason the check prints."""
        self.rebooted: Optional[dict[str, Any]] = None

    def dispatch(self, request: Any) -> dict[str, Any]:
        """Answer one control request; a malformed one gets an error, never a crash."""
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": 'a request is a JSON object with an "op"'}
        op = self._ops.get(request["op"])
        if op is None:
            return {"ok": False, "error": f"unknown op {request['op']!r}; known: {sorted(self._ops)}"}
        try:
            return op(request)
        except KeyError as exc:
            return {"ok": False, "error": f"{request['op']}: missing {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return {"ok": False, "error": f"{request['op']}: {exc}"}

    # -- log helpers -----------------------------------------------------------------

    def _debug(self, category: str, cmd: _Command, message: str) -> None:
        if self.debug:
            self.log.log("DEBUG", category, cmd.thread, message, cmd.logid)

    def _begin(self, command_class: str, body: dict[str, Any]) -> _Command:
        """A command arrives: Agent.processRequest logs its Request at DEBUG."""
        number = next(self._handlers) % _HANDLER_THREADS + 1
        cmd = _Command(f"agentRequest-Handler-{number}", secrets.token_hex(4),
                       f"{self.agent_id}-{next(self._sequence)}")
        payload = json.dumps([{command_class: body}], separators=(",", ":"))
        self._debug(AGENT, cmd, f"Request:Seq {cmd.seq}:  {{ Cmd , MgmtId: {MGMT_ID}, "
                                f"via: {self.agent_id}, Ver: v1, Flags: 100011, {payload} }}")
        self._debug(AGENT, cmd, f"Processing command: {command_class}")
        return cmd

    def _answer(self, cmd: _Command, answer_class: str, body: dict[str, Any]) -> None:
        payload = json.dumps([{answer_class: body}], separators=(",", ":"))
        self._debug(AGENT, cmd, f"Seq {cmd.seq}:  {{ Ans: , MgmtId: {MGMT_ID}, "
                                f"via: {self.agent_id}, Ver: v1, Flags: 10, {payload} }}")

    def _startup_answered(self) -> None:
        """After each (re)connection the server answers the StartupCommand and sends a
        ReadyCommand; Agent.java logs both at INFO."""
        agent, aid = AGENT, self.agent_id
        number = next(self._handlers) % _HANDLER_THREADS + 1
        thread = f"Agent-Handler-{number}"
        self.log.log("INFO", agent, thread, f"Process agent startup answer, agent id = {aid}")
        self.log.log("INFO", agent, thread, f"Set agent id {aid}")
        self.log.log("INFO", agent, thread, f"Startup Response Received: agent id = {aid}")
        thread, logid = f"agentRequest-Handler-{number}", secrets.token_hex(4)
        self.log.log("INFO", agent, thread, f"Processing agent ready command, agent id = {aid}", logid)
        self.log.log("INFO", agent, thread, f"Set agent id {aid}", logid)
        self.log.log("INFO", agent, thread, f"Ready command is processed for agent id = {aid}", logid)

    # -- commands --------------------------------------------------------------------

    def add_pool(self, request: dict[str, Any]) -> dict[str, Any]:
        """ModifyStoragePoolCommand(add=true): KVMStoragePoolManager.createStoragePool."""
        pool = Pool(str(request["uuid"]), str(request["type"]), str(request.get("url", "")),
                    str(request.get("path", "")), next(self._pool_ids))
        cmd = self._begin("com.cloud.agent.api.ModifyStoragePoolCommand", {
            "add": "true", "pool": pool.to_json(), "localPath": f"/mnt//{pool.uuid}",
            "details": {}, "wait": "0", "bypassHostMaintenance": "false",
        })
        if pool.type == "Linstor":
            self._debug(LINSTOR_ADAPTOR, cmd,
                        f"Linstor createStoragePool: name: '{pool.uuid}', host: '{pool.url}', "
                        f"path: {pool.path}, userinfo: null")
        elif pool.type not in OWN_ADAPTOR_TYPES:
            self.log.log("INFO", LIBVIRT_ADAPTOR, cmd.thread,
                         f"Attempting to create storage pool {pool.uuid} ({pool.type}) in libvirt",
                         cmd.logid)
        with self._lock:
            self.pools[pool.uuid] = pool
            self.caches.add(pool.uuid, pool.type)
        self._answer(cmd, "com.cloud.agent.api.ModifyStoragePoolAnswer",
                     {"result": "true", "wait": "0", "bypassHostMaintenance": "false"})
        return {"ok": True, "logid": cmd.logid}

    def delete_pool(self, request: dict[str, Any]) -> dict[str, Any]:
        """DeleteStoragePoolCommand: removed from both maps; LINSTOR logs nothing at INFO."""
        uuid = str(request["uuid"])
        with self._lock:
            cached = self.pools.get(uuid)
        pool = cached or Pool(uuid, str(request.get("type", "")), str(request.get("url", "")),
                              "", 0)
        cmd = self._begin("com.cloud.agent.api.DeleteStoragePoolCommand", {
            "_pool": pool.to_json(), "_localPath": f"/mnt//{uuid}",
            "_removeDatastore": "false", "wait": "0", "bypassHostMaintenance": "false",
        })
        if pool.type and pool.type not in OWN_ADAPTOR_TYPES:
            self.log.log("INFO", LIBVIRT_ADAPTOR, cmd.thread,
                         f"Attempting to remove storage pool {uuid} from libvirt", cmd.logid)
            self.log.log("INFO", LIBVIRT_ADAPTOR, cmd.thread,
                         f"Storage pool {uuid} was successfully removed from libvirt.", cmd.logid)
        with self._lock:
            removed = uuid in self.caches.manager
            self.caches.delete_command(uuid, pool.type)
            self.pools.pop(uuid, None)
        self._answer(cmd, "com.cloud.agent.api.Answer",
                     {"result": "true", "wait": "0", "bypassHostMaintenance": "false"})
        return {"ok": True, "removed": removed, "logid": cmd.logid}

    def stop_vm(self, request: dict[str, Any]) -> dict[str, Any]:
        """StopCommand: the domain is gone; then every disk goes through
        KVMStoragePoolManager.disconnectPhysicalDiskByPath, where only a LibvirtException
        would be caught. A Jersey failure reaches Agent.processRequest: `Caught:`, and
        the answer is a failure."""
        name = str(request["name"])
        disks = [str(path) for path in request.get("disks", [])]
        cmd = self._begin("com.cloud.agent.api.StopCommand", {
            "isProxy": "false", "checkBeforeCleanup": "false", "forceStop": "false",
            "vmName": name, "executeInSequence": "false", "wait": "0",
            "bypassHostMaintenance": "false",
        })
        claimed: list[dict[str, Optional[str]]] = []
        try:
            for path in disks:
                claimed.append({"path": path, "claimed_by": self._disconnect_by_path(cmd, path)})
        except JerseyFailure as failure:
            trace = failure.trace()
            self.log.log("WARN", AGENT, cmd.thread, "Caught: \n" + "\n".join(trace), cmd.logid)
            self._answer(cmd, "com.cloud.agent.api.Answer", {
                "result": "false", "details": "\n".join(trace) + "\n", "wait": "0",
                "bypassHostMaintenance": "false",
            })
            return {"ok": False, "error": str(failure), "logid": cmd.logid}
        self._answer(cmd, "com.cloud.agent.api.StopAnswer",
                     {"result": "true", "wait": "0", "bypassHostMaintenance": "false"})
        return {"ok": True, "disks": claimed, "logid": cmd.logid}

    def _disconnect_by_path(self, cmd: _Command, path: str) -> Optional[str]:
        """The adaptor loop: the first adaptor that returns true ends it."""
        for key, adaptor in ADAPTOR_ORDER:
            if key == "Linstor":
                done = self._linstor_disconnect_by_path(cmd, path)
            else:
                claims = _PATH_CLAIMS.get(key)
                done = claims is not None and claims(path)
            if done:
                return adaptor
        return None

    def _linstor_disconnect_by_path(self, cmd: _Command, path: str) -> bool:
        """LinstorStorageAdaptor.disconnectPhysicalDiskByPath: the first cached pool's
        controller is asked, whoever the path belongs to. An HTTP error answer is an
        ApiException, logged and caught; a connection failure is not caught."""
        with self._lock:
            first = self.caches.first("Linstor")
            pool = self.pools.get(first) if first else None
        if pool is None:
            return False
        self._debug(LINSTOR_ADAPTOR, cmd, f"Linstor: disconnectPhysicalDiskByPath {path}")
        self._debug(LINSTOR_ADAPTOR, cmd, f"Linstor: Using storage pool: {pool.uuid}")
        status, body = self._view_resources(pool)
        if status >= 300:
            self.log.log("ERROR", LINSTOR_ADAPTOR, cmd.thread, _best_message(status, body),
                         cmd.logid)
            return False
        if any(_resource_matches(resource, path) for resource in _json_list(body)):
            return True
        self.log.log("WARN", LINSTOR_ADAPTOR, cmd.thread,
                     f"Linstor: Couldn't find resource for this path: {path}", cmd.logid)
        return False

    def _view_resources(self, pool: Pool) -> tuple[int, bytes]:
        """GET /v1/view/resources?nodes=<this node> on the pool's controller."""
        scheme, host, port = controller_address(pool.url)
        connection_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = connection_class(host, port, timeout=self.linstor_timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise _connect_failure(exc) from exc
            try:
                conn.request("GET", f"/v1/view/resources?nodes={quote(self.hostname)}",
                             headers={"Accept": "application/json",
                                      "User-Agent": "OpenAPI-Generator/1.0.0/java"})
                response = conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise _read_failure(exc) from exc
        finally:
            conn.close()

    def storage_work(self, request: dict[str, Any]) -> dict[str, Any]:
        """A child that looks like the agent's qemu-img work: the guard must not restart
        the agent under it. It is `sleep` run through a symlink named qemu-img, so its
        process name (comm) and argv[0] both say qemu-img."""
        seconds = float(request["seconds"])
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        qemu_img = self.work_dir / "qemu-img"
        if not qemu_img.exists():
            qemu_img.symlink_to(shutil.which("sleep") or "/usr/bin/sleep")
        child = subprocess.Popen(
            [str(qemu_img), f"{seconds:g}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with self._lock:
            self.children.append(child)
        threading.Thread(target=_reap, args=(child, seconds), daemon=True,
                         name=f"reap-{child.pid}").start()
        return {"ok": True, "pid": child.pid}

    def heartbeat(self, request: dict[str, Any]) -> dict[str, Any]:
        """What the pool's heartbeat check finds from now on (drbdsetup, storpool or the
        NFS mount failing): {"uuid": U, "failing": true, "reason": "..."}."""
        uuid = str(request["uuid"])
        with self._lock:
            if request.get("failing", True):
                self.failing[uuid] = str(request.get("reason", "heartbeat check failed"))
            else:
                self.failing.pop(uuid, None)
        return {"ok": True}

    def ha_monitor(self, frequency: float, tries: int, retry_sleep: float, reboot: bool,
                   marker: Path) -> None:
        """KVMHAMonitor.run: a round over every pool the monitor holds, then a sleep of
        kvm.heartbeat.update.frequency. A failing pool is tried kvm.heartbeat.update.max.tries
        times with kvm.heartbeat.update.retry.sleep after each failed try; still failing,
        with reboot.host.and.alert.management.on.heartbeat.timeout, the monitor logs
        `stopping cloudstack-agent.` and runs the heartbeat script's reboot (here: a marker
        file, the host's last act)."""
        thread = "Thread-12"
        while self.rebooted is None:
            with self._lock:
                pools = sorted(self.caches.ha)
            for uuid in pools:
                result = None
                for attempt in range(1, tries + 1):
                    with self._lock:
                        result = self.failing.get(uuid)
                    if result is None:
                        break
                    self.log.log("WARN", HA_MONITOR, thread, f"Write heartbeat for pool [{uuid}] failed: "
                                 f"{result}; try: {attempt} of {tries}.")
                    time.sleep(retry_sleep)
                if result is not None and reboot:
                    self.log.log("WARN", HA_MONITOR, thread, f"Write heartbeat for pool [{uuid}] failed: "
                                 f"{result}; stopping cloudstack-agent.")
                    self.rebooted = {"at": time.time(), "pool": uuid, "pid": os.getpid()}
                    marker.write_text(json.dumps(self.rebooted))
                    return
            time.sleep(frequency)

    def status(self, _request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            pools = [{"uuid": p.uuid, "type": p.type, "url": p.url}
                     for p in self.pools.values() if p.uuid in self.caches.manager]
            entries = self.caches.adaptor.get("Linstor", [])
            linstor = hashmap_order(entries, self.caches.adaptor_most.get("Linstor", 0))
            self.children = [child for child in self.children if child.poll() is None]
            children = [child.pid for child in self.children]
        return {
            "ok": True, "pid": os.getpid(), "connected": self.link.connected,
            "version": self.version, "hostname": self.hostname, "agent_id": self.agent_id,
            "pools": pools, "linstor_pools": linstor, "children": children,
            "ha_pools": sorted(self.caches.ha), "rebooted": self.rebooted,
        }


def _reap(child: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait for a storage-work child so it does not linger as a zombie after its time."""
    try:
        child.wait(timeout=seconds + _REAP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=_REAP_GRACE)


def _json_list(body: bytes) -> list[Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []


def _resource_matches(resource: Any, path: str) -> bool:
    """getResourceByPathOrName: cs-<path> as the resource name, or a volume's device."""
    if not isinstance(resource, dict):
        return False
    if str(resource.get("name", "")).lower() == f"{RESOURCE_PREFIX}{path}".lower():
        return True
    volumes = resource.get("volumes") or []
    return any(isinstance(v, dict) and v.get("device_path") == path for v in volumes)


def _best_message(status: int, body: bytes) -> str:
    """ApiException.getBestMessage(): the controller's own message when it sent one."""
    for entry in _json_list(body):
        if isinstance(entry, dict) and entry.get("message"):
            return str(entry["message"])
    return f"HTTP {status}"


class _ControlHandler(socketserver.StreamRequestHandler):
    server: _ControlServer

    def handle(self) -> None:
        for raw in self.rfile:
            try:
                answer = self.server.agent.dispatch(json.loads(raw))
            except ValueError as exc:
                answer = {"ok": False, "error": f"not JSON: {exc}"}
            self.wfile.write(json.dumps(answer).encode() + b"\n")
            self.wfile.flush()


class _ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: Path, agent: SimAgent) -> None:
        self.agent = agent
        super().__init__(str(path), _ControlHandler)


def _claim_socket_path(path: Path) -> None:
    """Remove a socket left by a killed simulator, but never steal a live one's."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
    else:
        raise SystemExit(f"{path}: another simulator answers there")
    finally:
        probe.close()


def run(args: argparse.Namespace) -> int:
    """Start like the agent, serve the control socket, and stop like the JVM on a signal."""
    received: list[int] = []
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in _SHUTDOWN_SIGNALS:
        signal.signal(signum, lambda number, _frame: received.append(number))

    props = read_properties(Path(args.properties).read_text())
    control = Path(args.control)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    # Left open until the process ends: daemon threads may still be writing to it.
    stream = open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    log = Log4j(stream)
    write_startup(log, args.properties, args.version)

    _claim_socket_path(control)
    work_dir = Path(tempfile.mkdtemp(prefix=".agent-sim-", dir=control.parent))
    agent = SimAgent(
        log, management=management_address(props), agent_id=props.get("id") or "1",
        version=args.version, hostname=args.hostname or socket.gethostname(),
        debug=args.debug, linstor_timeout=args.linstor_timeout, work_dir=work_dir,
    )
    server = _ControlServer(control, agent)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     name="control", daemon=True).start()
    threading.Thread(target=agent.link.run, name="management-link", daemon=True).start()
    # AgentProperties.java: KVM_HEARTBEAT_UPDATE_FREQUENCY 60000 ms, _MAX_TRIES 5,
    # _RETRY_SLEEP 10000 ms, REBOOT_HOST_AND_ALERT_MANAGEMENT_ON_HEARTBEAT_TIMEOUT true.
    threading.Thread(target=agent.ha_monitor, name="ha-monitor", daemon=True, args=(
        int(props.get("kvm.heartbeat.update.frequency", "60000")) / 1000.0,
        int(props.get("kvm.heartbeat.update.max.tries", "5")),
        int(props.get("kvm.heartbeat.update.retry.sleep", "10000")) / 1000.0,
        props.get("reboot.host.and.alert.management.on.heartbeat.timeout", "true").lower() == "true",
        Path(f"{control}.rebooted"),
    )).start()

    while not received:
        select.select([wake_read], [], [], 1.0)
    for signum in _SHUTDOWN_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    write_stopping(log)
    server.shutdown()
    server.server_close()
    with contextlib.suppress(FileNotFoundError):
        control.unlink()
    shutil.rmtree(work_dir, ignore_errors=True)
    agent.link.close()
    return 128 + received[0]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="cloudstack-agent 4.19 simulator for tests")
    parser.add_argument("main_class", choices=[MAIN_CLASS])
    parser.add_argument("--properties", required=True, help="agent.properties to read")
    parser.add_argument("--log", required=True, help="agent.log to append to")
    parser.add_argument("--control", required=True, help="unix socket for test requests")
    parser.add_argument("--version", default=DEFAULT_VERSION)
    parser.add_argument("--hostname", help="LINSTOR node name (default: this host's name)")
    parser.add_argument("--debug", action="store_true", help="also write DEBUG lines")
    parser.add_argument("--linstor-timeout", type=float, default=DEFAULT_LINSTOR_TIMEOUT,
                        help="connect and read timeout of LINSTOR calls, seconds")
    return run(parser.parse_args(argv))


# -- helpers for tests -------------------------------------------------------------


class SimClient:
    """Talks to a simulator's control socket, one connection per call."""

    def __init__(self, control_path: str | os.PathLike[str], timeout: float = _CONTROL_TIMEOUT) -> None:
        self.path = os.fspath(control_path)
        self.timeout = timeout

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(json.dumps({"op": op, **params}).encode() + b"\n")
            with sock.makefile("rb") as answers:
                line = answers.readline()
        if not line:
            raise ConnectionError(f"{self.path}: the simulator closed without answering {op}")
        answer: dict[str, Any] = json.loads(line)
        return answer


def sim_argv(
    properties: str | os.PathLike[str], log: str | os.PathLike[str],
    control: str | os.PathLike[str], *, version: str = DEFAULT_VERSION, debug: bool = False,
    hostname: Optional[str] = None, linstor_timeout: float = DEFAULT_LINSTOR_TIMEOUT,
    python: str = sys.executable, script: Optional[str] = None,
) -> list[str]:
    """The command line, for callers that start it elsewhere (a systemd unit); `script` is
    this file's path where it runs, when that is not its path here (a container)."""
    argv = [
        python, script or os.fspath(Path(__file__).resolve()), MAIN_CLASS,
        "--properties", os.fspath(properties), "--log", os.fspath(log),
        "--control", os.fspath(control), "--version", version,
        "--linstor-timeout", str(linstor_timeout),
    ]
    if hostname is not None:
        argv += ["--hostname", hostname]
    if debug:
        argv.append("--debug")
    return argv


def start_sim(
    properties: str | os.PathLike[str], log: str | os.PathLike[str],
    control: str | os.PathLike[str], *, version: str = DEFAULT_VERSION, debug: bool = False,
    hostname: Optional[str] = None, linstor_timeout: float = DEFAULT_LINSTOR_TIMEOUT,
    python: str = sys.executable, ready_timeout: float = 10.0,
) -> subprocess.Popen[bytes]:
    """Start a simulator in its own process group; return once its control socket answers."""
    argv = sim_argv(properties, log, control, version=version, debug=debug, hostname=hostname,
                    linstor_timeout=linstor_timeout, python=python)
    proc = subprocess.Popen(argv, cwd=_REPO_ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
    _live.append(proc)
    client = SimClient(control, timeout=2.0)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _live.remove(proc)
            raise RuntimeError(f"agent simulator exited with {proc.returncode} at start")
        with contextlib.suppress(OSError):
            if client.call("status").get("pid") == proc.pid:
                return proc
        time.sleep(0.02)
    stop_sim(proc)
    raise RuntimeError(f"agent simulator did not answer on {control} in {ready_timeout}s")


def stop_sim(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM its whole process group, as systemd stops a unit's control group (storage
    work children included); SIGKILL if it hangs. Returns the simulator's exit status."""
    return stop_group(proc, _live, timeout)


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        stop_sim(proc)


if __name__ == "__main__":
    sys.exit(main())
