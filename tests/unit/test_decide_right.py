"""One named example per wrong decision the model-based tests and the field found
(the "Decide right" issue), on synthetic snapshots through record + evaluate + decide."""

from __future__ import annotations

from dataclasses import replace

from guard.config import RemediationConfig
from guard.evaluate import evaluate
from guard.model import Incarnation, LogEvent, Pool, Severity
from guard.policy import InFlight, decide
from guard.record import record
from tests.support.snapshots import LIN, T0, URL, agent, kinds, lin_pool, probe, run, snap


def server(step, version="4.19.3.0"):
    return replace(step, management_host=replace(step.management_host, server_version=version))


def test_item2_a_partition_during_the_deletion_voids_the_delete_command_inference():
    """Listed while connected, Disconnected in between (the delete command could not reach
    the host), Up again when the absence is seen: the adaptor still holds the pool."""
    steps = [server(snap(T0 + 10, [lin_pool()])),
             server(snap(T0 + 40, [lin_pool()], host_state="Disconnected")),
             server(snap(T0 + 70, [], probes=probe("refused")))]
    assert kinds(run(steps)[0]) == [("stale-pool", Severity.CRITICAL)]
    reconnect = LogEvent("agent-connected", T0 + 50, "agent.log", 7, detail="Connected to the host")
    logged = [steps[0], server(snap(T0 + 70, [], events=[reconnect], probes=probe("refused")))]
    assert kinds(run(logged)[0]) == [("stale-pool", Severity.CRITICAL)]


def test_item2_a_later_connection_failure_overturns_the_inference():
    failure = LogEvent("storage-failure", T0 + 80, "agent.log", 40, adaptor="LinstorStorageAdaptor",
                       operation="disk-cleanup",
                       exception="javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused")
    steps = [server(snap(T0 + 10, [lin_pool()])), server(snap(T0 + 70, [], probes=probe("refused")))]
    assert run(steps)[0] == []
    later = server(snap(T0 + 90, [], events=[failure], probes=probe("refused")))
    findings = run(steps + [later])[0]
    assert ("stale-pool", Severity.CRITICAL) in kinds(findings)


def test_item3_the_verdict_does_not_flap_when_the_server_version_cannot_be_read():
    steps = [server(snap(T0 + 10, [lin_pool()])), server(snap(T0 + 70, [], probes=probe("refused")))]
    _, history = run(steps)
    blind = server(snap(T0 + 130, [], probes=probe("refused")), "")
    assert evaluate(blind, record(history, blind)) == []
    unfixed = [server(s, "4.19.2.0") for s in steps]
    _, history = run(unfixed)
    blind = server(snap(T0 + 130, [], probes=probe("refused")), "")
    assert kinds(evaluate(blind, record(history, blind))) == [("stale-pool", Severity.CRITICAL)]


def test_item7_no_restart_for_a_stale_pool_while_a_live_pool_of_the_adaptor_is_down():
    """Pool A deleted and re-created as B on the same controller, which then fails: stops
    fail through B whatever a restart clears."""
    b = "99999999-2222-3333-4444-555555555555"
    pool_b = Pool(b, "Linstor", "management", state="Up", url=URL, scope="ZONE")
    down = probe("refused") + ((b, probe("refused")[0][1]),)
    steps = [snap(T0 + 10, [lin_pool(), pool_b]), snap(T0 + 70, [pool_b], probes=down)]
    findings = run(steps)[0]
    stale = next(f for f in findings if f.kind == "stale-pool")
    assert stale.severity is Severity.CRITICAL and not stale.restart_helps
    assert b in stale.action and "fix the backend first" in stale.action
    assert not any(f.restart_helps for f in findings)


