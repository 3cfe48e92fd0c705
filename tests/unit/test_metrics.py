"""Prometheus metrics: parsed by the real prometheus_client parser, the textfile never
seen half-written, and the metrics config refused with the key that is wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
from tests.support.paths import REPO
from tests.support.prom import families

POOL = "11111111-2222-3333-4444-555555555555"


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


def test_a_bare_port_listens_on_loopback():
    assert parse_listen("9575") == ("127.0.0.1", 9575)
    assert parse_listen("[::1]:9575") == ("::1", 9575)
