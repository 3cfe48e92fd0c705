"""A KVM host as the guard sees it, built from real parts on loopback: a private
libvirtd, the LINSTOR controller emulator, the management-server emulator, a stand-in
agent process with its agent.properties and log, and a guard.toml pointing at them all.
`check()` runs the real CLI as a subprocess, as monitoring would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tests.support.emulators.agent_standin import start_standin, stop_standin
from tests.support.emulators.linstor import LinstorEmulator
from tests.support.emulators.management import ManagementEmulator
from tests.support.paths import REPO

API_KEY = "guard-test-key-7f3a"
API_SECRET = "guard-test-secret-c91e"
PROBE_TIMEOUT_S = 2.0


@dataclass
class CheckRun:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def findings(self, kind: Optional[str] = None) -> list[dict[str, Any]]:
        return [f for f in self.doc["findings"] if kind is None or f["kind"] == kind]

    def kinds(self) -> list[str]:
        return sorted(f["kind"] for f in self.doc["findings"])


class GuardHost:
    def __init__(self, root: Path, libvirt_uri: str) -> None:
        self.root = root
        self.hostname = socket.gethostname()
        self.libvirt_uri = libvirt_uri
        self.mgmt = ManagementEmulator({API_KEY: API_SECRET}, agent_port=0)
        self.linstor = LinstorEmulator(nodes=[self.hostname])
        self.properties = root / "agent.properties"
        self.log = root / "agent.log"
        self.storpool_log = root / "storpool-agent.log"
        self.config = root / "guard.toml"
        self.state_dir = root / "state"
        self.agent: Optional[subprocess.Popen] = None
        self.host_id = ""

    def __enter__(self) -> GuardHost:
        self.mgmt.__enter__()
        self.linstor.__enter__()
        self.host_id = self.mgmt.add_host(self.hostname)["id"]
        self.properties.write_text(
            f"# written by the test harness\nhost=127.0.0.1\nport={self.mgmt.agent_port}\n"
            f"guid=6c1b7c2e-0000-4000-8000-00000000beef\nzone={self.mgmt.zone_id}\n"
            f"cluster={self.mgmt.cluster_id}\nhypervisor.type=kvm\n"
        )
        credentials = self.root / "cloudstack.ini"
        credentials.write_text(
            f"[cloudstack]\nendpoint = {self.mgmt.endpoint}\nkey = {API_KEY}\nsecret = {API_SECRET}\n"
        )
        os.chmod(credentials, 0o600)
        self.write_config(
            f'state_dir = "{self.state_dir}"\n'
            f'[agent]\nproperties = "{self.properties}"\nlog = "{self.log}"\n'
            f'storpool_log = "{self.storpool_log}"\n'
            f'[libvirt]\nuri = "{self.libvirt_uri}"\n'
            f'[management]\ncredentials = "{credentials}"\ntimeout = "5s"\npoll_interval = "1s"\n'
            f'[probes]\ntimeout = "{PROBE_TIMEOUT_S:g}s"\n'
            f'[linstor]\nauth_json = "{self.root / "auth.json"}"\n'
        )
        self.start_agent()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.agent is not None:
            stop_standin(self.agent)
        self.linstor.__exit__(*exc)
        self.mgmt.__exit__(*exc)

    def write_config(self, text: str) -> None:
        self.config.write_text(text)
        os.chmod(self.config, 0o644)

    def start_agent(self) -> None:
        self.agent = start_standin(self.properties, self.log)
        self._wait_connected()

    def _wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.mgmt.agent_connection_count < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in agent never connected to the agent port")
            time.sleep(0.02)

    def stop_agent(self) -> None:
        """Returns once the management side saw the connection drop, so a new agent's
        connection is not confused with the old one's."""
        if self.agent is not None:
            stop_standin(self.agent)
            self.agent = None
            deadline = time.monotonic() + 10.0
            while self.mgmt.agent_connection_count > 0 and time.monotonic() < deadline:
                time.sleep(0.02)

    def restart_agent(self) -> None:
        """A new incarnation: new pid and start time, caches empty."""
        self.stop_agent()
        time.sleep(1.1)
        self.start_agent()

    def add_linstor_pool(self, name: str = "linstor-primary") -> str:
        pool = self.mgmt.add_pool(name, pool_type="Linstor", scope="ZONE", hypervisor="KVM",
                                  ipaddress=self.linstor.url, path="/cloudstack", provider="Linstor")
        return pool["id"]

    def append_log(self, text: str) -> None:
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(text)

    def run_cli(self, *args: str) -> CheckRun:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "guard.cli", *args], capture_output=True, text=True, timeout=60,
            cwd=REPO,
        )
        return CheckRun(result.returncode, result.stdout, result.stderr, time.monotonic() - started)

    def check(self, *extra: str) -> CheckRun:
        return self.run_cli("check", "--json", "--config", str(self.config), *extra)

    def check_text(self) -> CheckRun:
        return self.run_cli("check", "--config", str(self.config))
