"""What a storage failure in the agent log means, shared by `check` and `analyze`."""

from __future__ import annotations

from guard.model import LogEvent

_CONNECTION_LOST = ("ConnectException", "SocketTimeoutException", "Connection refused",
                    "connect timed out", "Connection timed out", "NoRouteToHostException",
                    "UnknownHostException")


def is_stop_failure(event: LogEvent) -> bool:
    """Disk cleanup runs on every VM stop and migration; a storage failure there is what
    users see as "Unable to stop VM instance"."""
    return event.kind == "storage-failure" and event.operation == "disk-cleanup"


def is_adaptor_backend_failure(event: LogEvent) -> bool:
    """A storage client failure whose operation the excerpt does not show (a trace cut
    before the adaptor frames, or a call during reconnect): it proves the adaptor could
    not talk to its backend, not that a VM stop failed."""
    return event.kind == "storage-failure" and event.operation == "" and bool(event.adaptor)


def connection_lost(event: LogEvent) -> bool:
    """Refused or timed out: while it lasts, every disk cleanup through this adaptor fails."""
    return any(marker in event.exception for marker in _CONNECTION_LOST)
