"""The agent restarting in a loop under Restart=always while the guard verifies its
restart: each new JVM connects and dies a second later. The verification must fail
cleanly (it never sees one process stay) and open the circuit breaker, so the guard stops
restarting an agent it cannot help."""

import threading
import time

from tests.support import nspawn
from tests.support.scenarios import common as c

pool = c.setup("remediate")
c.write_guard_config(c.guard_config("remediate").replace('verify_deadline = "30s"', 'verify_deadline = "10s"'))
nspawn.systemctl("reload", c.GUARD)
agent0 = nspawn.main_pid(c.AGENT)
stop = threading.Event()
killed = []


def crash(pid: int) -> None:
    time.sleep(1.0)
    nspawn.systemctl("kill", "--signal=SIGKILL", c.AGENT, check=False)
    killed.append(pid)


thread = c.on_each_new_agent(agent0, stop, crash)
c.delete_pool_and_controller(pool)
result = c.wait_guard_event("restart-result", timeout=60)
breaker = c.wait_guard_event("circuit-breaker", timeout=20, open="True")
stop.set()
thread.join(5)
time.sleep(3)
nspawn.write_result("agent_loop", {
    "result": result, "breaker": breaker, "killed": killed,
    "requested": c.guard_events("restart-requested"), "guard": c.guard_health(),
})
