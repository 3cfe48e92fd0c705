"""One pass of evidence gathering: every source read once, probes run concurrently.

Each source reports whether it could be read; none of them can stop the others, so a
stopped libvirtd or an unreachable management server still leaves a useful answer.
"""

from __future__ import annotations

import socket
import time
from dataclasses import replace

from guard.backends import Endpoint, ProbeTarget, backend_named, probe_all_now
from guard.config import Config
from guard.deadline import Bounded
from guard.drivers import driver_for
from guard.history import History
from guard.model import CLOCK_SLACK_S, Pool, Snapshot, SourceStatus
from guard.record import detached, record
from guard.snapshot import Readings, build_snapshot
from guard.sources.agent import find_agent, unit_state
from guard.sources.agentconf import heartbeat_retry_sleep_s, read_agent_properties
from guard.sources.agentlog import read_log
from guard.sources.libvirt import read_libvirt_pools
from guard.sources.management import read_management
from guard.sources.storpoollog import StorPoolLog

LOG_LOOKBACK_WITHOUT_AGENT_S = 3600.0


def probe_targets(history: History, snap: Snapshot) -> list[ProbeTarget]:
    """Every pool this host uses or still holds whose type has a backend to ask. Where
    its storage answers comes from the first view that says: the management server's
    listing, then libvirt's pool XML, then the URL the history kept."""
    views: dict[str, list[Pool]] = {}
    for pool in (*snap.management_pools, *snap.libvirt_pools):
        views.setdefault(pool.uuid, []).append(pool)
    wanted = {p.uuid for p in snap.management_pools if not detached(p.state)}
    if snap.agent is not None:
        current = history.incarnation(snap.agent.incarnation.key)
        if current is not None:
            wanted.update(h.uuid for h in current.held if h.uuid not in current.dropped)
    targets = []
    for uuid in sorted(wanted):
        known = history.pool(uuid)
        seen = views.get(uuid, [])
        pool_type = known.type if known and known.type else (seen[0].type if seen else "")
        backend = backend_named(driver_for(pool_type).probe)
        if backend is None:
            continue
        found = next((e for e in map(backend.endpoint, seen) if e is not None), None)
        if found is None and known is not None and known.url:
            found = Endpoint(known.url, "history")
        if found is None:
            # A backend whose endpoint is this host's own config (StorPool's storpool.conf)
            # needs no view of the pool at all.
            found = backend.endpoint(Pool(uuid, pool_type, "history"))
        if found is not None:
            targets.append(ProbeTarget(uuid, backend.name, found.url, found.source))
    return targets


def _management_deadline(config: Config) -> float:
    """Finding the host, the server's version and the pool listing are three calls; the
    whole read gets one timeout's worth plus a second, so a hung server costs a check
    seconds, not three timeouts (monitoring kills plugins after 10 s by default)."""
    return (config.management.timeout if config.management else 0.0) + 1.0


def collect(config: Config, history: History) -> Snapshot:
    """The snapshot, probes included. Which controllers to ask depends on what the
    history says the agent holds, so the probes are chosen from a provisional folding of
    the snapshot; the caller folds the finished one (guard/judge.py). The slow sources
    (libvirt, the management server) run concurrently with the local ones, each under
    its own deadline."""
    now = time.time()
    props, props_status = read_agent_properties(config.agent.properties)
    hostname = socket.gethostname()
    libvirt_call = Bounded(lambda: read_libvirt_pools(config.libvirt.uri, config.probes.timeout))
    management_call = Bounded(lambda: read_management(config.management, hostname, props))
    agent, agent_status = find_agent(props, config.agent.unit)
    unit = unit_state(config.agent.unit)[1] if agent is None else ""
    since = (agent.incarnation.start_time - CLOCK_SLACK_S if agent
             else now - LOG_LOOKBACK_WITHOUT_AGENT_S)
    log = read_log(config.agent.log, since, history.log_cursor,
                   agent.incarnation.key if agent else "")
    storpool_events, storpool_status = StorPoolLog(config.agent.storpool_log).read(since)
    pools, libvirt_status = libvirt_call.result(config.probes.timeout + 1.0)
    try:
        host, managed, elsewhere, mgmt_status = management_call.result(_management_deadline(config))
    except TimeoutError:
        host, managed, elsewhere = None, [], ()
        mgmt_status = SourceStatus("management", False, f"no complete answer within "
                                   f"{_management_deadline(config):g}s")
    readings = Readings(
        agent=agent,
        agent_unit_state=unit,
        libvirt_pools=tuple(pools),
        management_host=host,
        management_pools=tuple(managed),
        management_elsewhere=elsewhere,
        agent_log=tuple(log.events),
        log_cursor=log.cursor,
        storpool_log=tuple(storpool_events),
        sources=(props_status, agent_status, libvirt_status, log.status, storpool_status, mgmt_status),
        heartbeat_retry_s=heartbeat_retry_sleep_s(props),
    )
    snap = build_snapshot(config, hostname, readings, now)
    targets = probe_targets(record(history, snap), snap)
    results = probe_all_now(targets, config)
    return replace(snap, probes=tuple((t.pool_uuid, results[t.backend, t.endpoint]) for t in targets))
