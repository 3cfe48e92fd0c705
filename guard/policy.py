"""Whether to restart the agent now: findings + gate readings + history -> decision.

Pure. A restart clears a stale pool, but it disconnects the host for seconds, aborts
the agent's in-flight work and counts against systemd's start limit; so every gate
must pass, in order, and each gate's reading is kept so the operator (and the journal)
can see why the guard did or did not act.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from typing import Optional

from guard.config import RemediationConfig
from guard.history import History, RestartRecord
from guard.model import ChildProcess, Finding, ManagementHost
from guard.record import FROM_LISTING

KEEP_RESTARTS = 50
BUSY_HOST_STATES = {"Disconnected", "Connecting"}

STORAGE_TOOLS = {"qemu-img", "rbd", "rados", "drbdadm", "drbdsetup", "iscsiadm", "multipath",
                 "mount", "umount", "mount.nfs", "rsync", "dd", "lvcreate", "lvremove", "lvresize",
                 "qemu-nbd", "storpool", "drv_cfg", "virt-sparsify", "ovftool"}
SCRIPT_DIRS = ("/usr/share/cloudstack-common/scripts/",)


@dataclass(frozen=True)
class GateReading:
    gate: str
    passed: bool
    reading: str


@dataclass(frozen=True)
class InFlight:
    """What a restart would abort: the agent's storage children, libvirt domain jobs."""

    children: tuple[ChildProcess, ...] = ()
    domain_jobs: tuple[str, ...] = ()
    problem: str = ""


@dataclass(frozen=True)
class ClusterView:
    """This host and its cluster peers as the management server reports them now."""

    this_host_id: str
    hosts: tuple[ManagementHost, ...]


@dataclass(frozen=True)
class Decision:
    act: bool
    readings: tuple[GateReading, ...]
    wait_until: Optional[float] = None
    findings: tuple[Finding, ...] = ()

    @property
    def refused_by(self) -> Optional[GateReading]:
        return next((r for r in self.readings if not r.passed), None)

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(sorted({f.pool_uuid for f in self.findings if f.pool_uuid}))


def storage_children(children: tuple[ChildProcess, ...]) -> tuple[ChildProcess, ...]:
    """Agent children that touch storage: killing them mid-copy can corrupt a volume."""
    return tuple(
        c for c in children
        if c.name in STORAGE_TOOLS
        or any(part.rsplit("/", 1)[-1] in STORAGE_TOOLS for part in c.cmdline.split()[:2])
        or any(d in c.cmdline for d in SCRIPT_DIRS)
    )


def _digest(host_id: str) -> bytes:
    return hashlib.sha256(host_id.encode()).digest()


def stagger_delay(this_host_id: str, host_ids: tuple[str, ...], slot: float, after: str = "") -> float:
    """This host's own slot: its rank among its cluster by a hash of the host id, plus a
    jitter inside the first quarter of the slot. Deterministic, so every host computes
    the same order without talking to the others, and no two hosts share a slot.

    `after` names the peer whose restart this host just waited for: counting on from it
    around the circle, the next host goes next, instead of every waiting host starting
    its whole rank over again (which made a cluster's remediation quadratic)."""
    ordered = sorted(set(host_ids) | {this_host_id} | ({after} if after else set()), key=_digest)
    rank = ordered.index(this_host_id)
    if after:
        rank = (rank - ordered.index(after) - 1) % len(ordered)
    jitter = int.from_bytes(_digest(this_host_id)[:4], "big") / 2**32 * slot / 4
    return rank * slot + jitter


def restarts_in_window(history: History, now: float, window: float) -> tuple[RestartRecord, ...]:
    return tuple(r for r in history.restarts if now - r.at < window)


def _in_window(now: float, windows: tuple[tuple[int, int], ...]) -> bool:
    local = time.localtime(now)
    minute = local.tm_hour * 60 + local.tm_min
    return any(start <= minute < end if start <= end else (minute >= start or minute < end)
               for start, end in windows)


def unconfirmed(finding: Finding, history: History) -> bool:
    """A removal seen in one listing only: reported, never acted on (a short answer from
    the server, or a listing mid-restart, is not a removal)."""
    record = history.pool(finding.pool_uuid) if finding.pool_uuid else None
    return (record is not None and record.removed_at is not None and record.removed_via in FROM_LISTING
            and not record.absence_confirmed)


def _gate_finding(
    findings: list[Finding], force: bool, history: History
) -> tuple[GateReading, tuple[Finding, ...]]:
    helps = tuple(f for f in findings if f.restart_helps)
    fixable = tuple(f for f in helps if not unconfirmed(f, history))
    if helps and not fixable and not force:
        names = ", ".join(f.pool_uuid for f in helps)
        return GateReading("finding", False, f"the absence of {names} from the pool listing is not "
                           "confirmed yet; the next listing confirms it"), ()
    if fixable:
        names = ", ".join(f"{f.kind} {f.pool_uuid or f.pool_type}".strip() for f in fixable)
        return GateReading("finding", True, f"a restart fixes: {names}"), fixable
    if force:
        return GateReading("finding", True, "no finding a restart fixes; forced by the operator"), ()
    return GateReading("finding", False, "no finding that an agent restart fixes"), ()


