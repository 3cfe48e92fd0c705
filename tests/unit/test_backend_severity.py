"""What each backend's probe changes in the verdict (issue: every plugin backend): a
stale StorPool pool is a reboot risk exactly when what its heartbeat checks fails; a
stale entry whose adaptor never reaches its backend is never CRITICAL nor a reason to
restart; a live pool whose backend is down says what fails next on this host."""

from __future__ import annotations

from guard.model import LogEvent, Pool, ProbeResult, Severity
from tests.support.snapshots import T0, kinds, run, snap

SP = "ssd;5f0e8c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
PF = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
NFS = "66666666-7777-8888-9999-000000000000"
RBD = "77777777-8888-4999-8000-111111111111"


def sp_probe(status: str, uuid: str = SP) -> tuple[str, ProbeResult]:
    return (uuid, ProbeResult("storpool", "storpool:", status, f"{status}: client 7 is down",
                              local_ok=status == "healthy"))


def added(uuid: str, pool_type: str) -> LogEvent:
    return LogEvent("pool-add", T0 + 5, "agent.log", 3, pool_uuid=uuid, pool_type=pool_type)


def stale(uuid: str, pool_type: str, probes=()):
    """Listed while the agent holds it, then removed: the agent keeps it."""
    listed = Pool(uuid, pool_type, "management", state="Up", scope="CLUSTER")
    steps = [snap(T0 + 10, [listed], events=[added(uuid, pool_type)]),
             snap(T0 + 70, [], events=[added(uuid, pool_type)]),
             snap(T0 + 130, [], events=[added(uuid, pool_type)], probes=probes)]
    findings, _ = run(steps)
    return [f for f in findings if f.kind == "stale-pool"]


def test_a_stale_storpool_pool_is_critical_when_what_its_heartbeat_checks_fails():
    [down] = stale(SP, "StorPool", probes=[sp_probe("refused")])
    assert down.severity == Severity.CRITICAL and down.restart_helps
    assert "rebooted" in down.action and "VM stops are not affected" in down.action
    [up] = stale(SP, "StorPool", probes=[sp_probe("healthy")])
    assert up.severity == Severity.WARNING and up.restart_helps
    assert "VM stops are not affected" in up.action


def test_a_stale_entry_whose_adaptor_never_reaches_its_backend_is_no_reason_to_restart():
    for uuid, pool_type, backend in ((PF, "PowerFlex", "powerflex"), (RBD, "RBD", "rbd"),
                                     ("88888888-9999-4aaa-8bbb-cccccccccccc", "Iscsi", "iscsi")):
        probes = [(uuid, ProbeResult(backend, "x://h/p", "refused", "refused"))]
        [finding] = stale(uuid, pool_type, probes=probes)
        assert finding.severity == Severity.WARNING and not finding.restart_helps, finding
        assert "no VM stop depends on it" in finding.action


def live(uuid: str, pool_type: str, result: ProbeResult):
    pool = Pool(uuid, pool_type, "management", state="Up", scope="CLUSTER")
    findings, _ = run([snap(T0 + 10, [pool]), snap(T0 + 70, [pool], probes=[(uuid, result)])])
    return findings


def test_a_live_pool_whose_backend_is_down_says_what_fails_next_and_that_a_restart_does_not_help():
    [nfs] = live(NFS, "NetworkFilesystem", ProbeResult("nfs", "nfs://h/x", "timeout", "no answer"))
    assert (nfs.kind, nfs.severity, nfs.restart_helps) == ("backend-unreachable", Severity.CRITICAL, False)
    assert "VM starts" in nfs.action and "kvmheartbeat.sh" in nfs.action and "reboot" in nfs.action
    assert "will not help" in nfs.action
    [ceph] = live(RBD, "RBD", ProbeResult("rbd", "rbd://m1,m2,m3/p", "refused", "1 of 3 answer"))
    assert ceph.severity == Severity.CRITICAL and "heartbeat" not in ceph.action, ceph.action


def test_a_powerflex_gateway_down_with_this_hosts_sdc_up_is_a_warning():
    gateway_only = ProbeResult("powerflex", "powerflex://gw/p", "tls", "self-signed", local_ok=True)
    [warning] = live(PF, "PowerFlex", gateway_only)
    assert warning.severity == Severity.WARNING and "[powerflex] ca" in warning.action
    sdc_down = ProbeResult("powerflex", "powerflex://gw/p", "refused", "no drv_cfg", local_ok=False)
    assert kinds(live(PF, "PowerFlex", sdc_down)) == [("backend-unreachable", Severity.CRITICAL)]
