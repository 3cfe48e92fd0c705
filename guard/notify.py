"""sd_notify: READY, STATUS, WATCHDOG and STOPPING for systemd's Type=notify.

The protocol is one datagram to $NOTIFY_SOCKET; written here with the standard library
so that it works the same with or without python3-systemd installed.
"""

from __future__ import annotations

import os
import socket
from typing import Optional


def notify(*fields: str) -> bool:
    """False when not run by systemd (no NOTIFY_SOCKET) or the socket is gone."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> Optional[float]:
    """Half of WATCHDOG_USEC, as systemd recommends; None when no watchdog is asked for
    (or it is meant for another process, per WATCHDOG_PID)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2
