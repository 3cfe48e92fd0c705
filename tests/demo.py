"""The real scenario, end to end, for a newcomer: `make demo`.

Everything runs on this machine, on loopback: a private libvirtd, a LINSTOR controller
emulator, a CloudStack management-server emulator and a stand-in agent process. The
guard itself is the real `cloudstack-guard check`, run as monitoring would run it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tests.support.agent_lines import LINSTOR_STOP_FAILURE
from tests.support.host import GuardHost
from tests.support.libvirtd import PrivateLibvirtd


def say(title: str, text: str) -> None:
    print(f"\n=== {title}")
    print(textwrap.fill(textwrap.dedent(text).strip(), width=92))


def show(run) -> None:
    print(f"$ cloudstack-guard check        (exit {run.returncode}, {run.elapsed:.2f}s)")
    for line in run.stdout.rstrip().splitlines():
        print("  " + line)


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root: it starts a private libvirtd in its own mount namespace")
        return 2
    with tempfile.TemporaryDirectory(prefix="guard-demo-") as tmp:
        root = Path(tmp)
        (root / "libvirtd").mkdir()
        with PrivateLibvirtd(root / "libvirtd") as libvirtd, GuardHost(root, libvirtd.uri) as host:
            say("1. A KVM host with a LINSTOR primary storage pool", f"""
                The management server lists a zone-wide LINSTOR pool; the agent (pid {host.agent.pid})
                is connected and holds it. The controller answers.""")
            pool = host.add_linstor_pool()
            show(host.check_text())

            say("2. The operator deletes the pool in CloudStack", """
                Before 4.19.3 / 4.20.1 nothing tells the agent: its LINSTOR adaptor keeps the
                pool in its static map. VM stops still work while the controller answers,
                so the guard warns.""")
            host.mgmt.remove_pool(pool)
            show(host.check_text())

            say("3. The LINSTOR controller is decommissioned", """
                Now every VM stop on this host fails: the adaptor asks the first cached
                pool's controller, gets Connection refused, and the stop aborts.""")
            host.linstor.stop()
            show(host.check_text())

            say("4. A user stops a VM: the agent log shows the failure", """
                `cloudstack-guard analyze` reads agent logs (here: this host's, or one pasted
                from a ticket) and names the adaptor.""")
            host.append_log(LINSTOR_STOP_FAILURE.format(ts=time.strftime("%Y-%m-%d %H:%M:%S,000")))
            run = host.run_cli("analyze", str(host.log))
            print(f"$ cloudstack-guard analyze {host.log}        (exit {run.returncode})")
            for line in run.stdout.rstrip().splitlines():
                print("  " + line)

            say("5. cloudstack-agent is restarted", """
                A new incarnation starts with empty caches; the management server re-sends
                only the pools it still has. The stale pool is gone.""")
            host.restart_agent()
            show(host.check_text())
    print("\nDemo finished: every process it started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
