"""Every change to the history, pure: a snapshot folded in, a restart recorded, the
breaker, and the merge with what another writer (the daemon, `check`, an operator's
`restart-agent`) saved meanwhile, which must never forget a restart the rate limits count."""

from __future__ import annotations

from dataclasses import replace

from guard.history import History, RestartRecord
from guard.model import LogCursor, LogEvent
from guard.record import KEEP_RESTARTS, close_breaker, merge, open_breaker, record, record_restart
from tests.support.snapshots import LIN, T0, agent, lin_pool, run, snap


def test_record_is_idempotent():
    step = snap(T0 + 10, [lin_pool()])
    once = record(History(), step)
    assert record(once, step) == once


def test_history_forgets_log_only_pools_the_agent_no_longer_holds():
    mounts = [LogEvent("pool-add", T0 + 5 + i, "agent.log", i, pool_uuid=f"{i:08d}-0000-4000-8000-000000000000",
                       pool_type="NetworkFilesystem") for i in range(50)]
    _, history = run([snap(T0 + 100, [lin_pool()], events=mounts)])
    assert len(history.pools) == 51
    restarted = snap(T0 + 500, [lin_pool()], agent_proc=agent(pid=2, start=T0 + 400))
    history = record(history, restarted)
    assert [p.uuid for p in history.pools] == [LIN]


def restart(at: float, outcome: str = "verified") -> RestartRecord:
    return RestartRecord(at, "stale-pool", 1, outcome=outcome)


def test_a_restart_judged_later_replaces_its_own_record_and_the_oldest_are_let_go():
    history = record_restart(History(), restart(T0))
    judged = record_restart(history, restart(T0, "helped"))
    assert [(r.at, r.outcome) for r in judged.restarts] == [(T0, "helped")]
    many = History()
    for i in range(KEEP_RESTARTS + 5):
        many = record_restart(many, restart(T0 + i))
    assert len(many.restarts) == KEEP_RESTARTS and many.restarts[0].at == T0 + 5


def test_merge_keeps_every_restart_either_writer_recorded():
    base = record_restart(History(), restart(T0))
    disk = record_restart(base, restart(T0 + 10))          # the daemon restarted meanwhile
    mine = record_restart(base, restart(T0, "helped"))     # `check` judged the first one
    merged = merge(disk, mine, base)
    assert [(r.at, r.outcome) for r in merged.restarts] == [(T0, "helped"), (T0 + 10, "verified")]


def test_merge_takes_the_breaker_from_whoever_changed_it():
    base = History()
    opened = open_breaker(base, T0, "restart did not clear stale-pool")
    assert merge(opened, base, base).breaker_open_since == T0          # the other writer opened it
    assert merge(base, opened, base).breaker_reason.startswith("restart")  # we opened it
    closed_by_operator = close_breaker(opened)
    assert merge(closed_by_operator, opened, opened).breaker_open_since is None


def test_merge_keeps_the_agent_log_cursor_that_read_further_in_the_same_file():
    daemons = LogCursor("/log", 1, 7, 9000, 90, "h", "{}", 0.0)
    checks = replace(daemons, offset=4000, line=40)
    rotated = replace(checks, inode=8)
    base = History()
    assert merge(History(log_cursor=daemons), History(log_cursor=checks), base).log_cursor == daemons
    assert merge(History(log_cursor=checks), History(log_cursor=daemons), base).log_cursor == daemons
    assert merge(History(log_cursor=daemons), History(log_cursor=rotated), base).log_cursor == rotated
    assert merge(History(log_cursor=daemons), History(), base).log_cursor == daemons
