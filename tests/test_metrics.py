"""Prometheus metrics: parsed by the real prometheus_client parser, the textfile never
seen half-written, and the daemon's /metrics listener."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard.config import ConfigError, parse_config, parse_listen
from guard.history import History
from guard.metrics import Counters, exposition, write_textfile
from guard.model import (
    AgentProcess,
    Evidence,
    Finding,
    Incarnation,
    ProbeResult,
    Severity,
    Snapshot,
    SourceStatus,
)
from tests.harness.daemon import RunningDaemon
from tests.harness.libvirtd import define_dir_pool

REPO = Path(__file__).resolve().parents[1]
POOL = "11111111-2222-3333-4444-555555555555"


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_text() -> str:
    snap = Snapshot(
        now=100.0, linstor_node="kvm1",
        agent=AgentProcess(Incarnation(42, 90.5), "java com.cloud.agent.AgentShell", (), True, "ok"),
        probes=((POOL, ProbeResult("linstor", 'http://c:3370/"q"', "refused", "refused", 0.0123)),),
        sources=(SourceStatus("libvirt", True), SourceStatus("management", False, "refused"),
                 SourceStatus("x", True, configured=False)),
    )
    findings = [Finding("stale-pool", Severity.CRITICAL, (Evidence("probe", "refused"),), "restart",
                        pool_uuid=POOL, restart_helps=True)]
    counters = Counters(evaluations=7)
    counters.restarts["verified"] += 1
    counters.refusals["cluster"] += 2
    return exposition(findings, snap, History(breaker_open_since=99.0), counters, 100.0)


def test_exposition_parses_and_follows_naming_conventions():
    parsed = families(sample_text())
    assert all(name.startswith("cloudstack_guard_") for name in parsed)
    assert parsed["cloudstack_guard_status"].samples[0].value == 2
    finding = parsed["cloudstack_guard_findings"].samples[0]
    assert finding.labels == {"kind": "stale-pool", "severity": "CRITICAL"} and finding.value == 1
    assert parsed["cloudstack_guard_probe_up"].samples[0].value == 0
    result = parsed["cloudstack_guard_probe_result"].samples[0].labels
    assert result == {"backend": "linstor", "pool": POOL, "result": "refused"}
    assert parsed["cloudstack_guard_probe_duration_seconds"].samples[0].value == pytest.approx(0.0123)
    assert parsed["cloudstack_guard_agent_start_time_seconds"].samples[0].value == 90.5
    assert parsed["cloudstack_guard_restarts"].type == "counter"
    assert parsed["cloudstack_guard_restarts"].samples[0].name == "cloudstack_guard_restarts_total"
    assert parsed["cloudstack_guard_restart_refusals"].samples[0].labels == {"gate": "cluster"}
    assert parsed["cloudstack_guard_circuit_breaker_open"].samples[0].value == 1
    sources = {s.labels["source"]: s.value for s in parsed["cloudstack_guard_source_up"].samples}
    assert sources == {"libvirt": 1, "management": 0}
    assert parsed["cloudstack_guard_evaluations"].samples[0].value == 7


def test_textfile_is_never_seen_half_written(tmp_path):
    path = tmp_path / "cloudstack_guard.prom"
    big = sample_text() * 200
    write_textfile(str(path), big)
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom guard.metrics import write_textfile\n"
        "small, big = sys.argv[2], sys.argv[2] * 200\n"
        "for i in range(400): write_textfile(sys.argv[1], big if i % 2 else small)\n"),
        str(path), sample_text()], cwd=REPO)
    reads = 0
    while writer.poll() is None:
        text = path.read_text()
        assert text in (big, sample_text()), "a reader saw a partial file"
        reads += 1
    assert writer.wait(60) == 0 and reads > 10
    assert [p.name for p in tmp_path.iterdir()] == ["cloudstack_guard.prom"]


@pytest.mark.parametrize("text,message", [
    ('[metrics]\nlisten = "95x75"\n', "metrics.listen' is not host:port"),
    ('[metrics]\nlisten = "example.com:9575"\n', "metrics.listen' is not host:port"),
    ('[metrics]\nlisten = "127.0.0.1:99999"\n', "metrics.listen' is not host:port"),
    ('[metrics]\ntextfile = "/var/lib/x/metrics.txt"\n', "must end in .prom"),
    ('[metrics]\ntextfile = "x.prom"\n', "relative path"),
])
def test_metrics_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "guard.toml")


def test_daemon_rewrites_the_textfile_and_no_reader_sees_half(host, tmp_path, libvirt_conn):
    """Pool events make the daemon evaluate (and rewrite the textfile) many times a second
    while a reader reads it in a tight loop: every read is a whole, parseable file."""
    uuid = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    host.mgmt.add_pool("local", pool_type="Filesystem", scope="CLUSTER", pool_id=uuid)
    pool = define_dir_pool(libvirt_conn, uuid, tmp_path / "pool")
    textfile = tmp_path / "textfile" / "cloudstack_guard.prom"
    textfile.parent.mkdir()
    host.write_config(host.config.read_text() + f'[metrics]\ntextfile = "{textfile}"\n')
    daemon = RunningDaemon(host.config, tmp_path)
    stop = threading.Event()
    reads: list[int] = []

    broken: list[str] = []

    def read_tight() -> None:
        while not stop.is_set():
            text = textfile.read_text() if textfile.exists() else ""
            if not text:
                continue
            try:
                families(text)
            except ValueError as exc:
                broken.append(f"unparseable: {exc}")
            if not text.endswith("\n") or "cloudstack_guard_evaluations_total" not in text:
                broken.append(f"partial file of {len(text)} bytes")
            reads.append(len(text))

    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        reader = threading.Thread(target=read_tight)
        reader.start()
        for _ in range(25):
            pool.destroy()
            daemon.wait_event("finding", kind="pool-inactive", timeout=5)
            pool.create()
            daemon.wait_for(lambda: daemon.events("finding-cleared", kind="pool-inactive"), 5)
            daemon.logs.clear()
        stop.set()
        reader.join(10)
        assert not reader.is_alive() and len(reads) > 100, len(reads)
        assert broken == []
    finally:
        stop.set()
        assert daemon.stop() == 0


def test_daemon_serves_and_writes_metrics(host, tmp_path):
    pool = host.add_linstor_pool()
    textfile = tmp_path / "textfile" / "cloudstack_guard.prom"
    textfile.parent.mkdir()
    host.write_config(host.config.read_text() +
                      f'[metrics]\ntextfile = "{textfile}"\nlisten = "127.0.0.1:0"\n')
    daemon = RunningDaemon(host.config, tmp_path)
    try:
        port = daemon.wait_event("metrics-listening")["port"]
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            served = families(answer.read().decode())
        assert served["cloudstack_guard_status"].samples[0].value == 0
        assert served["cloudstack_guard_agent_up"].samples[0].value == 1
        host.mgmt.remove_pool(pool)
        host.linstor.stop()

        def critical() -> bool:
            parsed = families(textfile.read_text())
            return any(s.labels == {"kind": "stale-pool", "severity": "CRITICAL"}
                       for s in parsed["cloudstack_guard_findings"].samples)
        daemon.wait_for(critical, what="stale-pool CRITICAL in the textfile")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    finally:
        assert daemon.stop() == 0
    time.sleep(0.1)


def test_a_bare_port_listens_on_loopback():
    assert parse_listen("9575") == ("127.0.0.1", 9575)
    assert parse_listen("[::1]:9575") == ("::1", 9575)