def _gate_mode(mode: str, force: bool) -> GateReading:
    if mode == "remediate":
        return GateReading("mode", True, "remediate")
    if force:
        return GateReading("mode", True, f"{mode}, overridden by --force")
    return GateReading("mode", False, f"{mode}: the guard reports and never restarts")


def _gate_in_flight(in_flight: InFlight) -> GateReading:
    if in_flight.problem:
        return GateReading("in-flight", False,
                           f"cannot tell what a restart would abort: {in_flight.problem}")
    busy = storage_children(in_flight.children)
    parts = [f"agent child {c.pid} {c.name} ({c.cmdline[:80]})" for c in busy]
    parts += [f"libvirt job on {job}" for job in in_flight.domain_jobs]
    if parts:
        return GateReading("in-flight", False, "busy: " + "; ".join(parts) + "; retry when it ends")
    return GateReading("in-flight", True, "no agent child doing storage work, no libvirt domain job")


def _gate_rate(history: History, config: RemediationConfig, now: float, force: bool) -> GateReading:
    recent = restarts_in_window(history, now, config.window)
    if force:
        return GateReading("rate", True,
                           f"{len(recent)} restart(s) in the window; limits overridden by --force")
    if history.breaker_open_since is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(history.breaker_open_since))
        return GateReading("rate", False, f"circuit breaker open since {since}: "
                           f"{history.breaker_reason}; run `cloudstack-guard restart-agent --force` "
                           "once the cause is understood")
    if len(recent) >= config.max_restarts:
        return GateReading("rate", False, f"{len(recent)} of {config.max_restarts} restarts used "
                           f"in the last {config.window:g}s")
    if history.restarts:
        last = max(r.at for r in history.restarts)
        if now - last < config.cooldown:
            return GateReading("rate", False, f"cooldown: last restart {now - last:.0f}s ago, "
                               f"cooldown {config.cooldown:g}s")
        pending = [r for r in history.restarts if r.outcome in ("requested", "verified")]
        if pending and now - pending[-1].at < config.settle:
            return GateReading("rate", False, "waiting to see whether the last restart helped "
                               f"(judged {config.settle:g}s after it)")
    return GateReading("rate", True, f"{len(recent)} of {config.max_restarts} restarts used in the window")


def peers_busy(cluster: ClusterView) -> list[ManagementHost]:
    """Peers that are not Up now. A host refused for this counts its stagger slot again,
    from the moment they are Up and from the busy peer's place in the order: otherwise
    every host whose slot passed meanwhile would retry at the same instant."""
    busy = [h for h in cluster.hosts if h.id != cluster.this_host_id and h.state in BUSY_HOST_STATES]
    return sorted(busy, key=lambda h: _digest(h.id))


def _gate_cluster(
    cluster: Optional[ClusterView], problem: str, anchor: float, now: float, slot: float, force: bool,
    after: str,
) -> tuple[GateReading, Optional[float]]:
    if problem:
        return GateReading("cluster", False, f"cannot read the cluster's hosts: {problem}"), None
    if cluster is None:
        return GateReading("cluster", True, "management API not configured: no cluster view"), None
    busy = peers_busy(cluster)
    if busy:
        names = ", ".join(f"{h.name} {h.state}" for h in busy)
        return GateReading("cluster", False, f"another host of this cluster is not Up: {names}"), None
    peers = tuple(h.id for h in cluster.hosts)
    delay = stagger_delay(cluster.this_host_id, peers, slot, after)
    acts_at = anchor + delay
    if now < acts_at and not force:
        return GateReading("cluster", False, f"staggered: this host's slot starts in "
                           f"{acts_at - now:.1f}s ({len(peers)} host(s) in the cluster)"), acts_at
    return GateReading("cluster", True, f"all {len(peers)} host(s) of the cluster Up; "
                       f"stagger slot reached"), None


def _gate_window(windows: tuple[tuple[int, int], ...], now: float, force: bool) -> GateReading:
    if not windows:
        return GateReading("window", True, "no maintenance window configured")
    if _in_window(now, windows) or force:
        return GateReading("window", True, "inside a maintenance window" if not force
                           else "outside the windows, overridden by --force")
    return GateReading("window", False, "outside the configured maintenance windows")


