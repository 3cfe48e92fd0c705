"""The evidence model's rules, on synthetic snapshots (record + evaluate are pure)."""

from __future__ import annotations

from dataclasses import replace

from guard.evaluate import evaluate, overall
from guard.history import History
from guard.model import (
    LogEvent,
    Pool,
    Severity,
    SourceStatus,
)
from guard.record import record
from tests.support.snapshots import LIN, NFS, OK_SOURCES, T0, URL, agent, kinds, lin_pool, probe, run, snap


def test_held_then_removed_with_controller_answering_is_warning():
    findings, _ = run([snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("healthy"))])
    assert kinds(findings) == [("stale-pool", Severity.WARNING)]
    assert findings[0].pool_uuid == LIN and findings[0].restart_helps
    assert findings[0].backend == URL


def test_stale_pool_with_refusing_controller_is_critical():
    findings, _ = run([snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("refused"))])
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL)]
    assert any("refused" in e.fact for e in findings[0].evidence)


def test_restart_after_removal_clears_it():
    steps = [snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("refused"))]
    _, history = run(steps)
    restarted = snap(T0 + 200, [], agent_proc=agent(pid=200, start=T0 + 150))
    assert evaluate(restarted, record(history, restarted)) == []


def test_removal_seen_before_incarnation_start_does_not_count():
    """Removed while the old agent ran; the guard looks again after a restart: the new
    incarnation never held it, whatever the old one did."""
    _, history = run([snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("refused"))])
    later = snap(T0 + 500, [], agent_proc=agent(pid=300, start=T0 + 400), probes=probe("refused"))
    history = record(history, later)
    assert evaluate(later, history) == []
    assert history.incarnation(later.agent.incarnation.key).holds(LIN) is None


def test_delete_command_in_log_means_dropped():
    delete = LogEvent("pool-delete-command", T0 + 60, "agent.log", 9, pool_uuid=LIN, pool_type="Linstor")
    findings, _ = run([snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], events=[delete], probes=probe("refused"))])
    assert findings == []


def test_maintenance_drops_a_pool_only_where_the_adaptor_lets_go():
    """This test used to assert that maintenance on a 4.21 agent drops every pool. It does
    not: add=false reaches the adaptor's deleteStoragePool(uuid, details), a no-op in
    LinstorStorageAdaptor (KVMStoragePoolManager.java, StorageAdaptor.java), so the LINSTOR
    map keeps the pool and every VM stop fails once its controller goes. Only
    ScaleIOStorageAdaptor (PowerFlex) and libvirt-backed pools really let go."""
    old = [snap(T0 + 10, [lin_pool()]), snap(T0 + 20, [lin_pool("Maintenance")]),
           snap(T0 + 70, [], probes=probe("refused"))]
    assert kinds(run(old)[0]) == [("stale-pool", Severity.CRITICAL)]
    new = [replace(s, agent_version="4.21.0.0") for s in old]
    findings = run(new)[0]
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL)] and findings[0].restart_helps

    def flex(state="Up"):
        return Pool(LIN, "PowerFlex", "management", name="flex", state=state, scope="ZONE")

    flex_steps = [snap(T0 + 10, [flex()]), snap(T0 + 20, [flex("Maintenance")]), snap(T0 + 70, [])]
    assert kinds(run(flex_steps)[0]) == [("stale-pool", Severity.WARNING)]
    assert not run(flex_steps)[0][0].restart_helps
    assert run([replace(s, agent_version="4.21.0.0") for s in flex_steps])[0] == []


def test_live_pool_with_backend_down_is_outage_not_stale():
    findings, _ = run([snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [lin_pool()], probes=probe("timeout"))])
    assert kinds(findings) == [("backend-unreachable", Severity.CRITICAL)]
    assert not findings[0].restart_helps
    assert "will not help" in findings[0].action


