"""One named example per wrong decision the model-based tests and the field found
(the "Decide right" issue), on synthetic snapshots through record + evaluate + decide."""

from __future__ import annotations

from dataclasses import replace

from guard.config import RemediationConfig
from guard.evaluate import evaluate
from guard.model import Incarnation, LogEvent, Pool, Severity
from guard.policy import InFlight, busy_peer, decide
from guard.record import record
from tests.harness.snapshots import LIN, T0, URL, agent, kinds, lin_pool, probe, run, snap


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
    first = decide(findings, "remediate", config, history, T0 + 70, InFlight(), None, T0)
    assert not first.act and first.refused_by.gate == "finding" and "not confirmed" in first.refused_by.reading
    again = snap(T0 + 130, [], probes=probe("refused"))
    history = record(history, again)
    second = decide(evaluate(again, history), "remediate", config, history, T0 + 130, InFlight(), None, T0)
    assert second.act
    back = snap(T0 + 100, [lin_pool()])
    assert record(record(run(steps)[1], back), again).pool(LIN).absence_confirmed is False


def test_a_busy_peer_is_forgotten_after_a_round_of_slots():
    from guard.model import ManagementHost
    from guard.policy import ClusterView

    hosts = tuple(ManagementHost(f"h{n}", f"h{n}", "Up", "c1") for n in range(4))
    busy = ClusterView("h0", (replace(hosts[0]),) + (replace(hosts[1], state="Disconnected"),) + hosts[2:])
    calm = ClusterView("h0", hosts)
    seen = busy_peer((0.0, ""), busy, T0, 30.0)
    assert seen == (T0, "h1")
    assert busy_peer(seen, calm, T0 + 60, 30.0) == seen
    assert busy_peer(seen, calm, T0 + 30.0 * 5 + 1, 30.0) == (0.0, "")