def test_item8_a_stale_storpool_pool_is_a_reboot_risk_not_a_stop_risk():
    sp = "tmpl;5a5a5a5a-1111-2222-3333-444444444444"
    pool = Pool(sp, "StorPool", "management", state="Up", scope="ZONE")
    quiet = run([snap(T0 + 10, [pool]), snap(T0 + 70, [])])[0]
    assert kinds(quiet) == [("stale-pool", Severity.WARNING)] and quiet[0].restart_helps
    assert "VM stops are not affected" in quiet[0].action
    beat = LogEvent("heartbeat-failure", T0 + 60, "agent.log", 9, pool_uuid=sp, pool_type="StorPool",
                    detail="storpool -j service list failed; try: 1 of 5.")
    failing = run([snap(T0 + 10, [pool]), snap(T0 + 70, [], events=[beat])])[0]
    assert kinds(failing) == [("stale-pool", Severity.CRITICAL)] and failing[0].restart_helps
    assert "rebooted" in failing[0].action


def test_item8_a_removed_nfs_pool_libvirt_still_has_fails_its_heartbeat():
    nfs = "66666666-7777-8888-9999-000000000000"
    pool = Pool(nfs, "NetworkFilesystem", "management", state="Up", scope="ZONE")
    defined = (Pool(nfs, "NetworkFilesystem", "libvirt", state="running"),)
    beat = LogEvent("heartbeat-failure", T0 + 60, "agent.log", 9, pool_uuid=nfs,
                    pool_type="NetworkFilesystem", detail="kvmheartbeat.sh failed; try: 2 of 5.")
    findings = run([snap(T0 + 10, [pool], libvirt=defined),
                    snap(T0 + 70, [], libvirt=defined, events=[beat])])[0]
    assert ("stale-pool", Severity.CRITICAL) in kinds(findings)
    assert ("orphan-libvirt-pool", Severity.WARNING) in kinds(findings)
    quiet = run([snap(T0 + 10, [pool], libvirt=defined), snap(T0 + 70, [], libvirt=defined)])[0]
    assert kinds(quiet) == [("orphan-libvirt-pool", Severity.WARNING)]


def test_a_clock_step_does_not_make_the_same_jvm_a_new_incarnation():
    ticked = agent()
    ticked = replace(ticked, incarnation=Incarnation(100, T0, start_ticks=4242))
    stepped = replace(ticked, incarnation=Incarnation(100, T0 + 3600, start_ticks=4242))
    steps = [snap(T0 + 10, [lin_pool()], agent_proc=ticked),
             snap(T0 + 70, [], agent_proc=stepped, probes=probe("refused"))]
    assert kinds(run(steps)[0]) == [("stale-pool", Severity.CRITICAL)]


def test_one_listing_that_misses_a_pool_is_reported_but_not_acted_on():
    steps = [snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("refused"))]
    findings, history = run(steps)
    config = RemediationConfig()
    first = decide(findings, "remediate", config, history, T0 + 70, InFlight(), None)
    assert not first.act and first.refused_by.gate == "finding" and "not confirmed" in first.refused_by.reading
    again = snap(T0 + 130, [], probes=probe("refused"))
    history = record(history, again)
    second = decide(evaluate(again, history), "remediate", config, history, T0 + 130, InFlight(), None)
    assert second.act
    back = snap(T0 + 100, [lin_pool()])
    assert record(record(run(steps)[1], back), again).pool(LIN).absence_confirmed is False


def test_a_listing_after_the_clock_was_stepped_back_confirms_the_absence():
    """The second listing confirms, whatever the wall clock read then: a step an hour back
    must not hold the restart off for an hour while the stale pool fails VM stops."""
    steps = [snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("refused"))]
    _, history = run(steps)
    assert not history.pool(LIN).absence_confirmed
    stepped = snap(T0 + 75 - 3600, [], probes=probe("refused"))
    history = record(history, stepped)
    assert history.pool(LIN).absence_confirmed
    decision = decide(evaluate(stepped, history), "remediate", RemediationConfig(), history, stepped.now,
                      InFlight(), None)
    assert decision.act


