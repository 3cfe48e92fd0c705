"""A restart that does not clear the finding opens the circuit breaker: after it, no more
restarts. The agent here re-adds the deleted pool at every start (a buggy agent that
persisted its cache), which its DEBUG log shows."""

import threading
import time

from tests.support import nspawn
from tests.support.scenarios import common as c

pool = c.setup("remediate", extra="")
agent0 = nspawn.main_pid(c.AGENT)
stop = threading.Event()
restarts = []


def readd(pid: int) -> None:
    restarts.append(pid)
    try:
        c.wait_sim()
        c.sim("add-pool", uuid=pool, type="Linstor", url=c.LINSTOR_URL)
    except Exception:  # noqa: BLE001, S110 - the next restart retries
        pass


thread = c.on_each_new_agent(agent0, stop, readd)
c.delete_pool_and_controller(pool)
breaker = c.wait_guard_event("circuit-breaker", timeout=60, open="True")
time.sleep(10)
stop.set()
thread.join(5)
nspawn.write_result("breaker", {
    "breaker": breaker, "agent_restarts": restarts,
    "requested": c.guard_events("restart-requested"), "decisions": c.guard_events("restart-decision"),
    "guard": c.guard_health(),
})
