"""A real Ceph monitor for the RBD probe's tests: ceph-mon bootstrapped in a temp dir,
everything it writes (store, keyring, logs, admin socket, cluster log, crash dumps) under
that dir, listening on one loopback address only.

It listens on the default ports (3300 msgr2, 6789 msgr1) so that a URL without a port is
tested as CloudStack writes it, but on an address of 127.0.0.0/8 of its own (all of it
is loopback on Linux): nothing else on the machine listens there, so it never collides.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.peers.process import PeerError, PeerProcess

BINARIES = ("ceph-mon", "monmaptool", "ceph-authtool")
V2_PORT = 3300
V1_PORT = 6789
POOL = "rbdpool"
SETUP_TIMEOUT = 30.0


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_loopback_host(ports: tuple[int, ...] = (V2_PORT, V1_PORT)) -> str:
    """A 127.x.y.z address (not 127.0.0.1) on which every one of `ports` is free."""
    rng = random.Random()
    for _ in range(200):
        host = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if all(_bindable(host, port) for port in ports):
            return host
    raise PeerError(f"no loopback address with ports {ports} free")


def _thread_state(stat: Path) -> str:
    """The state letter of /proc/PID/task/TID/stat; "" for a thread that has exited."""
    try:
        return stat.read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def _run(argv: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=SETUP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise PeerError(f"{argv[0]} did not finish within {SETUP_TIMEOUT:g}s") from None
    if done.returncode != 0:
        raise PeerError(f"{' '.join(argv)} failed ({done.returncode}): "
                        f"{(done.stderr or done.stdout).strip()[-500:]}")


class CephMonitor:
    """One monitor ("a") of a one-monitor cluster, bootstrapped on construction."""

    def __init__(self, workdir: Path, host: str, msgr2: bool = True) -> None:
        """`msgr2` False: a monitor with a msgr1 address only, as before Nautilus or with
        msgr2 left out of the monmap; nothing listens on its port 3300."""
        self.workdir = workdir
        self.host = host
        self.ports = (V2_PORT, V1_PORT) if msgr2 else (V1_PORT,)
        addrs = f"[v2:{host}:{V2_PORT},v1:{host}:{V1_PORT}]" if msgr2 else f"[v1:{host}:{V1_PORT}]"
        fsid = str(uuid.uuid4())
        for sub in ("mon", "run", "log", "crash"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "ceph.conf"
        self.conf.write_text("\n".join([
            "[global]",
            f"fsid = {fsid}",
            f"mon host = {addrs}",
            f"mon data = {workdir}/mon/$cluster-$id",
            f"run dir = {workdir}/run",
            f"admin socket = {workdir}/run/$cluster-$name.asok",
            f"log file = {workdir}/log/$cluster-$name.log",
            f"mon cluster log file = {workdir}/log/cluster.log",
            f"crash dir = {workdir}/crash",
            f"keyring = {workdir}/keyring",
            "log to stderr = false",
            "",
        ]))
        keyring = workdir / "keyring"
        monmap = workdir / "monmap"
        _run(["ceph-authtool", "--create-keyring", str(keyring), "--gen-key", "-n", "mon.",
              "--cap", "mon", "allow *"], workdir)
        _run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a", addrs, str(monmap)], workdir)
        _run(["ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap),
              "--keyring", str(keyring)], workdir)
        # ports=(): PeerProcess waits on 127.0.0.1, this monitor listens elsewhere; start()
        # waits on its own address.
        self.process = PeerProcess("ceph-mon", ["ceph-mon", "-c", str(self.conf), "-i", "a", "-f"],
                                   workdir / "log" / "ceph-mon.out", (), cwd=workdir)

    def url(self, port: int | None = None, userinfo: str = "") -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"rbd://{auth}{self.host}{f':{port}' if port else ''}/{POOL}"

    def start(self, timeout: float = 20.0) -> None:
        self.process.start()
        deadline = time.monotonic() + timeout
        waiting = list(self.ports)
        while waiting:
            if not self.process.running:
                raise PeerError(f"ceph-mon exited: {self.process.tail()}")
            if time.monotonic() > deadline:
                self.process.stop()
                raise PeerError(f"ceph-mon did not listen on {self.host}:{waiting} within "
                                f"{timeout:g}s: {self.process.tail()}")
            try:
                socket.create_connection((self.host, waiting[0]), timeout=0.2).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop()

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP, and wait until every thread has stopped: the signal is delivered
        asynchronously, and a messenger thread still running would greet a probe."""
        self.process.pause()
        assert self.process.proc is not None
        tasks = Path(f"/proc/{self.process.proc.pid}/task")
        deadline = time.monotonic() + timeout
        while not all(_thread_state(stat) in ("T", "t", "") for stat in tasks.glob("*/stat")):
            if time.monotonic() > deadline:
                raise PeerError(f"ceph-mon did not stop within {timeout:g}s of SIGSTOP")
            time.sleep(0.01)

    def resume(self) -> None:
        self.process.resume()
