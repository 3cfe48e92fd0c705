"""The bug reproduced and fixed under systemd: observe mode reports and never restarts;
a broken config on reload is refused; remediate mode restarts the agent through systemd
and VM stops work again."""

import time

from tests.support import nspawn
from tests.support.scenarios import common as c

pool = c.setup("observe")
guard0 = c.guard_health()
agent0 = nspawn.main_pid(c.AGENT)

c.delete_pool_and_controller(pool)
critical = c.wait_guard_event("finding", kind="stale-pool", severity="CRITICAL")
failed_stop = c.stop_vm()
time.sleep(3)
observe_agent = nspawn.main_pid(c.AGENT)

c.write_guard_config(c.guard_config("remediate") + "[linstor]\nbroken = 1\n")
reload = nspawn.systemctl("reload", c.GUARD, check=False)
said = nspawn.wait_for(lambda: [m for m in nspawn.messages(c.GUARD) if "config refused" in m], 10,
                       interval=0.2, what="check-config's refusal in the journal")
refused = {"returncode": reload.returncode, "journal": " | ".join(said),
           "guard_events": c.guard_events("reload-refused")}
after_refused = c.guard_health()

c.write_guard_config(c.guard_config("remediate"))
reload_at = time.monotonic()
nspawn.systemctl("reload", c.GUARD)
new_agent = nspawn.wait_for_main_pid_change(c.AGENT, agent0, timeout=40)
changed_at = time.monotonic()
c.wait_sim()
fixed_stop = c.stop_vm()
decision = c.wait_guard_event("restart-decision", act="True")
result = c.wait_guard_event("restart-result")
time.sleep(1)
guard1 = c.guard_health()

nspawn.write_result("bug_and_fix", {
    "critical": critical, "failed_stop": failed_stop, "agent0": agent0, "observe_agent": observe_agent,
    "refused": refused, "after_refused": after_refused, "guard0": guard0, "guard1": guard1,
    "new_agent": new_agent, "fixed_stop": fixed_stop, "decision": decision, "result": result,
    "seconds_to_restart": changed_at - reload_at,
    "restart_requested": c.guard_events("restart-requested"),
})
