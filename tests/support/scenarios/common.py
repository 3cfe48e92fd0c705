"""Runs INSIDE the nspawn container: builds the cloud around a real systemd (emulators
and the agent simulator as units, the guard from systemd/cloudstack-guard.service) and
gives scenarios the operations a user would do. Standard library plus the test tree."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from typing import Any, Callable, Optional

from tests.support import nspawn
from tests.support.emulators.agent_sim import SimClient

MGMT = "http://127.0.0.1:8080/control"
KEY, SECRET = "e2e-key-51c2", "e2e-secret-9d0b"
LINSTOR_URL = "http://127.0.0.1:3370"
PROPS = "/etc/cloudstack/agent/agent.properties"
AGENT_LOG = "/var/log/cloudstack/agent/agent.log"
CONTROL = "/run/agent-sim.sock"
GUARD = "cloudstack-guard.service"
AGENT = "cloudstack-agent.service"
LIBVIRT_URI = "qemu+unix:///system?socket=/run/test-libvirt/libvirt-sock"
NFS_DISK = "/mnt/5b0e7c8a-1d2e-4f30-9a4b-5c6d7e8f9a0b/9f8e7d6c.qcow2"


def control(method: str, path: str, body: Optional[dict] = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{MGMT}/{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback only
        text = answer.read()
    return json.loads(text) if text else None


def wait_port(port: int, timeout: float = 15.0) -> None:
    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    nspawn.wait_for(up, timeout, what=f"port {port}")


def guard_config(mode: str, extra: str = "") -> str:
    return (f'mode = "{mode}"\nstate_dir = "/var/lib/cloudstack-guard"\n'
            f'[agent]\nproperties = "{PROPS}"\nlog = "{AGENT_LOG}"\nunit = "{AGENT}"\n'
            f'[libvirt]\nuri = "{LIBVIRT_URI}"\n'
            '[management]\ncredentials = "/etc/cloudstack-guard/cloudstack.ini"\n'
            'timeout = "5s"\npoll_interval = "1s"\n'
            '[probes]\ntimeout = "1s"\ninterval = "1s"\n'
            '[remediation]\nmax_restarts = 2\nwindow = "1h"\ncooldown = "1s"\nverify_deadline = "30s"\n'
            'stagger_slot = "2s"\nsettle = "3s"\n' + extra)


def write_guard_config(text: str) -> None:
    os.makedirs("/etc/cloudstack-guard", exist_ok=True)
    with open("/etc/cloudstack-guard/guard.toml", "w") as handle:
        handle.write(text)
    os.chmod("/etc/cloudstack-guard/guard.toml", 0o644)


def sim(op: str, **params: Any) -> dict:
    return SimClient(CONTROL).call(op, **params)


def wait_sim() -> None:
    def ready() -> bool:
        try:
            return bool(sim("status").get("connected"))
        except OSError:
            return False
    nspawn.wait_for(ready, 20, what="agent simulator connected")


def stop_vm() -> dict:
    return sim("stop-vm", name="i-2-10-VM", disks=[NFS_DISK])


def setup(mode: str, extra: str = "", agent_props: str = "") -> str:
    """A host with one LINSTOR pool the agent holds, a VM stop that works, and the guard
    running (systemctl start returns once it sent READY=1). Returns the pool's id.
    `agent_props` are more agent.properties lines."""
    wait_port(8080)
    wait_port(3370)
    state = control("GET", "state")
    cluster = state["clusters"][0]
    control("POST", "hosts", {"name": socket.gethostname(), "ipaddress": "127.0.0.1"})
    pool = control("POST", "pools", {"name": "linstor-primary", "pool_type": "Linstor", "scope": "ZONE",
                                     "hypervisor": "KVM", "ipaddress": LINSTOR_URL, "path": "/cloudstack",
                                     "provider": "Linstor"})
    os.makedirs(os.path.dirname(PROPS), exist_ok=True)
    os.makedirs(os.path.dirname(AGENT_LOG), exist_ok=True)
    with open(PROPS, "w") as handle:
        handle.write(f"host=127.0.0.1\nport=8250\nguid=e2e-0000-4000-8000-000000000001\n"
                     f"zone={cluster['zoneid']}\ncluster={cluster['id']}\nhypervisor.type=kvm\n{agent_props}")
    nspawn.systemctl("start", AGENT)
    wait_sim()
    assert sim("add-pool", uuid=pool["id"], type="Linstor", url=LINSTOR_URL)["ok"]
    assert stop_vm()["ok"], "a VM stop must work before the pool is deleted"
    write_guard_config(guard_config(mode, extra))
    with open("/etc/cloudstack-guard/cloudstack.ini", "w") as handle:
        handle.write(f"[cloudstack]\nendpoint = http://127.0.0.1:8080/client/api\nkey = {KEY}\n"
                     f"secret = {SECRET}\n")
    os.chmod("/etc/cloudstack-guard/cloudstack.ini", 0o600)
    nspawn.systemctl("start", GUARD, timeout=60)
    return pool["id"]


def delete_pool_and_controller(pool_id: str) -> None:
    """What the operator did in apache/cloudstack#10465: nothing tells the agent."""
    control("DELETE", f"pools/{pool_id}")
    nspawn.systemctl("stop", "linstor-emulator.service")


def guard_events(name: Optional[str] = None) -> list[dict[str, str]]:
    entries = nspawn.journal(GUARD)
    events = [e for e in entries if "GUARD_EVENT" in e]
    return [e for e in events if name is None or e["GUARD_EVENT"] == name]


def wait_guard_event(name: str, timeout: float = 30.0, **fields: str) -> dict[str, str]:
    def find() -> Optional[dict[str, str]]:
        for entry in guard_events(name):
            if all(entry.get(f"GUARD_{k.upper()}") == v for k, v in fields.items()):
                return entry
        return None
    return nspawn.wait_for(find, timeout, interval=0.2, what=f"guard event {name} {fields}")


def guard_health() -> dict[str, str]:
    return nspawn.unit_properties(GUARD, "MainPID", "NRestarts", "ActiveState", "WatchdogTimestampMonotonic")


def stamp() -> float:
    return time.monotonic()


def on_each_new_agent(first: int, stop: threading.Event, act: Callable[[int], None]) -> threading.Thread:
    """Call `act(pid)` once for each new MainPID of the agent unit after `first`, until
    `stop`; started as a daemon thread, returned for joining."""
    def watch() -> None:
        seen = first
        while not stop.is_set():
            try:
                pid = nspawn.main_pid(AGENT)
            except Exception:  # noqa: BLE001 - the unit may be between processes
                pid = 0
            if pid and pid != seen:
                seen = pid
                act(pid)
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
