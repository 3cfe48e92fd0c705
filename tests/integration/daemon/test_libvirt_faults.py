"""libvirtd SIGKILLed and restarted under the running daemon, twice in a row, while pools
are added: what a host's operator relies on then. The daemon stays up; once libvirt is
back it sees every pool, also those added before it could look again; it reports nothing
stale for pools that exist; and its journal says each change of libvirt once, in its own
words, never in libvirt's (`libvirt: XML-RPC error : ...` on stderr, without context)."""

from __future__ import annotations

import re
from typing import Any

import libvirt

from tests.support.daemon import RunningDaemon
from tests.support.libvirtd import SocketAlias, define_dir_pool, destroy_pool
from tests.support.prom import families

CONNECTED, DROPPED, UNREACHABLE = "libvirt-connected", "libvirt-disconnected", "libvirt-unreachable"
RECONNECT_S = 40.0
"""The daemon's back-off reaches 30 s while connections keep dropping early."""
AGENT_KINDS = {"agent-down", "agent-disconnected"}
"""Not this test's to judge: the daemon takes any cloudstack-agent process on the machine
for the agent, and another test run's stand-in may be the one it finds."""


def _uuid(n: int) -> str:
    return f"{n:08x}-5eed-4a11-8b0b-0123456789ab"


def _raw_stderr(daemon: RunningDaemon) -> list[str]:
    return [e["text"] for e in daemon.logs if e.get("event") == "non-json"]


def _shown(daemon: RunningDaemon, uuid: str) -> list[str]:
    """Each time the pool-inactive finding of `uuid` appeared ("on") or cleared ("off");
    a change of severity alone is no new appearance."""
    changes: list[str] = []
    for entry in daemon.logs:
        if entry.get("kind") != "pool-inactive" or entry.get("pool") != uuid:
            continue
        change = {"finding": "on", "finding-cleared": "off"}.get(entry.get("event", ""))
        if change and (not changes or changes[-1] != change):
            changes.append(change)
    return changes


def _said(daemon: RunningDaemon, event: str, times: int, timeout: float) -> None:
    daemon.wait_for(lambda: len(daemon.events(event)) >= times, timeout, what=f"{event} (#{times})")


def _metrics(textfile: Any) -> dict[str, Any]:
    return families(textfile.read_text()) if textfile.exists() else {}


def _value(metrics: dict[str, Any], family: str, **labels: str) -> float | None:
    for sample in getattr(metrics.get(family), "samples", ()):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_libvirtd_killed_twice_while_pools_are_added(host, libvirtd, libvirt_conn, tmp_path):
    alias = SocketAlias(libvirtd, tmp_path / "guard-sock")
    textfile = tmp_path / "guard.prom"
    config = re.sub(r'(?m)^uri = ".*"$', f'uri = "{alias.uri}"', host.config.read_text())
    host.write_config(config + f'[metrics]\ntextfile = "{textfile}"\n')

    def add(conn: libvirt.virConnect, n: int) -> libvirt.virStoragePool:
        """Listed by the management server, then defined and started in libvirt, as the
        agent does with a cluster's local pool."""
        uuid = _uuid(n)
        host.mgmt.add_pool(f"local-{n}", pool_type="Filesystem", scope="CLUSTER", pool_id=uuid)
        return define_dir_pool(conn, uuid, tmp_path / f"pool-{n}")

    def inactive(uuid: str, times: int) -> None:
        daemon.wait_for(lambda: _shown(daemon, uuid).count("on") >= times and _shown(daemon, uuid)[-1] == "on"
                        and daemon.events("finding", kind="pool-inactive", pool=uuid, severity="CRITICAL"),
                        15, what=f"pool-inactive {uuid} (#{times})")

    def cleared(uuid: str, times: int) -> None:
        daemon.wait_for(lambda: _shown(daemon, uuid).count("off") >= times, 15,
                        what=f"pool-inactive {uuid} cleared (#{times})")

    add(libvirt_conn, 0)
    daemon = RunningDaemon(host.config, tmp_path)
    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), 30, what="READY=1")
        daemon.wait_event(CONNECTED)
        for round_ in (1, 2):
            alias.close()
            libvirtd.stop(graceful=False)
            _said(daemon, DROPPED, round_, 15)
            libvirtd.start()
            conn = libvirt.open(libvirtd.uri)
            try:
                # Gone inactive before the daemon can look again: no event will tell it,
                # only the listing it makes once it is back.
                away = add(conn, 2 * round_ - 1)
                away.destroy()
                alias.open()
                _said(daemon, CONNECTED, round_ + 1, RECONNECT_S)
                inactive(away.name(), 1)
                away.create()
                cleared(away.name(), 1)
                # Between the kills, over the new connection's events.
                between = add(conn, 2 * round_)
                between.destroy()
                inactive(between.name(), 1)
                between.create()
                cleared(between.name(), 1)
            finally:
                conn.close()

        every = [_uuid(n) for n in range(5)]
        conn = libvirt.open(libvirtd.uri)
        try:
            for uuid in every:
                destroy_pool(conn, uuid)
        finally:
            conn.close()
        for uuid in every:
            inactive(uuid, 2 if uuid != _uuid(0) else 1)
        daemon.wait_for(lambda: _value(_metrics(textfile), "cloudstack_guard_findings", kind="pool-inactive",
                                       severity="CRITICAL") == len(every), 15, what="five findings in the metrics")
        metrics = _metrics(textfile)
        assert _value(metrics, "cloudstack_guard_source_up", source="libvirt") == 1
        assert {s.labels["kind"] for s in metrics["cloudstack_guard_findings"].samples} - AGENT_KINDS \
            == {"pool-inactive"}

        assert daemon.proc.poll() is None
        assert not daemon.events("task-failed")
        # Findings were right throughout: nothing stale, pool-inactive only while a pool
        # was inactive, libvirt unavailable only while it was.
        assert {e["kind"] for e in daemon.events("finding")} - AGENT_KINDS <= {"pool-inactive", "source-unavailable"}
        assert all("[libvirt]" in e["evidence"] for e in daemon.events("finding", kind="source-unavailable"))
        assert _shown(daemon, _uuid(0)) == ["on"]
        for uuid in every[1:]:
            assert _shown(daemon, uuid) == ["on", "off", "on"], uuid
        # One line per change of libvirt, lost or back, each naming the URI; the lost
        # line says why.
        said = [e for e in daemon.logs if e.get("event") in (CONNECTED, DROPPED, UNREACHABLE)]
        assert [e["event"] for e in said] == [CONNECTED, DROPPED, CONNECTED, DROPPED, CONNECTED], said
        assert all(e["uri"] == alias.uri for e in said)
        for lost in daemon.events(DROPPED):
            assert lost["level"] == "warning" and lost["error"].startswith(f"{alias.uri}: connection closed")
        for back in daemon.events(CONNECTED)[1:]:
            assert back["down_s"] > 0
        raw = _raw_stderr(daemon)
        assert not [line for line in raw if line.startswith("libvirt: ")], raw
        assert raw == []
    finally:
        daemon.stop()


def test_check_with_libvirtd_killed_says_so_without_libvirts_own_line(host, libvirtd):
    libvirtd.stop(graceful=False)
    try:
        run = host.check()
    finally:
        libvirtd.start()
    libvirt_source = run.doc["sources"]["libvirt"]
    assert libvirt_source["ok"] is False and "Failed to connect socket" in libvirt_source["detail"]
    assert [line for line in run.stderr.splitlines() if line.startswith("libvirt: ")] == []
