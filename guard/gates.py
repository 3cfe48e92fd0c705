"""The restart gates' readings that need I/O, read by one function for the daemon and
for `restart-agent`: is the judged agent still the one running, what a restart would
abort (its storage children, libvirt domain jobs), and the cluster's hosts. Read fresh
just before deciding: a copy started a moment ago, or a peer that just went down, must
count. Deciding on them is guard.policy's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from guard.config import Config
from guard.deadline import run_bounded
from guard.model import AgentProcess, ManagementHost
from guard.policy import ClusterView, InFlight
from guard.sources.agent import inspect_agent
from guard.sources.agentconf import AgentProperties, read_agent_properties
from guard.sources.libvirt import quiet_libvirt
from guard.sources.management import ManagementError, read_cluster_hosts


@dataclass(frozen=True)
class Gates:
    """`agent` is the judged agent as it is now; `agent_gone` says the JVM judged has
    exited (its caches with it), so the findings no longer describe the running agent."""

    agent: Optional[AgentProcess]
    agent_gone: bool
    in_flight: InFlight
    cluster: Optional[ClusterView]
    cluster_problem: str


def read_gates(config: Config, agent: Optional[AgentProcess], host: Optional[ManagementHost],
               props: Optional[AgentProperties] = None) -> Gates:
    if agent is not None:
        if props is None:
            props = read_agent_properties(config.agent.properties)[0]
        fresh = inspect_agent(agent.incarnation, props)
        if fresh is None:
            return Gates(None, True, InFlight(), None, "")
        agent = fresh
    in_flight = gather_in_flight(agent, config.libvirt.uri, config.probes.timeout)
    cluster, problem = None, ""
    if config.management is not None:
        if host is None:
            problem = "this host is not known to the management server yet"
        else:
            cluster, problem = cluster_reading(config, host.id, host.cluster_id)
    return Gates(agent, False, in_flight, cluster, problem)


def _domain_jobs(uri: str) -> tuple[str, ...]:
    import libvirt

    quiet_libvirt()
    conn = libvirt.openReadOnly(uri)
    try:
        jobs = []
        for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                job_type = domain.jobInfo()[0]
            except libvirt.libvirtError:
                continue
            if job_type != libvirt.VIR_DOMAIN_JOB_NONE:
                jobs.append(domain.name())
        return tuple(jobs)
    finally:
        conn.close()


def gather_in_flight(agent: Optional[AgentProcess], libvirt_uri: str, timeout: float) -> InFlight:
    """What a restart would abort. Not knowing counts as busy: the gate refuses."""
    children = agent.children if agent else ()
    try:
        jobs = run_bounded(lambda: _domain_jobs(libvirt_uri), timeout)
    except Exception as exc:  # noqa: BLE001 - libvirtError, ImportError, TimeoutError alike
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InFlight(children, (), f"libvirt {libvirt_uri}: {first}")
    return InFlight(children, jobs)


def gather_cluster(config: Config, host_id: str, cluster_id: str) -> Optional[ClusterView]:
    """None without a management API. Raises ManagementError when the API is configured
    but cannot answer: the cluster gate must then refuse, not guess."""
    if config.management is None:
        return None
    return ClusterView(host_id, read_cluster_hosts(config.management, cluster_id))


def cluster_reading(config: Config, host_id: str, cluster_id: str) -> tuple[Optional[ClusterView], str]:
    """The cluster view, or the reason it could not be had (the gate then refuses)."""
    try:
        return gather_cluster(config, host_id, cluster_id), ""
    except ManagementError as exc:
        return None, str(exc)
