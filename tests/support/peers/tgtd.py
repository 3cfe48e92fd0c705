"""A real iSCSI target (tgtd, Debian package tgt) on 127.0.0.1, private to one test.

Each tgtd gets a free portal port and its own management socket: tgtd and tgtadm both
read the socket's path from TGT_IPC_SOCKET (the socket is that path plus ".<control
port>"), here a file in the peer's own temp dir. The control port is never 0, the one a
tgtd of the host uses, so even a tgt that ignored TGT_IPC_SOCKET would not reach it.

tgtd ignores SIGTERM, with or without targets: it stops on `tgtadm --op delete --mode
system`, which it refuses while a target exists, so stop() deletes the targets first and
SIGKILLs whatever is still there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.decoys import free_port
from tests.support.peers.process import PeerError, PeerProcess

TGTADM_TIMEOUT = 10.0
LUN_BYTES = 1 << 20
MAX_CONTROL_PORT = 32767
"""tgtd keeps its control port in a short int."""


class Tgtd:
    def __init__(self, workdir: Path, port: int = 0) -> None:
        """`port` 0: a free one; iSCSI's own 3260 where the pool's URL gives none."""
        self.workdir = workdir
        self.port = port or free_port()
        self.control_port = 1 + self.port % MAX_CONTROL_PORT
        self.env = {**os.environ, "TGT_IPC_SOCKET": str(workdir / "tgtd.socket")}
        self.process = PeerProcess(
            "tgtd", ["tgtd", "-f", "-C", str(self.control_port), "--iscsi", f"portal=127.0.0.1:{self.port}"],
            workdir / "tgtd.log", (self.port,), cwd=workdir, env=self.env)
        self.tids: list[int] = []

    def start(self) -> None:
        self.process.start()

    def tgtadm(self, *args: str) -> None:
        argv = ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=TGTADM_TIMEOUT,
                              check=False)
        if done.returncode != 0:
            raise PeerError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")

    def add_target(self, iqn: str) -> int:
        """A target with one LUN on a sparse file, open to every initiator address."""
        tid = len(self.tids) + 1
        self.tgtadm("--mode", "target", "--op", "new", "--tid", str(tid), "--targetname", iqn)
        self.tids.append(tid)
        backing = self.workdir / f"lun{tid}.img"
        with open(backing, "wb") as handle:
            handle.truncate(LUN_BYTES)
        self.tgtadm("--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun", "1",
                    "--backing-store", str(backing))
        self.tgtadm("--mode", "target", "--op", "bind", "--tid", str(tid), "--initiator-address", "ALL")
        return tid

    def require_discovery_chap(self, user: str, password: str) -> None:
        """An account bound without a tid is the discovery account (tgt-admin's
        incomingdiscoveryuser does the same): discovery then needs CHAP."""
        self.tgtadm("--mode", "account", "--op", "new", "--user", user, "--password", password)
        self.tgtadm("--mode", "account", "--op", "bind", "--user", user)

    def pause(self) -> None:
        self.process.pause()

    def stop(self) -> None:
        if self.process.running:
            self.process.resume()
            with contextlib.suppress(PeerError, subprocess.TimeoutExpired):
                for tid in self.tids:
                    self.tgtadm("--mode", "target", "--op", "delete", "--force", "--tid", str(tid))
                self.tids.clear()
                self.tgtadm("--mode", "system", "--op", "delete")
            deadline = time.monotonic() + 3.0
            while self.process.running and time.monotonic() < deadline:
                time.sleep(0.02)
        self.process.stop(signal.SIGKILL)


def tgtd_missing() -> str:
    """Why no tgtd can run here, or "" when one can."""
    missing = [name for name in ("tgtd", "tgtadm") if shutil.which(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian package tgt)"
    return "" if os.geteuid() == 0 else "tgtd needs root"


@contextlib.contextmanager
def running_tgtd(targets: tuple[str, ...] = (), port: int = 0) -> Iterator[Tgtd]:
    """A started tgtd offering `targets`, stopped and its temp dir removed at exit."""
    workdir = Path(tempfile.mkdtemp(prefix="guard-tgtd-"))
    peer = Tgtd(workdir, port)
    try:
        peer.start()
        for iqn in targets:
            peer.add_target(iqn)
        yield peer
    finally:
        peer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
