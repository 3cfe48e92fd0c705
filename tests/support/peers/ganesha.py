"""nfs-ganesha as a test's NFS server, on loopback, everything under one temp dir.

NFSv4 needs nothing else: ganesha binds 127.0.0.1 on a port of our choosing (NFS_Port).
NFSv3 needs rpcbind, which always binds 0.0.0.0:111 and keeps its socket at
/run/rpcbind.sock. So rpcbind and a v3 ganesha run in a PrivateNet: a network namespace
with only lo and a mount namespace with its own /run, both kept alive as bind mounts
under the temp dir (no name under /run/netns, nothing left behind), where neither can
touch the host's rpcbind nor be reached by anything but the test. A probe for them runs
in the same network namespace, as a child process (`PrivateNet.probe`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from tests.support.paths import REPO
from tests.support.peers.process import PeerError, PeerProcess

GANESHA = "ganesha.nfsd"
TOOLS = ("rpcbind", "unshare", "nsenter", "mount", "umount", "ip")
STEP_TIMEOUT = 10.0

_WAIT_PORT = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
"""

_PROBE = """
import asyncio, dataclasses, json, sys
from guard.backends import nfs, probe_bounded
from guard.config import Config
result = asyncio.run(probe_bounded(nfs.BACKEND, sys.argv[1], Config(), float(sys.argv[2])))
print(json.dumps(dataclasses.asdict(result)))
"""


def missing() -> Optional[str]:
    """Why ganesha cannot run here, or None."""
    if shutil.which(GANESHA) is None:
        return f"{GANESHA} not installed (Debian: nfs-ganesha nfs-ganesha-vfs)"
    return None


def missing_for_v3() -> Optional[str]:
    """Why the NFSv3 setup (rpcbind in a private namespace) cannot run here, or None."""
    absent = [tool for tool in (GANESHA, *TOOLS) if shutil.which(tool) is None]
    return f"not installed: {', '.join(absent)}" if absent else missing()


def config(export: Path, recovery: Path, protocols: str, port: int, bind: Optional[str]) -> str:
    """A VFS export of `export`; no NLM, RQUOTA or UDP, so only the NFS port is bound.
    Graceless: the v4 grace period would only delay a test's first state operation."""
    address = f"    Bind_addr = {bind};\n" if bind else ""
    return (
        "NFS_CORE_PARAM {\n"
        f"    Protocols = {protocols};\n"
        f"{address}"
        f"    NFS_Port = {port};\n"
        "    Enable_NLM = false;\n"
        "    Enable_RQUOTA = false;\n"
        "    Enable_UDP = false;\n"
        "}\n"
        f"NFSV4 {{ Graceless = true; RecoveryRoot = {recovery}; }}\n"
        "EXPORT {\n"
        "    Export_Id = 1;\n"
        f"    Path = {export};\n"
        "    Pseudo = /export;\n"
        "    Access_Type = RW;\n"
        "    Squash = No_Root_Squash;\n"
        "    SecType = sys;\n"
        "    FSAL { Name = VFS; }\n"
        "}\n"
    )


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False)
    if done.returncode != 0:
        raise PeerError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


class PrivateNet:
    """A network namespace with only lo up, and a mount namespace whose /run is a fresh
    tmpfs; both live as long as their bind mounts under `root` (close() drops them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = root / "net"
        self.mnt = root / "mnt"
        self.mounted: list[Path] = []

    def __enter__(self) -> PrivateNet:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # A persistent mount namespace must be bound on a private mount (unshare(1)).
            _run(["mount", "--bind", str(self.root), str(self.root)])
            self.mounted.append(self.root)
            _run(["mount", "--make-private", str(self.root)])
            self.net.touch()
            self.mnt.touch()
            _run(["unshare", f"--net={self.net}", f"--mount={self.mnt}", "--propagation", "private",
                  "ip", "link", "set", "lo", "up"])
            self.mounted[:0] = [self.net, self.mnt]
            _run(self.argv(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"]))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.net}", f"--mount={self.mnt}", "--", *argv]

    def python(self, code: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv([sys.executable, "-c", code, *args]), cwd=REPO,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def wait_port(self, port: int, timeout: float = STEP_TIMEOUT) -> bool:
        """Whether 127.0.0.1:port inside accepts a connect within `timeout`."""
        return self.python(_WAIT_PORT, str(port), str(timeout), timeout=timeout + 5).returncode == 0

    def probe(self, url: str, timeout: float) -> tuple[dict[str, Any], float]:
        """The NFS probe's result (probe_bounded, as the guard runs it) from a child inside,
        as a dict, and the wall time of that child."""
        started = time.monotonic()
        done = self.python(_PROBE, url, str(timeout), timeout=timeout + 20)
        if done.returncode != 0:
            raise AssertionError(f"the probe in the namespace failed: {done.stderr.strip()}")
        return json.loads(done.stdout), time.monotonic() - started

    def close(self) -> None:
        for path in self.mounted:
            subprocess.run(["umount", str(path)], capture_output=True, timeout=STEP_TIMEOUT, check=False)
        self.mounted = []


class Ganesha:
    """One ganesha.nfsd in the foreground. `net` None: in the test's own namespace, bound
    to 127.0.0.1; else inside that PrivateNet, bound to its every address (only lo)."""

    def __init__(self, workdir: Path, port: int, protocols: str = "4",
                 net: Optional[PrivateNet] = None) -> None:
        self.workdir = workdir
        self.port = port
        self.net = net
        export = workdir / "export"
        recovery = workdir / "recovery"
        export.mkdir(parents=True, exist_ok=True)
        recovery.mkdir(exist_ok=True)
        conf = workdir / "ganesha.conf"
        conf.write_text(config(export, recovery, protocols, port, None if net else "127.0.0.1"))
        argv = [GANESHA, "-F", "-f", str(conf), "-L", "STDOUT", "-p", str(workdir / "ganesha.pid")]
        self.process = PeerProcess("ganesha", net.argv(argv) if net else argv, workdir / "ganesha.log",
                                   () if net else (port,), cwd=workdir)

    def start(self) -> None:
        self.process.start()
        if self.net and not self.net.wait_port(self.port):
            self.process.stop()
            raise PeerError(f"ganesha did not listen on {self.port}: {self.process.tail()}")

    def stop(self) -> None:
        self.process.stop()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    @property
    def running(self) -> bool:
        return self.process.running


class Rpcbind:
    """rpcbind in the foreground inside a PrivateNet (it binds 0.0.0.0:111 there)."""

    def __init__(self, workdir: Path, net: PrivateNet) -> None:
        self.net = net
        self.process = PeerProcess("rpcbind", net.argv(["rpcbind", "-f"]), workdir / "rpcbind.log", (),
                                   cwd=workdir)

    def start(self) -> None:
        self.process.start()
        if not self.net.wait_port(111):
            self.process.stop()
            raise PeerError(f"rpcbind did not listen on 111: {self.process.tail()}")

    def stop(self) -> None:
        self.process.stop()
