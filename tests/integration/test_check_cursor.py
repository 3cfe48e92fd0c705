"""`check` reads only what was written since the last reader, `check` or the daemon:
through the CLI on the loopback host, a failure is counted once however many checks see
it, across a rotation, and the daemon's place is where the next check goes on from."""

from __future__ import annotations

import json
import os
import re
import time

from tests.support.agent_lines import LINSTOR_STOP_FAILURE
from tests.support.daemon import RunningDaemon

CHATTER = ("{ts} DEBUG [cloud.agent.Agent] (AgentOutRequest-Handler-1:null) (logid:) "
           "Sending ping: Seq 1-{n}:  {{ Cmd , MgmtId: -1, via: 1, Ver: v1, Flags: 11 }}\n")


def now_stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S,000")


def chatter(lines: int) -> str:
    stamp = now_stamp()
    return "".join(CHATTER.format(ts=stamp, n=n) for n in range(lines))


def log_detail(run) -> str:
    return run.doc["sources"]["agent-log"]["detail"]


def lines_read(run) -> int:
    found = re.search(r"(\d+) lines", log_detail(run))
    assert found, log_detail(run)
    return int(found.group(1))


def failures_counted(run) -> str:
    facts = [e["fact"] for f in run.findings("stop-failure") for e in f["evidence"]]
    found = [re.match(r"(\d+) disk cleanup failure", fact) for fact in facts]
    return ",".join(m.group(1) for m in found if m)


def test_each_check_reads_on_and_counts_a_failure_once(host):
    pool = host.add_linstor_pool()
    host.append_log(chatter(20000))
    first = host.check()
    assert first.returncode == 0, first.stdout + first.stderr
    assert lines_read(first) > 20000

    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    host.append_log(chatter(10) + LINSTOR_STOP_FAILURE.format(ts=now_stamp()))
    second = host.check()
    assert "read on from line" in log_detail(second), log_detail(second)
    assert lines_read(second) < 100
    assert failures_counted(second) == "1", second.doc["findings"]

    third = host.check()
    assert lines_read(third) == 0 and failures_counted(third) == "1"

    os.rename(host.log, str(host.log) + ".1")
    host.append_log(chatter(5) + LINSTOR_STOP_FAILURE.format(ts=now_stamp()))
    fourth = host.check()
    assert "rotated since the last read" in log_detail(fourth), log_detail(fourth)
    assert failures_counted(fourth) == "2", fourth.doc["findings"]
    assert lines_read(fourth) < 100


def test_the_check_goes_on_from_where_the_daemon_stopped(host, tmp_path):
    host.add_linstor_pool()
    daemon = RunningDaemon(host.config, tmp_path)
    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        host.append_log(chatter(5000))
        time.sleep(0.5)
    finally:
        assert daemon.stop() == 0
    host.append_log(chatter(7))
    run = host.check()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "read on from line" in log_detail(run), log_detail(run)
    assert lines_read(run) == 7, log_detail(run)


def test_a_restarted_daemon_goes_on_from_its_place_and_counts_a_failure_once(host, tmp_path):
    pool = host.add_linstor_pool()
    host.mgmt.remove_pool(pool)
    host.linstor.stop()
    first = RunningDaemon(host.config, tmp_path)
    try:
        first.wait_for(lambda: first.notified("READY=1"), what="READY=1")
        host.append_log(chatter(2000) + LINSTOR_STOP_FAILURE.format(ts=now_stamp()))
        seen = first.wait_event("finding", kind="stop-failure", timeout=10)
        assert seen["evidence"].startswith("1 disk cleanup failure"), seen["evidence"]
    finally:
        assert first.stop() == 0
    history = json.loads((host.state_dir / "history.json").read_text())
    assert history["log_cursor"]["offset"] == host.log.stat().st_size
    second = RunningDaemon(host.config, tmp_path)
    try:
        again = second.wait_event("finding", kind="stop-failure", timeout=10)
        assert again["evidence"].startswith("1 disk cleanup failure"), again["evidence"]
    finally:
        assert second.stop() == 0