def test_nfs_mount_never_listed_is_not_removed():
    """Secondary storage mounts look like NFS pools in the log; absence proves nothing."""
    add = LogEvent("pool-add", T0 + 5, "agent.log", 3, pool_uuid=NFS, pool_type="NetworkFilesystem")
    findings, history = run([snap(T0 + 10, [lin_pool()], events=[add])])
    assert findings == [] and history.pool(NFS).removed_at is None


def test_linstor_pool_from_log_not_listed_is_stale():
    add = LogEvent("pool-add", T0 + 5, "agent.log", 3, pool_uuid=LIN, pool_type="Linstor", url=URL)
    findings, _ = run([snap(T0 + 10, [], events=[add], probes=probe("refused"))])
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL)]




def test_stop_failure_caused_by_stale_pool():
    failure = LogEvent("storage-failure", T0 + 65, "agent.log", 40, adaptor="LinstorStorageAdaptor",
                       exception="javax.ws.rs.ProcessingException: java.net.ConnectException",
                       operation="disk-cleanup")
    findings, _ = run([snap(T0 + 10, [lin_pool()]),
                       snap(T0 + 70, [], events=[failure], probes=probe("refused"))])
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL), ("stop-failure", Severity.CRITICAL)]
    assert findings[1].restart_helps and findings[1].pool_uuid == LIN


def test_pool_create_failure_is_not_a_stop_failure():
    failure = LogEvent("storage-failure", T0 + 65, "agent.log", 40, adaptor="LibvirtStorageAdaptor",
                       exception="CloudRuntimeException: Failed to create storage pool", operation="pool-create")
    assert run([snap(T0 + 70, [lin_pool()], events=[failure])])[0] == []


def test_unavailable_source_is_unknown_unless_other_evidence_decides():
    sources = OK_SOURCES[:1] + (SourceStatus("libvirt", False, "connection refused"),) + OK_SOURCES[2:]
    quiet = run([snap(T0 + 10, [lin_pool()], sources=sources)])[0]
    assert kinds(quiet) == [("source-unavailable", Severity.UNKNOWN)]
    assert overall(quiet) is Severity.UNKNOWN
    loud = run([snap(T0 + 10, [lin_pool()], sources=sources),
                snap(T0 + 70, [], sources=sources, probes=probe("refused"))])[0]
    assert overall(loud) is Severity.CRITICAL
    assert {f.kind for f in loud} == {"stale-pool", "source-unavailable"}


def test_orphan_libvirt_pool_after_removal():
    nfs = Pool(NFS, "NetworkFilesystem", "management", state="Up", scope="CLUSTER")
    in_libvirt = Pool(NFS, "NetworkFilesystem", "libvirt", state="running")
    findings, _ = run([snap(T0 + 10, [nfs], libvirt=[in_libvirt]), snap(T0 + 70, [], libvirt=[in_libvirt])])
    assert kinds(findings) == [("orphan-libvirt-pool", Severity.WARNING)]
    assert "never deletes" in findings[0].action


def test_inactive_pool_listed_up_is_critical():
    nfs = Pool(NFS, "NetworkFilesystem", "management", state="Up", scope="CLUSTER")
    inactive = Pool(NFS, "NetworkFilesystem", "libvirt", state="inactive")
    findings, _ = run([snap(T0 + 10, [nfs], libvirt=[inactive])])
    assert kinds(findings) == [("pool-inactive", Severity.CRITICAL)]


def test_agent_down_and_disconnected():
    down = replace(snap(T0 + 10), agent=None)
    assert kinds(evaluate(down, History())) == [("agent-down", Severity.CRITICAL)]
    young = snap(T0 + 10, agent_proc=agent(connected=False))
    assert kinds(evaluate(young, History())) == [("agent-disconnected", Severity.WARNING)]
    old = snap(T0 + 1000, agent_proc=agent(connected=False))
    assert kinds(evaluate(old, History())) == [("agent-disconnected", Severity.CRITICAL)]


