"""glusterd as a test's Gluster management daemon, on 127.0.0.1, state under one temp dir.

Its TCP port is `transport.socket.listen-port`; its working directory (peer uuid, volume
store), run directory and CLI socket are moved into the temp dir too, so that it never
touches /var/lib/glusterd or the host's /run/glusterd.socket. No volume is created: a
volume cannot have bricks on a loopback address, and the probe does not look at volumes.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Optional

from guard.backends import gluster
from tests.support.peers.process import PeerError, PeerProcess

GLUSTERD = "glusterd"
READY_TIMEOUT = 20.0


def missing() -> Optional[str]:
    """Why glusterd cannot run here, or None."""
    if shutil.which(GLUSTERD) is None:
        return f"{GLUSTERD} not installed (Debian: glusterfs-server)"
    return None


def volfile(workdir: Path, run: Path, port: int) -> str:
    return (
        "volume management\n"
        "    type mgmt/glusterd\n"
        f"    option working-directory {workdir}\n"
        f"    option run-directory {run}\n"
        f"    option glusterd-sockfile {run / 'glusterd.socket'}\n"
        "    option transport-type socket\n"
        "    option transport.socket.bind-address 127.0.0.1\n"
        f"    option transport.socket.listen-port {port}\n"
        "    option ping-timeout 0\n"
        "    option event-threads 1\n"
        "end-volume\n"
    )


class Glusterd:
    """One glusterd in the foreground (-N) on 127.0.0.1:port."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        state = workdir / "state"
        run = workdir / "run"
        state.mkdir(parents=True, exist_ok=True)
        run.mkdir(exist_ok=True)
        vol = workdir / "glusterd.vol"
        vol.write_text(volfile(state, run, port))
        log = workdir / "glusterd.log"
        argv = [GLUSTERD, "-N", "-f", str(vol), "-p", str(workdir / "glusterd.pid"), f"--log-file={log}"]
        self.process = PeerProcess("glusterd", argv, log, (port,), cwd=workdir)

    def start(self) -> None:
        """Ready when DUMP answers: glusterd listens at once but answers only once its
        start-up is done (about 1.7 s here), and a test must not see that as a hang."""
        self.process.start()
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"gluster://127.0.0.1:{self.port}/ready"
        while asyncio.run(gluster.probe(url, 1.0)).status != "healthy":
            if not self.process.running or time.monotonic() > deadline:
                self.process.stop()
                raise PeerError(f"glusterd did not answer DUMP on {self.port}: {self.process.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    @property
    def running(self) -> bool:
        return self.process.running
