"""The race with the KVM HA monitor, under systemd. A LINSTOR pool the agent holds but the
management server never listed (deleted before the guard saw it) starts failing its
heartbeat; the monitor tries 3 times, 5 s apart (kvm.heartbeat.update.max.tries and
.retry.sleep in agent.properties, read by the agent and the guard alike; the defaults
are 5 and 10 s), then reboots the host. With a maintenance window closed, the guard must
say how many tries are left and how long the host has before the reboot; with none, it
must restart the agent after the first failed try and before the last."""

import json
import os
import time

from tests.support import nspawn
from tests.support.scenarios import common as c

TRIES, RETRY_SLEEP = 3, 5.0
HA_PROPS = (f"kvm.heartbeat.update.frequency=5000\nkvm.heartbeat.update.max.tries={TRIES}\n"
            f"kvm.heartbeat.update.retry.sleep={int(RETRY_SLEEP * 1000)}\n")
MARKER = c.CONTROL + ".rebooted"
FIRST = "0c3d5e7f-1111-4222-8333-944455556601"
SECOND = "0c3d5e7f-1111-4222-8333-944455556602"


def closed_window() -> str:
    later = time.localtime(time.time() + 2 * 3600)
    return f'windows = ["{later.tm_hour:02d}:00-{later.tm_hour:02d}:59"]\n'


def fail_heartbeat(uuid: str) -> float:
    """Cache the pool in the agent only, make its heartbeat fail, and return when the
    monitor logged its first failed try."""
    assert c.sim("add-pool", uuid=uuid, type="Linstor", url=c.LINSTOR_URL)["ok"]
    assert c.sim("heartbeat", uuid=uuid, reason="drbdsetup events2 --now failed")["ok"]
    needle = f"Write heartbeat for pool [{uuid}] failed: drbdsetup events2 --now failed; try: 1 of {TRIES}."

    def logged() -> str:
        with open(c.AGENT_LOG) as handle:
            return next((line for line in handle if needle in line), "")
    line = nspawn.wait_for(logged, 30, interval=0.05, what="the first failed heartbeat try")
    stamp, millis = line[:23].split(",")  # log4j's own time of the line, local
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


c.setup("remediate", closed_window(), agent_props=HA_PROPS)
agent0 = nspawn.main_pid(c.AGENT)
first_try = fail_heartbeat(FIRST)
told = c.wait_guard_event("finding", kind="stale-pool", pool=FIRST, timeout=40)
refused = c.wait_guard_event("restart-decision", act="False", timeout=40)
nspawn.wait_for(lambda: os.path.exists(MARKER), TRIES * RETRY_SLEEP + 20, what="the reboot")
with open(MARKER) as handle:
    rebooted = json.load(handle)
windowed = {"told": told, "refused": refused, "rebooted": rebooted, "first_try": first_try,
            "agent_kept": nspawn.main_pid(c.AGENT) == agent0}

# The reboot, as far as the agent goes: a new JVM with empty caches.
os.unlink(MARKER)
nspawn.systemctl("restart", c.AGENT)
c.wait_sim()
agent1 = nspawn.main_pid(c.AGENT)
c.wait_guard_event("finding-cleared", kind="stale-pool", pool=FIRST)
c.write_guard_config(c.guard_config("remediate"))
nspawn.systemctl("reload", c.GUARD)
windowed["agent_after_reload"] = nspawn.main_pid(c.AGENT) == agent1
first_try = fail_heartbeat(SECOND)
agent2 = nspawn.wait_for_main_pid_change(c.AGENT, agent1, timeout=TRIES * RETRY_SLEEP)
restarted = time.time()
reboot_due = first_try + TRIES * RETRY_SLEEP
time.sleep(max(0.0, reboot_due + 5 - time.time()))
raced = {"first_try": first_try, "restarted": restarted, "reboot_due": reboot_due,
         "margin_s": reboot_due - restarted, "rebooted": os.path.exists(MARKER),
         "agent1": agent1, "agent2": agent2,
         "decision": c.wait_guard_event("restart-decision", act="True")}

nspawn.write_result("ha_race", {"windowed": windowed, "raced": raced})