def test_heartbeat_failure_on_stale_pool_is_critical_even_if_controller_answers():
    beat = LogEvent("heartbeat-failure", T0 + 75, "agent.log", 50, pool_uuid=LIN,
                    detail="drbdsetup: command not found; try: 1 of 5.")
    findings, _ = run([snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("healthy")),
                       snap(T0 + 80, [], events=[beat], probes=probe("healthy"))])
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL)]
    assert "reboot" in findings[0].action and "drbdsetup" in findings[0].action




# ---- review findings: each of these paged someone for nothing, or missed a real case ----

def failure(ts, exception="javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused"):
    return LogEvent("storage-failure", ts, "agent.log", 40, adaptor="LinstorStorageAdaptor",
                    exception=exception, operation="disk-cleanup")


def test_old_stop_failure_is_not_blamed_on_a_later_removal():
    findings, _ = run([snap(T0 + 10, [lin_pool()], events=[failure(T0 + 5)]),
                       snap(T0 + 5000, [], events=[failure(T0 + 5)], probes=probe("healthy"))])
    assert kinds(findings) == [("stale-pool", Severity.WARNING)]


def test_stop_failure_takes_its_causes_severity():
    findings, _ = run([snap(T0 + 10, [lin_pool()]),
                       snap(T0 + 70, [], events=[failure(T0 + 40)], probes=probe("refused"))])
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL), ("stop-failure", Severity.CRITICAL)]
    assert findings[1].pool_uuid == LIN and findings[1].restart_helps


def test_a_refusal_is_not_blamed_on_a_stale_pool_whose_controller_answers():
    """It used to be (WARNING, "caused by a stale pool"): a controller that answers did not
    refuse the call. The adaptor asked some other cached pool, one the guard never saw
    listed: CRITICAL, and the restart clears that one too."""
    findings, _ = run([snap(T0 + 10, [lin_pool()]),
                       snap(T0 + 70, [], events=[failure(T0 + 40)], probes=probe("healthy"))])
    assert kinds(findings) == [("stop-failure", Severity.CRITICAL), ("stale-pool", Severity.WARNING)]
    assert findings[0].pool_uuid == "" and findings[0].restart_helps


def test_a_refusal_while_every_listed_linstor_pool_answers_comes_from_a_stale_entry():
    """Installed after the deletion, or with the history moved aside: the adaptor reaches a
    controller only through a pool it caches (LinstorStorageAdaptor.java), so a refusal
    while every listed LINSTOR controller answers is a stale entry's. It used to be
    WARNING "the backend answers again" with restart_helps=False."""
    findings, _ = run([snap(T0 + 70, [lin_pool()], events=[failure(T0 + 60)], probes=probe("healthy"))])
    assert kinds(findings) == [("stop-failure", Severity.CRITICAL)] and findings[0].restart_helps
    assert "caches" in findings[0].action


def test_a_refusal_near_a_live_pools_outage_is_that_outage():
    """The listed pool's controller was probed down just before the failure and answers
    now: the failure was the outage's, and a restart would not have helped."""
    findings, _ = run([snap(T0 + 50, [lin_pool()], probes=probe("refused")),
                       snap(T0 + 70, [lin_pool()], events=[failure(T0 + 60)], probes=probe("healthy"))])
    assert kinds(findings) == [("stop-failure", Severity.WARNING)]
    assert "answers again" in findings[0].action and not findings[0].restart_helps


def test_probe_rejected_by_http_error_is_not_an_outage():
    stale_case, _ = run([snap(T0 + 10, [lin_pool()]), snap(T0 + 70, [], probes=probe("http-error"))])
    assert kinds(stale_case) == [("stale-pool", Severity.WARNING)]
    assert "auth_json" in stale_case[0].action
    live_case, _ = run([snap(T0 + 10, [lin_pool()], probes=probe("bad-answer"))])
    assert kinds(live_case) == [("backend-unreachable", Severity.WARNING)]


