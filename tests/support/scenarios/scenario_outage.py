"""A live pool whose controller is down: an outage, not a stale pool. No restart."""

import time

from guard.sources.agent import unit_state
from tests.support import nspawn
from tests.support.scenarios import common as c

c.setup("remediate")
agent0 = nspawn.main_pid(c.AGENT)
nspawn.systemctl("stop", "linstor-emulator.service")
finding = c.wait_guard_event("finding", kind="backend-unreachable", severity="CRITICAL")
time.sleep(5)
nspawn.write_result("outage", {
    "finding": finding, "agent0": agent0, "agent1": nspawn.main_pid(c.AGENT),
    "stale": c.guard_events("finding") and [e for e in c.guard_events("finding")
                                            if e.get("GUARD_KIND") == "stale-pool"],
    "restarts": c.guard_events("restart-requested"), "guard": c.guard_health(),
    "agent_unit": unit_state(c.AGENT), "absent_unit": unit_state("cloudstack-agent-absent.service"),
})
