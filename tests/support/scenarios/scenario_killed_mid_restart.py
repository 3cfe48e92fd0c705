"""The guard SIGKILLed by systemd between asking for the agent's restart and verifying
it: systemd starts the guard again, which finds the restart in its history (the intent
is saved before systemctl runs), counts it against the limits, and does not restart the
agent a second time for the same finding."""

import json
import time

from tests.support import nspawn
from tests.support.scenarios import common as c

pool = c.setup("remediate")
agent0 = nspawn.main_pid(c.AGENT)
guard0 = int(c.guard_health()["MainPID"])
c.delete_pool_and_controller(pool)
requested = c.wait_guard_event("restart-requested", timeout=60)
nspawn.systemctl("kill", "--signal=SIGKILL", c.GUARD)
agent1 = nspawn.wait_for_main_pid_change(c.AGENT, agent0, timeout=40)
c.wait_sim()
guard1 = nspawn.wait_for_main_pid_change(c.GUARD, guard0, timeout=40)
time.sleep(12)  # many evaluation rounds of the guard systemd started again
with open("/var/lib/cloudstack-guard/history.json") as handle:
    history = json.load(handle)
nspawn.write_result("killed_mid_restart", {
    "agent0": agent0, "agent1": agent1, "agent_now": nspawn.main_pid(c.AGENT),
    "guard0": guard0, "guard1": guard1, "guard_now": c.guard_health(),
    "requested": c.guard_events("restart-requested"), "restarts": history["restarts"],
})
