"""Socket facts about a test's own processes."""

from __future__ import annotations

import psutil


def established_to(pid: int, port: int) -> bool:
    """Whether `pid` holds an ESTABLISHED TCP connection to 127.0.0.1:`port`."""
    proc = psutil.Process(pid)
    connections = getattr(proc, "net_connections", proc.connections)(kind="tcp")
    return any(
        c.status == psutil.CONN_ESTABLISHED and c.raddr and tuple(c.raddr) == ("127.0.0.1", port)
        for c in connections
    )
