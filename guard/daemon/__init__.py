"""`cloudstack-guard run`: one asyncio loop that watches, judges and (in remediate mode)
restarts the agent.

Each evidence source feeds a shared picture (state.py) on its own schedule: the agent
process and its logs (host_watch.py), libvirt pool events (libvirt_watch.py), the
management server's listing and the backend probes (polls.py). Any change marks the
picture dirty; the judging loop (judging.py) then runs the same pure functions `check`
uses, logs findings once when they appear and once when they clear, and hands a restart
decision to guard.remediate. Blocking library calls run in worker threads under their own
timeouts, so a hung backend delays nothing else; lifecycle.py feeds the systemd watchdog
from the loop itself, so a stalled loop is noticed. runtime.py holds what all of them
share.
"""

from guard.daemon.lifecycle import run

__all__ = ["run"]
