"""Agent-log text for the parser's tests: where the real samples are, the layouts hosts
write, and lines of routine noise. The samples are excerpts from public CloudStack issues,
kept in ../shared beside the repository, never copied into it."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from guard.model import LogEvent
from guard.sources.agentlog import iter_events
from tests.support import paths
from tests.support.paths import SHARED

SAMPLES = SHARED / "samples" / "agent-logs"
DATA = paths.DATA / "agentlog"
KINDS = {
    "agent-start", "agent-version", "agent-stop", "agent-connected", "pool-add", "pool-remove",
    "pool-delete-command", "linstor-pool", "linstor-foreign-path", "heartbeat-failure",
    "storage-failure",
}
KVM = "com.cloud.hypervisor.kvm"
JERSEY_EXC = ("javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused "
              "(Connection refused)")
NOW_2026 = time.mktime((2026, 11, 21, 12, 0, 0, 0, 0, -1))


def local(stamp: str) -> float:
    """A log4j stamp as the host-local epoch seconds the parser must produce."""
    base = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S"))
    return base + int(stamp[20:23]) / 1000


def samples_dir() -> Path:
    if SAMPLES.is_dir():
        return SAMPLES
    reason = f"real agent-log samples unavailable: {SAMPLES} is missing"
    if os.environ.get("GUARD_REQUIRE_REAL_PARTS") == "1":
        pytest.fail(reason, pytrace=False)
    print(reason)
    pytest.skip(reason)


def sample(name: str) -> list[LogEvent]:
    problems: list[str] = []
    events = list(iter_events([str(samples_dir() / f"{name}.log")], problems, now=NOW_2026))
    assert problems == []
    return events


def fixture(name: str, now: float = NOW_2026) -> list[LogEvent]:
    problems: list[str] = []
    events = list(iter_events([str(DATA / name)], problems, now=now))
    assert problems == []
    return events


def of(events: list[LogEvent], kind: str) -> list[LogEvent]:
    return [e for e in events if e.kind == kind]


def disk_cleanup_failures(events: list[LogEvent]) -> list[LogEvent]:
    return [e for e in events if e.kind == "storage-failure" and e.operation == "disk-cleanup"]



def write(path: Path, text: str, mtime: float | None = None, compress: bool = False) -> None:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def start_line(version: str) -> str:
    return (f"2025-01-01 00:00:00,000 INFO  [cloud.agent.AgentShell] (main:null) (logid:) "
            f"Implementation Version is {version}\n")


def versions(events) -> list[str]:
    return [e.detail for e in events if e.kind == "agent-version"]


HEADERS = {
    "log4j1": ("2024-03-01 10:00:00,123 {lvl:<5} [{cat}] (agentRequest-Handler-2:null) "
               "(logid:0a1b2c3d) {msg}"),
    "log4j-old": "2015-03-01 10:00:00,123 {lvl:<5} [{cat}] (agentRequest-Handler-2:null) {msg}",
    "log4j2": ("2025-03-01 10:00:00,123 {lvl:<5} [{cat}] (AgentRequest-Handler-2:[]) "
               "(logid:0a1b2c3d) {msg}"),
    "journald": "Mar  1 10:00:00 kvm-1 java[1234]: {lvl:<5} [{cat}] (AgentRequest-Handler-2:) "
                "(logid:) {msg}",
    "quoted": "> 2024-03-01 10:00:00,123 {lvl:<5} [{cat}] (agentRequest-Handler-2:null) "
              "(logid:) {msg}",
    "grep": "4711:2024-03-01 10:00:00,123 {lvl:<5} [{cat}] (agentRequest-Handler-2:null) "
            "(logid:) {msg}",
    "bare": "{lvl:<5} [{cat}] (Thread-1:null) (logid:) {msg}",
}
POOL_TYPES = ["NetworkFilesystem", "RBD", "Filesystem", "SharedMountPoint", "CLVM", "Gluster",
              "Linstor", "PowerFlex", "StorPool", "Iscsi", "FiberChannel", "CLVM_NG"]
NOISE = [
    "2024-03-01 10:00:00,000 DEBUG [kvm.resource.LibvirtConnection] (agentRequest-Handler-1:null)"
    " (logid:1) Looking for libvirtd connection at: qemu:///system",
    "2024-03-01 10:00:00,000 INFO  [kvm.storage.LibvirtStorageAdaptor] (agentRequest-Handler-1:"
    "null) (logid:1) Trying to fetch storage pool 1 from libvirt",
    "2024-03-01 10:00:00,000 WARN  [utils.script.Script] (agentRequest-Handler-1:null) (logid:1) "
    "Execution of process [42] for command [/bin/true ] failed.",
    "<pool type='netfs'>", "</pool>", "",
]
FRAGMENTS = NOISE + [
    "\tat " + KVM + ".storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath(L.java:1)",
    "        at org.glassfish.jersey.client.ClientRuntime.invoke(ClientRuntime.java:254)",
    JERSEY_EXC, "Caused by: java.net.ConnectException: x", "> ", "#011at x.y(z)", "...",
    "Aug 13 14:17:27 h java[1]: WARN  [cloud.agent.Agent] (a:) (logid:) Caught: ",
    "Aug 13 14:17:27 h sudo[2]: root : x", "12:2024-01-01 00:00:00,000 INFO  [a] (b:c) (logid:) d",
    '2024-03-01 10:00:00,000 DEBUG [cloud.agent.Agent] (h:null) (logid:1) Request:Seq 1-2:  { Cmd'
    ', [{"com.cloud.agent.api.DeleteStoragePoolCommand":{"_pool":{"uuid":"u","type":"t"}}] }',
    "2024-03-01 10:00:00,000 DEBUG [cloud.agent.Agent] (h:null) (logid:1) Processing command: "
    "com.cloud.agent.api.DeleteStoragePoolCommand",
    '{"result":false,"details":"x.y.FooException: z\\n\\tat com.cloud.hypervisor.kvm.storage.'
    'KVMStoragePoolManager.createStoragePool(K.java:1)\\n"}',
    "2024-03-01 10:00:00,000 WARN  [cloud.agent.Agent] (h:null) (logid:1) Caught: ",
    "2024-03-01 10:00:00,000 INFO  [kvm.storage.LibvirtStorageAdaptor] (h:null) (logid:1) "
    "Attempting to remove storage pool u from libvirt",
]
