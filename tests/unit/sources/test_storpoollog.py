"""StorPool's adaptor log: which StorPool pools the running agent was given, read in the
format StorPoolStorageAdaptor.SP_LOG writes, from where the agent started, and on from
where the last read stopped; and what the guard concludes when it knows nothing else."""

from __future__ import annotations

import os

from guard.model import Severity
from guard.sources.storpoollog import StorPoolLog
from tests.support.agent_lines import create, sp_line
from tests.support.emulators.agent_model import STORPOOL
from tests.support.model_world import World
from tests.support.snapshots import OK_SOURCES, T0, kinds, run, snap

SP = "ssd-Template;5f0e8c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER = "hdd;0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def write(path, *lines: str, mode: str = "w") -> None:
    with open(path, mode) as out:
        out.writelines(lines)


def test_pools_given_since_the_agent_started_with_the_template_case_kept(tmp_path):
    log = tmp_path / "storpool-agent.log"
    write(log,
          create(T0 - 7200, OTHER),
          sp_line(T0 - 7100, f"StorPoolStorageAdaptor.getStoragePool: uuid={OTHER}"),
          create(T0 + 5, SP.replace("5f0e8c1a", "5F0E8C1A")),
          sp_line(T0 + 6, f"StorPoolStorageAdaptor.getStoragePool: uuid={SP}"),
          sp_line(T0 + 7, f"StorPoolStorageAdaptor.deleteStoragePool: uuid={SP}"),
          "a line with no stamp at all\n", "\x00\xff binary\n")
    events, status = StorPoolLog(str(log)).read(T0)
    assert status.ok and status.configured and "1 StorPool pool" in status.detail
    assert [(e.kind, e.pool_uuid, e.pool_type) for e in events] == [("pool-add", SP, "StorPool")]
    assert abs(events[0].ts - (T0 + 5)) < 1.0


def test_the_reader_goes_on_from_where_it_stopped_and_starts_over_for_a_new_agent(tmp_path):
    log = tmp_path / "storpool-agent.log"
    filler = [sp_line(T0 - 86400 + n, f"StorPoolStorageAdaptor.getPhysicalDisk: uuid=v{n}, pool={OTHER}")
              for n in range(40000)]
    write(log, *filler, create(T0 - 3600, OTHER), create(T0 + 1, SP))
    reader = StorPoolLog(str(log))
    assert [e.pool_uuid for e in reader.read(T0)[0]] == [SP]
    write(log, create(T0 + 60, OTHER), mode="a")
    assert [e.pool_uuid for e in reader.read(T0)[0]] == [SP, OTHER]
    assert [e.pool_uuid for e in reader.read(T0)[0]] == [SP, OTHER], "counted twice"
    assert [e.pool_uuid for e in reader.read(T0 + 30)[0]] == [OTHER], "a new agent holds only its own"


def test_a_replaced_or_truncated_file_is_read_from_the_start(tmp_path):
    log = tmp_path / "storpool-agent.log"
    write(log, create(T0 + 1, SP))
    reader = StorPoolLog(str(log))
    assert len(reader.read(T0)[0]) == 1
    write(log, create(T0 + 2, OTHER))
    assert [e.pool_uuid for e in reader.read(T0)[0]] == [OTHER]
    os.rename(log, tmp_path / "old")
    write(log, create(T0 + 3, SP))
    assert [e.pool_uuid for e in reader.read(T0)[0]] == [SP]


def test_no_file_is_no_storpool_not_a_failure_and_an_unreadable_one_says_so(tmp_path):
    events, status = StorPoolLog(str(tmp_path / "none.log")).read(T0)
    assert events == [] and status.ok and not status.configured
    events, status = StorPoolLog(str(tmp_path)).read(T0)
    assert events == [] and not status.ok and str(tmp_path) in status.detail


def test_a_runaway_line_is_not_held(tmp_path):
    log = tmp_path / "storpool-agent.log"
    with open(log, "wb") as out:
        out.write(b"x" * (3 * 1024 * 1024) + b"\n")
        out.write(create(T0 + 1, SP).encode())
    assert [e.pool_uuid for e in StorPoolLog(str(log)).read(T0)[0]] == [SP]


def test_a_storpool_pool_the_guard_never_saw_listed_is_found_from_the_adaptor_log(tmp_path):
    """History lost, or the guard installed after the deletion: the server lists nothing,
    the agent log has no INFO line for a StorPool pool, but StorPool's own log shows the
    agent was given it, so the HA monitor heartbeats it (KVMStoragePoolManager)."""
    log = tmp_path / "storpool-agent.log"
    write(log, create(T0 + 5, SP))
    events, status = StorPoolLog(str(log)).read(T0)
    findings, _ = run([snap(T0 + 120, [], events=events, sources=OK_SOURCES + (status,))])
    stale = [f for f in findings if f.pool_uuid == SP]
    assert kinds(stale) == [("stale-pool", Severity.WARNING)] and stale[0].restart_helps
    assert any("storpool-agent.log: StorPoolStorageAdaptor.createStoragePool" in e.fact for e in stale[0].evidence)


