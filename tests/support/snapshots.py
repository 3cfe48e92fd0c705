"""Synthetic snapshots for the pure core's tests: one host, one LINSTOR pool, sources
that answer, and `run` to feed a sequence through record and evaluate."""

from __future__ import annotations

from guard.evaluate import evaluate
from guard.history import History
from guard.model import AgentProcess, Incarnation, ManagementHost, Pool, ProbeResult, Snapshot, SourceStatus
from guard.record import record

LIN = "11111111-2222-3333-4444-555555555555"
NFS = "66666666-7777-8888-9999-000000000000"
URL = "http://10.0.0.5:3370"
T0 = 1_700_000_000.0
OK_SOURCES = (
    SourceStatus("agent-process", True), SourceStatus("libvirt", True),
    SourceStatus("agent-log", True), SourceStatus("management", True),
)


def agent(pid=100, start=T0, connected=True):
    return AgentProcess(Incarnation(pid, start), "java com.cloud.agent.AgentShell", (), connected, "x")


def lin_pool(state="Up"):
    return Pool(LIN, "Linstor", "management", name="lin", state=state, url=URL, scope="ZONE")


def snap(now, pools=(), events=(), probes=(), agent_proc=None, version="4.19.1.2", sources=OK_SOURCES,
         libvirt=(), host_state="Up"):
    return Snapshot(
        now=now, linstor_node="kvm1", agent=agent_proc if agent_proc is not None else agent(),
        agent_version=version, libvirt_pools=tuple(libvirt),
        management_host=ManagementHost("h1", "kvm1", host_state, "c1", "z1"),
        management_pools=tuple(pools), log_events=tuple(events), probes=tuple(probes),
        sources=sources,
    )


def probe(status):
    return ((LIN, ProbeResult("linstor", URL, status, f"{status} detail", 0.01,
                              node_status="ONLINE" if status == "healthy" else "")),)


def run(steps, history=None):
    """Feed snapshots in order; findings of the last one."""
    history = history or History()
    for step in steps:
        history = record(history, step)
    return evaluate(steps[-1], history), history


def kinds(findings):
    return [(f.kind, f.severity) for f in findings]