def test_releases_with_a_fix_on_two_branches():
    from guard.drivers import LINSTOR_DELETE_FIX, has_release

    carrying = [(4, 19, 3, 0), (4, 19, 4), (4, 20, 1, 0), (4, 20, 2), (4, 21, 0, 0), (4, 22)]
    lacking = [(4, 18, 9), (4, 19, 2, 0), (4, 19), (4, 20, 0, 0), (4, 20)]
    assert all(has_release(v, LINSTOR_DELETE_FIX) for v in carrying)
    assert not any(has_release(v, LINSTOR_DELETE_FIX) for v in lacking)


def test_a_pool_that_only_left_the_hosts_scope_was_not_deleted_on_it():
    """Found by the model: with a #10561 server, a pool missing from this host's listing
    was taken as deleted with the delete command delivered. A scope change sends the host
    nothing; the zone's listing still has the pool, so it is still cached here."""
    steps = [server(snap(T0 + 10, [lin_pool()])),
             replace(server(snap(T0 + 70, [], probes=probe("refused"))), management_elsewhere=(LIN,))]
    findings, history = run(steps)
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL)] and findings[0].restart_helps
    assert "outside this host's scope" in history.pool(LIN).removed_via


def test_a_stale_entry_behind_a_healthy_first_pool_does_not_break_stops_yet():
    """LinstorStorageAdaptor asks the first pool of its HashMap: when a live pool whose
    controller answers surely comes first (a lower bucket at every capacity), stops pass
    and the stale entry is a WARNING; when the stale entry comes first, they fail."""
    healthy_first = "00000002-2222-3333-4444-555555555555"
    healthy_after = "0000001a-2222-3333-4444-555555555555"
    for other, expected in ((healthy_first, Severity.WARNING), (healthy_after, Severity.CRITICAL)):
        live = Pool(other, "Linstor", "management", state="Up", url="http://10.0.0.6:3370", scope="ZONE")
        probes = probe("refused") + ((other, probe("healthy")[0][1]),)
        findings = run([snap(T0 + 10, [lin_pool(), live]), snap(T0 + 70, [live], probes=probes)])[0]
        stale = next(f for f in findings if f.kind == "stale-pool")
        assert stale.severity is expected and stale.restart_helps
        asked = [e.fact for e in stale.evidence if "ask" in e.fact]
        assert asked == ([f"VM stops ask pool {other} first (HashMap order of the cached uuids)"]
                         if expected is Severity.WARNING else ["VM stops ask this pool first"])


def test_a_failing_heartbeat_says_how_long_the_host_has():
    sp = "tmpl;5a5a5a5a-1111-2222-3333-444444444444"
    pool = Pool(sp, "StorPool", "management", state="Up", scope="ZONE")
    beat = LogEvent("heartbeat-failure", T0 + 60, "agent.log", 9, pool_uuid=sp, pool_type="StorPool",
                    detail="try 2 of 5: storpool -j service list failed")
    findings = run([snap(T0 + 10, [pool]), snap(T0 + 70, [], events=[beat])])[0]
    assert "3 of 5 tries are left, 10s apart" in findings[0].action and "in about 30s" in findings[0].action
    # A host whose agent.properties sets kvm.heartbeat.update.retry.sleep=2000 has 6 s.
    quick = replace(snap(T0 + 70, [], events=[beat]), heartbeat_retry_s=2.0)
    findings = run([snap(T0 + 10, [pool]), quick])[0]
    assert "3 of 5 tries are left, 2s apart" in findings[0].action and "in about 0s" in findings[0].action
    quick = replace(quick, now=T0 + 61)
    findings = run([snap(T0 + 10, [pool]), quick])[0]
    assert "in about 7s" in findings[0].action, "four sleeps after the second try: due at T0 + 68"
    gave_up = replace(beat, detail="stopping cloudstack-agent: storpool -j service list failed")
    findings = run([snap(T0 + 10, [pool]), snap(T0 + 70, [], events=[gave_up])])[0]
    assert "being rebooted" in findings[0].action
