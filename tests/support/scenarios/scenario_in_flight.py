"""A restart waits while the agent does storage work, and happens once it ends."""

import time

from tests.support import nspawn
from tests.support.scenarios import common as c

pool = c.setup("remediate")
agent0 = nspawn.main_pid(c.AGENT)
work = c.sim("storage-work", seconds=8)
work_started = time.monotonic()
c.delete_pool_and_controller(pool)
refused = c.wait_guard_event("restart-decision", refused_by="in-flight")
alive_during_work = nspawn.main_pid(c.AGENT)
new_agent = nspawn.wait_for_main_pid_change(c.AGENT, agent0, timeout=40)
restarted_after = time.monotonic() - work_started
nspawn.write_result("in_flight", {
    "work": work, "refused": refused, "agent0": agent0, "alive_during_work": alive_during_work,
    "new_agent": new_agent, "restarted_after": restarted_after,
})