def test_heartbeat_before_the_removal_does_not_count():
    beat = LogEvent("heartbeat-failure", T0 + 20, "agent.log", 50, pool_uuid=LIN, detail="x; try: 1 of 5.")
    findings, _ = run([snap(T0 + 30, [lin_pool()], events=[beat]),
                       snap(T0 + 70, [], events=[beat], probes=probe("healthy"))])
    assert kinds(findings) == [("stale-pool", Severity.WARNING)]


def test_maintenance_on_an_old_agent_is_stale_and_a_restart_helps():
    findings, _ = run([snap(T0 + 10, [lin_pool()]),
                       snap(T0 + 70, [lin_pool("Maintenance")], probes=probe("refused"))])
    assert kinds(findings) == [("stale-pool", Severity.CRITICAL)]
    assert findings[0].restart_helps and any("Maintenance" in e.fact for e in findings[0].evidence)


def test_heartbeat_is_enough_evidence_of_a_held_pool():
    """Installed after the deletion, agent at INFO: the HA monitor's warnings are all there is."""
    beat = LogEvent("heartbeat-failure", T0 + 80, "agent.log", 50, pool_uuid=LIN,
                    detail="drbdsetup failed; try: 2 of 5.")
    findings, _ = run([snap(T0 + 70, [], events=[beat]), snap(T0 + 90, [], events=[beat])])
    assert [f.kind for f in findings] == ["stale-pool"] and findings[0].severity is Severity.CRITICAL


def test_maintenance_while_the_host_was_away_is_not_credited():
    """add=false is sent only to hosts that are Up: one that was Disconnected keeps the pool."""
    steps = [snap(T0 + 10, [lin_pool()], version="4.21.0.0"),
             snap(T0 + 40, [lin_pool("Maintenance")], version="4.21.0.0", host_state="Disconnected"),
             snap(T0 + 50, [lin_pool("Maintenance")], version="4.21.0.0"),
             snap(T0 + 70, [], probes=probe("refused"), version="4.21.0.0")]
    assert kinds(run(steps)[0]) == [("stale-pool", Severity.CRITICAL)]


def test_fixed_management_server_deletes_from_connected_hosts():
    def server(step, version):
        return replace(step, management_host=replace(step.management_host, server_version=version))

    steps = [server(snap(T0 + 10, [lin_pool()]), "4.19.3.0"),
             server(snap(T0 + 70, [], probes=probe("refused")), "4.19.3.0")]
    assert run(steps)[0] == []
    unfixed = [server(s, "4.19.2.0") for s in steps]
    assert kinds(run(unfixed)[0]) == [("stale-pool", Severity.CRITICAL)]
    away = [steps[0], replace(steps[1], agent=agent(connected=False))]
    assert ("stale-pool", Severity.CRITICAL) in kinds(run(away)[0])
    foreign = LogEvent("linstor-foreign-path", T0 + 80, "agent.log", 60, detail="/dev/drbd1001")
    still = [steps[0], steps[1], replace(steps[1], now=T0 + 90, log_events=(foreign,))]
    assert kinds(run(still)[0]) == [("stale-pool", Severity.CRITICAL)]


def test_agent_in_its_restart_gap_is_a_warning():
    gap = replace(snap(T0 + 10), agent=None, agent_unit_state="activating/auto-restart")
    assert kinds(evaluate(gap, History())) == [("agent-down", Severity.WARNING)]
    stopped = replace(snap(T0 + 10), agent=None, agent_unit_state="inactive/dead")
    assert kinds(evaluate(stopped, History())) == [("agent-down", Severity.CRITICAL)]


def test_an_agent_that_is_not_installed_is_not_told_to_start():
    """A fresh host with the guard but no cloudstack-agent: `systemctl start` would only
    fail with 'Unit not found'."""
    absent = replace(snap(T0 + 10), agent=None, agent_unit_state="not-found")
    findings = evaluate(absent, History())
    assert kinds(findings) == [("agent-down", Severity.CRITICAL)]
    assert "not installed" in findings[0].action and "systemctl start" not in findings[0].action
    assert any("not installed" in e.fact for e in findings[0].evidence)
