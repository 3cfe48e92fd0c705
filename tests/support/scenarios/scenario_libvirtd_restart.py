"""libvirtd restarted under the running guard (the test restarts it from outside): events
resume after reconnecting, the guard does not crash, and nothing false is reported."""

import os
import time

from tests.support import nspawn
from tests.support.scenarios import common as c

c.setup("remediate")
agent0 = nspawn.main_pid(c.AGENT)
guard0 = c.guard_health()
open("/out/restart-libvirtd", "w").close()
nspawn.wait_for(lambda: os.path.exists("/out/libvirtd-restarted"), 60, what="libvirtd restarted")
disconnected = c.wait_guard_event("libvirt-disconnected")
nspawn.wait_for(lambda: len(c.guard_events("libvirt-connected")) >= 2, 40, interval=0.2,
                what="guard reconnected to libvirtd")
time.sleep(2)
nspawn.write_result("libvirtd_restart", {
    "disconnected": disconnected, "connected": c.guard_events("libvirt-connected"),
    "findings": c.guard_events("finding"), "failed_tasks": c.guard_events("task-failed"),
    "restarts": c.guard_events("restart-requested"), "agent0": agent0,
    "agent1": nspawn.main_pid(c.AGENT), "guard0": guard0, "guard1": c.guard_health(),
})