def decide(
    findings: list[Finding],
    mode: str,
    config: RemediationConfig,
    history: History,
    now: float,
    in_flight: InFlight,
    cluster: Optional[ClusterView],
    anchor: float,
    force: bool = False,
    cluster_problem: str = "",
    after_peer: str = "",
) -> Decision:
    """Every gate is read even after one refuses, so the operator sees the whole picture.
    `anchor` is when the condition appeared (hosts that saw it together stagger from it),
    or when the last busy peer (`after_peer`) was seen, whichever is later."""
    finding, fixable = _gate_finding(findings, force, history)
    cluster_reading, wait_until = _gate_cluster(
        cluster, cluster_problem, anchor, now, config.stagger_slot, force, after_peer)
    readings = (
        finding,
        _gate_mode(mode, force),
        _gate_in_flight(in_flight),
        _gate_rate(history, config, now, force),
        cluster_reading,
        _gate_window(config.windows, now, force),
    )
    act = all(r.passed for r in readings)
    return Decision(act, readings, wait_until, fixable)


def record_restart(history: History, record: RestartRecord) -> History:
    restarts = (tuple(r for r in history.restarts if r.at != record.at) + (record,))[-KEEP_RESTARTS:]
    return replace(history, restarts=restarts)


def open_breaker(history: History, now: float, reason: str) -> History:
    return replace(history, breaker_open_since=now, breaker_reason=reason)


def close_breaker(history: History) -> History:
    return replace(history, breaker_open_since=None, breaker_reason="")


def anchor_for(
    findings: tuple[Finding, ...], history: History, now: float, windows: tuple[tuple[int, int], ...] = ()
) -> float:
    """When the condition appeared, as every host of the cluster saw it: the removal, or
    the entry into maintenance. Failing those, when a restart first became warranted
    (persisted by note_warranted), never the moment of this evaluation: an anchor that
    moves with each look keeps the host's slot ahead of it forever. Inside a maintenance
    window, not before its opening."""
    moments = [
        moment for f in findings if (record := history.pool(f.pool_uuid)) is not None
        for moment in (record.removed_at, record.maintenance_at) if moment is not None
    ]
    warranted = history.eligible_since if history.eligible_since is not None else now
    return max(min(moments, default=warranted), _window_opened(now, windows))


def _window_opened(now: float, windows: tuple[tuple[int, int], ...]) -> float:
    """The start of the maintenance window `now` is in (0 outside one, or with none):
    hosts that waited for the window stagger from its opening, not from a removal hours
    before it, when all of them would be due at once."""
    local = time.localtime(now)
    minute = local.tm_hour * 60 + local.tm_min
    midnight = now - (minute * 60 + local.tm_sec) - (now % 1)
    for start, end in windows:
        if start <= end and start <= minute < end:
            return midnight + start * 60
        if start > end and (minute >= start or minute < end):
            return midnight + start * 60 - (86400 if minute < end else 0)
    return 0.0


def busy_peer(
    previous: tuple[float, str], cluster: Optional[ClusterView], now: float, slot: float
) -> tuple[float, str]:
    """The peer whose restart this host waits after, and when it was last seen busy. It
    is forgotten once a whole round of slots has passed since: an old cascade must not
    anchor every later restart at the same moment."""
    busy = peers_busy(cluster) if cluster is not None else []
    if busy:
        return now, busy[-1].id
    hosts = len(cluster.hosts) if cluster is not None else 1
    if previous[1] and now - previous[0] > slot * (hosts + 1):
        return 0.0, ""
    return previous


def judge_last_restart(history: History, findings: list[Finding], now: float, settle: float) -> History:
    """A verified restart that left the same trouble behind did not help: open the breaker
    so the guard stops restarting an agent it cannot fix. Close it once the condition is
    gone, since then the next trouble is a new one."""
    verified = [r for r in history.restarts if r.outcome == "verified"]
    if verified and now - verified[-1].at >= settle:
        last = verified[-1]
        left = [f for f in findings if f.kind in ("stale-pool", "stop-failure")
                and (f.pool_uuid in last.pools or f.kind == "stop-failure")]
        if left:
            reason = ("restart at " + time.strftime("%H:%M:%S", time.localtime(last.at)) +
                      f" did not clear {left[0].kind} {left[0].pool_uuid or left[0].pool_type}")
            history = record_restart(history, replace(last, outcome="did-not-help", detail=reason))
            return open_breaker(history, now, reason)
        history = record_restart(history, replace(last, outcome="helped"))
    if history.breaker_open_since is not None and not any(
            f.restart_helps or f.kind == "stop-failure" for f in findings):
        history = close_breaker(history)
    return history


def note_warranted(history: History, findings: list[Finding], now: float) -> History:
    """Keep when a restart first became warranted for the trouble at hand (see
    anchor_for), and forget it once nothing a restart fixes is left."""
    warranted = any(f.restart_helps for f in findings)
    if warranted and history.eligible_since is None:
        return replace(history, eligible_since=now)
    if not warranted and history.eligible_since is not None:
        return replace(history, eligible_since=None)
    return history
