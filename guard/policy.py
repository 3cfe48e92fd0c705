"""Whether to restart the agent now: findings + gate readings + history -> decision.

Pure. A restart clears a stale pool, but it disconnects the host for seconds, aborts
the agent's in-flight work and counts against systemd's start limit; so every gate
must pass, in order, and each gate's reading is kept so the operator (and the journal)
can see why the guard did or did not act.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Optional

from guard.config import RemediationConfig
from guard.elapsed import Ages, age
from guard.history import History, RestartRecord
from guard.model import ChildProcess, Finding, ManagementHost
from guard.record import FROM_LISTING

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
    kind: str = ""
    """What the reading says without its countdown, for readings that carry one: the
    same refusal re-read seconds later is the same refusal."""

    @property
    def key(self) -> str:
        return self.kind or self.reading


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


TURN_FRACTION = 0.5
"""A host begins a restart only in the first half of its slot: the second half, and the
hosts' clock differences (NTP keeps them far inside it), separate its start from the next
host's turn, and the server has marked it Disconnected before that turn comes."""


def turn(
    this_host_id: str, host_ids: tuple[str, ...], now: float, slot: float
) -> tuple[bool, float, int, int]:
    """Slots on the wall clock every host of the cluster shares, owned in turn: slot k
    belongs to the host whose rank, by a hash of its id, is k mod n. Each host works out
    the same order alone, so two hosts never own one slot, whenever each learned of the
    trouble, however often it looks, and whatever window it waited for.

    Returns whether `now` is this host's to act in, the opening of its next slot after
    the current one, its rank and the cluster's size."""
    ordered = sorted(set(host_ids) | {this_host_id}, key=_digest)
    hosts, rank = len(ordered), ordered.index(this_host_id)
    current = math.floor(now / slot)
    # A host alone in its cluster has every slot: there is no one to collide with.
    mine = hosts == 1 or (current % hosts == rank and now - current * slot < slot * TURN_FRACTION)
    following = current + 1 + (rank - current - 1) % hosts
    return mine, following * slot, rank, hosts


def restarts_in_window(
    history: History, now: float, window: float, ages: Optional[Ages] = None
) -> tuple[RestartRecord, ...]:
    return tuple(r for r in history.restarts if age(r, now, ages) < window)


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


def _gate_rate(
    history: History, config: RemediationConfig, now: float, force: bool, ages: Optional[Ages]
) -> GateReading:
    recent = restarts_in_window(history, now, config.window, ages)
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
        since_last = min(age(r, now, ages) for r in history.restarts)
        if since_last < config.cooldown:
            return GateReading("rate", False, f"cooldown: last restart {since_last:.0f}s ago, "
                               f"cooldown {config.cooldown:g}s", kind="cooldown")
        pending = [r for r in history.restarts if r.outcome in ("requested", "verified")]
        if pending and age(pending[-1], now, ages) < config.settle:
            return GateReading("rate", False, "waiting to see whether the last restart helped "
                               f"(judged {config.settle:g}s after it)")
    return GateReading("rate", True, f"{len(recent)} of {config.max_restarts} restarts used in the window")


def peers_busy(cluster: ClusterView) -> list[ManagementHost]:
    """Peers that are not Up now: a restart longer than a slot, or a host down for its own
    reasons. A host refused for this waits for its next turn."""
    busy = [h for h in cluster.hosts if h.id != cluster.this_host_id and h.state in BUSY_HOST_STATES]
    return sorted(busy, key=lambda h: _digest(h.id))


def _gate_cluster(
    cluster: Optional[ClusterView], problem: str, now: float, slot: float, force: bool, wait_turn: bool,
    window_open: bool,
) -> tuple[GateReading, Optional[float]]:
    """Outside a maintenance window the turn is not waited for here: the window refuses
    (and names when it opens), and the turn is judged once it is open."""
    if problem:
        return GateReading("cluster", False, f"cannot read the cluster's hosts: {problem}"), None
    if cluster is None:
        return GateReading("cluster", True, "management API not configured: no cluster view"), None
    peers = tuple(h.id for h in cluster.hosts)
    mine, following, rank, hosts = turn(cluster.this_host_id, peers, now, slot)
    place = f"slot {rank + 1} of {hosts}, every {hosts * slot:g}s"
    busy = peers_busy(cluster)
    if busy:
        names = ", ".join(f"{h.name} {h.state}" for h in busy)
        # In its own turn the host looks again soon (the peer may be Up before the turn
        # ends); otherwise its next turn is the earliest it could act.
        return GateReading("cluster", False, f"another host of this cluster is not Up: {names}; "
                           f"waiting for this host's next turn ({place})"), None if mine else following
    if not mine and wait_turn and not force and window_open:
        return GateReading("cluster", False, f"staggered: this host's turn ({place}) starts in "
                           f"{following - now:.1f}s", kind="staggered"), following
    turn_text = f"this host's turn ({place})" if mine else "no turn waited for"
    if not mine and not window_open:
        turn_text = f"its turn ({place}) is judged once a window opens"
    return GateReading("cluster", True, f"all {hosts} host(s) of the cluster Up; {turn_text}"), None


def _gate_window(
    windows: tuple[tuple[int, int], ...], now: float, force: bool
) -> tuple[GateReading, Optional[float]]:
    if not windows:
        return GateReading("window", True, "no maintenance window configured"), None
    if _in_window(now, windows) or force:
        return GateReading("window", True, "inside a maintenance window" if not force
                           else "outside the windows, overridden by --force"), None
    opens = next_opening(now, windows)
    return GateReading("window", False, "outside the configured maintenance windows; the next opens "
                       + time.strftime("%Y-%m-%d %H:%M", time.localtime(opens))), opens


def next_opening(now: float, windows: tuple[tuple[int, int], ...]) -> float:
    """The next start of a window by the local clock (mktime keeps daylight saving)."""
    local = time.localtime(now)
    openings = (time.mktime((local.tm_year, local.tm_mon, local.tm_mday + day, start // 60, start % 60,
                             0, 0, 0, -1))
                for day in (0, 1, 2) for start, _ in windows)
    return min(t for t in openings if t > now)


def decide(
    findings: list[Finding],
    mode: str,
    config: RemediationConfig,
    history: History,
    now: float,
    in_flight: InFlight,
    cluster: Optional[ClusterView],
    force: bool = False,
    cluster_problem: str = "",
    wait_turn: bool = True,
    ages: Optional[Ages] = None,
) -> Decision:
    """Every gate is read even after one refuses, so the operator sees the whole picture.
    `wait_turn` False (an operator's `restart-agent`) skips waiting for this host's
    stagger slot, not a busy peer. `wait_until` is the earliest moment a refusal by the
    cluster or window gate could turn: no look before it can act. `ages` times the
    restarts of the history in real time (guard/elapsed.py); the stagger and the
    maintenance windows stay on the wall clock, which is what the hosts share."""
    finding, fixable = _gate_finding(findings, force, history)
    window_reading, opens_at = _gate_window(config.windows, now, force)
    cluster_reading, turn_at = _gate_cluster(
        cluster, cluster_problem, now, config.stagger_slot, force, wait_turn, window_reading.passed)
    readings = (
        finding,
        _gate_mode(mode, force),
        _gate_in_flight(in_flight),
        _gate_rate(history, config, now, force, ages),
        cluster_reading,
        window_reading,
    )
    act = all(r.passed for r in readings)
    waits = [t for t in (turn_at, opens_at) if t is not None]
    return Decision(act, readings, max(waits) if waits and not act else None, fixable)