def test_model_a_removed_storpool_pool_is_still_found_after_the_history_is_lost():
    """The ground-truth model: StorPool's deletion sends the host nothing, so the HA
    monitor keeps the pool; the guard that lost its history knows it from the adaptor log."""
    world = World()
    uuid = "5f0e8c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
    world.apply("create_pool", uuid, STORPOOL, "sp-api")
    assert world.check() == [] and world.status() == Severity.OK
    world.apply("maintenance", uuid, True)
    world.apply("delete_pool", uuid)
    world.lose_history()
    assert uuid in world.model.stale() and uuid in world.model.agent.ha
    world.check()
    world.check()
    assert [(f.kind, f.pool_uuid, f.severity) for f in world.last_findings] == [
        ("stale-pool", uuid, Severity.WARNING)]


def test_a_pool_resent_at_every_reconnect_is_kept_as_its_first_and_latest_line(tmp_path):
    """The agent re-logs each pool at every reconnect for the life of the JVM: the reader
    keeps what the history needs (since when, and the latest) and stays small."""
    log = tmp_path / "storpool-agent.log"
    write(log, *(create(T0 + n, SP) for n in range(1, 500)), create(T0 + 600, OTHER))
    events, status = StorPoolLog(str(log)).read(T0)
    assert [(e.pool_uuid, round(e.ts - T0)) for e in events] == [(SP, 1), (SP, 499), (OTHER, 600)]
    assert "2 StorPool pool(s)" in status.detail


def test_a_drop_in_the_agent_log_is_not_undone_by_an_older_storpool_line():
    """The two logs are folded in time order: StorPool's create at +5, the agent's
    DeleteStoragePoolCommand for it at +50 (a 4.19 agent drops it from the HA monitor)."""
    from guard.model import LogEvent
    from guard.snapshot import in_time_order

    created = LogEvent("pool-add", T0 + 5, "storpool-agent.log", 0, pool_uuid=SP, pool_type="StorPool",
                       adaptor="StorPoolStorageAdaptor", detail="StorPoolStorageAdaptor.createStoragePool")
    deleted = LogEvent("pool-delete-command", T0 + 50, "agent.log", 7, pool_uuid=SP, pool_type="StorPool")
    started = LogEvent("agent-start", T0 + 1, "agent.log", 1)
    merged = in_time_order((started, deleted), (created,))
    assert merged == (started, created, deleted)
    _, history = run([snap(T0 + 60, [], events=merged)])
    current = history.incarnations[-1]
    assert SP in current.dropped


def test_model_a_removed_storpool_pool_whose_heartbeat_would_fail_is_critical_before_the_first_try():
    """The ground-truth model: with the StorPool API gone (or this host's client down)
    the HA monitor's next round fails for the stale entry, and after its tries reboots
    the host. The probe asks what the heartbeat asks, so the guard says so before any
    `Write heartbeat ... failed` line is written."""
    world = World(mode="observe")
    uuid = "5f0e8c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
    world.apply("create_pool", uuid, STORPOOL, "sp-api")
    world.check()
    world.apply("maintenance", uuid, True)
    world.apply("delete_pool", uuid)
    world.check()
    world.check()
    assert world.status() == Severity.WARNING
    world.apply("set_backend", "sp-api", "down")
    assert world.model.heartbeat_failing(uuid) and not any(e.kind == "heartbeat-failure" for e in world.log)
    world.check()
    [finding] = world.last_findings
    assert (finding.kind, finding.severity, finding.restart_helps) == ("stale-pool", Severity.CRITICAL, True)
    assert "rebooted" in finding.action
    world.apply("set_backend", "sp-api", "up")
    world.model.storpool_client_down = True
    world.check()
    assert [f.severity for f in world.last_findings] == [Severity.CRITICAL], "this host's client down"


def test_reading_on_a_line_stamped_before_the_start_after_a_step_back_is_kept(tmp_path):
    """The daemon read the agent's start before the wall clock was stepped back an hour:
    what the adaptor logs next is stamped before that start, yet comes after the place
    already read, so it was written by the agent that runs now."""
    log = tmp_path / "storpool-agent.log"
    write(log, create(T0 - 7200, OTHER), create(T0 + 5, SP))
    reader = StorPoolLog(str(log))
    assert [e.pool_uuid for e in reader.read(T0)[0]] == [SP]
    write(log, create(T0 + 10 - 3600, OTHER), mode="a")
    assert [e.pool_uuid for e in reader.read(T0)[0]] == [SP, OTHER]
    assert [e.pool_uuid for e in StorPoolLog(str(log)).read(T0)[0]] == [SP], (
        "a fresh read has only the stamps to go by")


def test_lines_that_were_there_before_the_reading_began_go_by_their_stamps_however_far_it_reads(
        tmp_path, monkeypatch):
    """The bisection can land early (a stretch of unstamped junk, a crash's NUL hole): a
    first scan that stops at its byte budget must not let the next reads take an earlier
    agent's pools, further on, as this one's."""
    from guard.sources import storpoollog

    monkeypatch.setattr(storpoollog, "_BLOCK", 4096)
    monkeypatch.setattr(storpoollog, "MAX_SCAN_BYTES", 4096)
    log = tmp_path / "storpool-agent.log"
    junk = "\x00" * 64 + "\n"
    write(log, create(T0 - 7200, OTHER), *([junk] * 4000), create(T0 - 3600, OTHER), create(T0 + 5, SP))
    reader = StorPoolLog(str(log))
    seen = set()
    for _ in range(100):
        seen.update(e.pool_uuid for e in reader.read(T0)[0])
    assert seen == {SP}, seen
    write(log, create(T0 + 10 - 3600, OTHER), mode="a")
    assert {e.pool_uuid for e in reader.read(T0)[0]} == {SP, OTHER}, "appended since: by its place"
