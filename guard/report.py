"""Every document the guard prints: Nagios plugin text and the --json documents of
`check`, `analyze` and `probe`.

The first line follows the Nagios plugin guidelines exactly (`SERVICE STATE - text |
perfdata`), because monitoring systems parse it; the lines after it are for the person
paged at night: what was seen, where, and what to do next.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from guard.analyze import Analysis
from guard.evaluate import overall
from guard.history import History
from guard.model import Evidence, Finding, ProbeResult, Severity, Snapshot

SERVICE = "CLOUDSTACK-GUARD"


def _label(text: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.:/-]", "_", text)
    return f"'{clean}'" if clean != text or not clean else clean


def perfdata(findings: list[Finding], snap: Optional[Snapshot], elapsed: float,
             history: Optional[History] = None) -> str:
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    items = [
        f"critical={counts[Severity.CRITICAL]};;1;0",
        f"warning={counts[Severity.WARNING]};1;;0",
        f"unknown={counts[Severity.UNKNOWN]};;;0",
        f"stale_pools={sum(1 for f in findings if f.kind == 'stale-pool')};1;;0",
    ]
    if snap is not None:
        if snap.agent is not None and history is not None:
            current = history.incarnation(snap.agent.incarnation.key)
            held = len({h.uuid for h in current.held} - set(current.dropped)) if current else 0
            items.append(f"pools_held={held};;;0")
        for uuid, probe in snap.probes:
            items.append(f"{_label('probe_' + uuid[:8])}={probe.latency_s:.3f}s;;;0")
    items.append(f"check_time={elapsed:.3f}s;;;0")
    return " ".join(items)


def _brief(finding: Finding) -> str:
    what = finding.kind
    if finding.pool_uuid:
        what += f" {finding.pool_uuid}"
        if finding.pool_type:
            what += f" ({finding.pool_type})"
    elif finding.pool_type:
        what += f" ({finding.pool_type})"
    return what


def summary(findings: list[Finding], snap: Optional[Snapshot]) -> str:
    if findings:
        head = "; ".join(_brief(f) for f in findings[:2])
        rest = len(findings) - 2
        return head + (f"; {rest} more finding(s)" if rest > 0 else "")
    if snap is None:
        return "nothing found"
    parts = []
    if snap.agent is not None:
        parts.append(f"agent pid {snap.agent.incarnation.pid}")
    if snap.probes:
        healthy = sum(1 for _, p in snap.probes if p.reachable)
        parts.append(f"{healthy}/{len(snap.probes)} storage control planes healthy")
    parts.append("no stale pools")
    return ", ".join(parts)


def finding_line(finding: Finding) -> str:
    facts = "; ".join(str(e) for e in finding.evidence)
    return f"{finding.severity.name} {_brief(finding)}: {facts}. Next: {finding.action}"


def text(findings: list[Finding], snap: Optional[Snapshot], elapsed: float,
         history: Optional[History] = None) -> str:
    status = overall(findings)
    lines = [f"{SERVICE} {status.name} - {summary(findings, snap)} | "
             f"{perfdata(findings, snap, elapsed, history)}"]
    lines += [finding_line(f) for f in findings]
    return "\n".join(lines)


def finding_json(finding: Finding) -> dict[str, Any]:
    doc = {
        "kind": finding.kind,
        "severity": finding.severity.name,
        "pool_uuid": finding.pool_uuid,
        "pool_type": finding.pool_type,
        "backend": finding.backend,
        "evidence": [{"source": e.source, "fact": e.fact} for e in finding.evidence],
        "action": finding.action,
        "restart_helps": finding.restart_helps,
    }
    doc.update(dict(finding.extra))
    return doc


def _pools_json(snap: Snapshot, history: History) -> list[dict[str, Any]]:
    current = history.incarnation(snap.agent.incarnation.key) if snap.agent else None
    uuids = {p.uuid for p in snap.libvirt_pools} | {p.uuid for p in snap.management_pools}
    if current:
        uuids |= {h.uuid for h in current.held}
    listed = {p.uuid: p for p in snap.management_pools}
    in_libvirt = {p.uuid: p for p in snap.libvirt_pools}
    pools = []
    for uuid in sorted(uuids):
        record = history.pool(uuid)
        held = current.holds(uuid) if current else None
        seen = listed.get(uuid) or in_libvirt.get(uuid)
        pools.append({
            "uuid": uuid,
            "type": (record.type if record else "") or (seen.type if seen else ""),
            "management_state": listed[uuid].state if uuid in listed else None,
            "libvirt_state": in_libvirt[uuid].state if uuid in in_libvirt else None,
            "held": bool(held) and uuid not in (current.dropped if current else ()),
            "held_via": held.via if held else None,
            "removed_at": record.removed_at if record else None,
            "url": record.url if record else "",
        })
    return pools


def json_doc(findings: list[Finding], snap: Snapshot, history: History, elapsed: float) -> dict[str, Any]:
    status = overall(findings)
    agent = snap.agent
    return {
        "status": status.name,
        "exit_code": int(status),
        "summary": summary(findings, snap),
        "findings": [finding_json(f) for f in findings],
        "sources": {s.name: {"ok": s.ok, "configured": s.configured, "detail": s.detail}
                    for s in snap.sources},
        "pools": _pools_json(snap, history),
        "agent": None if agent is None else {
            "pid": agent.incarnation.pid,
            "start_time": agent.incarnation.start_time,
            "version": snap.agent_version,
            "connected": agent.connected,
            "connection": agent.connection,
            "children": [{"pid": c.pid, "name": c.name} for c in agent.children],
        },
        "probes": [
            {"pool_uuid": uuid, "backend": p.backend, "target": p.target, "status": p.status,
             "detail": p.detail, "latency_s": round(p.latency_s, 4), "http_status": p.http_status,
             "version": p.version, "node_status": p.node_status, "source": p.source}
            for uuid, p in snap.probes
        ],
        "perfdata": perfdata(findings, snap, elapsed, history),
    }


def analyze_json(analysis: Analysis, findings: list[Finding], sources: list[str]) -> dict[str, Any]:
    """`analyze --json`: the judgement, the pools the log named, and the timeline."""
    status = overall(findings)
    return {
        "status": status.name, "exit_code": int(status), "summary": summary(findings, None),
        "findings": [finding_json(f) for f in findings],
        "sources": {"agent-log": {"ok": True, "configured": True,
                                  "detail": f"{analysis.events} events from {', '.join(sources)}"}},
        "pools": [{"uuid": e.pool_uuid, "type": e.pool_type, "url": e.url}
                  for e in analysis.pools_added.values()],
        "agent": {"version": analysis.version, "incarnations_seen": analysis.incarnations},
        "timeline": analysis.timeline_json(),
        "timeline_dropped": analysis.dropped_entries,
    }


def analyze_text(analysis: Analysis, findings: list[Finding], elapsed: float) -> str:
    status = overall(findings)
    lines = [f"{SERVICE} {status.name} - {summary(findings, None)} | {perfdata(findings, None, elapsed)}"]
    lines += [finding_line(f) for f in findings]
    lines.append(f"timeline ({analysis.events} events, {analysis.incarnations} agent start(s)):")
    if analysis.dropped_entries:
        lines.append(f"  ... {analysis.dropped_entries} earlier entries left out")
    for entry in analysis.timeline_json():
        repeat = f" (x{entry['repeats']}, until {entry['last_time']})" if entry["repeats"] > 1 else ""
        lines.append(f"  {entry['time'] or '(no time)'}  {entry['kind']:<20} {entry['text']}{repeat}"
                     f"  [{entry['file']}:{entry['line']}]")
    return "\n".join(lines)


PROBE_SEVERITY = {"healthy": Severity.OK, "auth": Severity.WARNING}
"""auth: the peer is alive and asks for credentials the probe does not send; every
other status is a peer that does not answer as it must (exit 2)."""


def probe_severity(result: ProbeResult) -> Severity:
    return PROBE_SEVERITY.get(result.status, Severity.CRITICAL)


def _probe_finding(result: ProbeResult) -> Finding:
    severity = probe_severity(result)
    advice = {Severity.OK: "none",
              Severity.WARNING: "the peer answers; give the guard its credentials to check further"}
    evidence = Evidence(f"probe {result.backend}", f"{result.target}: {result.detail}")
    return Finding("probe", severity, (evidence,),
                   advice.get(severity, "check the storage service and the network path to it"))


def _probe_entry(target: str, result: ProbeResult) -> dict[str, Any]:
    return {"target": target, "backend": result.backend, "endpoint": result.target,
            "status": result.status, "detail": result.detail,
            "latency_s": round(result.latency_s, 4), "source": result.source,
            "http_status": result.http_status, "version": result.version,
            "node_status": result.node_status}


def probe_json(targets: list[str], results: list[ProbeResult]) -> dict[str, Any]:
    """One `probes` entry per target, in argument order."""
    findings = [_probe_finding(r) for r in results]
    status = overall(findings)
    return {"status": status.name, "exit_code": int(status),
            "probes": [_probe_entry(t, r) for t, r in zip(targets, results)],
            "findings": [finding_json(f) for f in findings if f.severity != Severity.OK]}


def probe_text(targets: list[str], results: list[ProbeResult]) -> str:
    """The Nagios line first (the worst probe, or how many answer), then one per target."""
    findings = [_probe_finding(r) for r in results]
    status = overall(findings)
    bad = [(t, r) for t, r in zip(targets, results) if probe_severity(r) != Severity.OK]
    if len(results) == 1:
        headline = f"{results[0].target}: {results[0].status}, {results[0].detail}"
    elif bad:
        headline = f"{len(bad)} of {len(results)} not healthy; {bad[0][1].target}: {bad[0][1].status}"
    else:
        headline = f"all {len(results)} healthy"
    slowest = max((r.latency_s for r in results), default=0.0)
    lines = [f"{SERVICE} {status.name} - {headline} | time={slowest:.3f}s;;;0"]
    if len(results) > 1:
        lines += [f"  {r.status:<10} {r.backend:<9} {r.target}: {r.detail}" for r in results]
    return "\n".join(lines)
