"""`cloudstack-guard analyze` through the real CLI: the real agent-log excerpts from public
CloudStack issues (read from ../shared, never copied here), our own fixtures in every
format, and input that is hostile or broken."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys

import pytest

from tests.support.logtext import samples_dir
from tests.support.paths import DATA, REPO

FIXTURES = DATA / "agentlog"

ORDINARY = [  # startup, reconnect and pool-creation logs: no VM stop failed in them
    "issue-4118-agent-startup-4.13", "issue-4118-agent-pool-refresh-4.13", "issue-7823-agent-restartloop",
    "pr-8067-agent-startup", "issue-7596-agent-reconnect", "issue-9250-agent", "issue-5776-agent-nfs-pools",
    "issue-11730-agent-log4j2", "issue-2611-agent", "issue-2611-agent-modifypool", "issue-6463-agent",
    "issue-9525-agent-journal", "issue-4334-ssvm-cloudout-4.14", "issue-6794-agent-journal-props",
    "issue-5741-agent-multiline", "issue-6836-agent-netfs-xml", "pr-1430-agent-nio",
]


def analyze(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "guard.cli", "analyze", *args], input=stdin,
                          capture_output=True, timeout=120, cwd=REPO)


def analyze_json(*args: str, stdin: bytes = b"") -> tuple[int, dict]:
    result = analyze("--json", *args, stdin=stdin)
    assert result.stderr == b"", result.stderr.decode()
    return result.returncode, json.loads(result.stdout)


def kinds(doc: dict) -> list[str]:
    return [f["kind"] for f in doc["findings"]]


def test_every_real_sample_parses():
    logs = sorted(samples_dir().glob("*.log"))
    assert len(logs) >= 30
    for log in logs:
        code, doc = analyze_json(str(log))
        assert code in (0, 1, 2), (log.name, doc)
        assert doc["status"] in ("OK", "WARNING", "CRITICAL")
        assert isinstance(doc["timeline"], list)


def test_issue_9022_quoted_trace_is_a_critical_linstor_stop_failure():
    code, doc = analyze_json(str(samples_dir() / "issue-9022-agent.log"))
    assert code == 2
    failure = next(f for f in doc["findings"] if f["kind"] == "stop-failure")
    assert failure["severity"] == "CRITICAL" and failure["adaptor"] == "LinstorStorageAdaptor"
    assert "NullPointerException" in failure["evidence"][0]["fact"]


def test_issue_10465_headerless_fragment_reports_its_connect_exception():
    code, doc = analyze_json(str(samples_dir() / "issue-10465-agent-trace.log"))
    assert code == 2
    finding = doc["findings"][0]
    assert finding["severity"] == "CRITICAL" and finding["adaptor"] == "LinstorStorageAdaptor"
    assert "java.net.ConnectException: Connection refused" in finding["evidence"][0]["fact"]


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_logs_have_no_stop_failure(name):
    _, doc = analyze_json(str(samples_dir() / f"{name}.log"))
    assert "stop-failure" not in kinds(doc), doc["findings"]


def test_heartbeat_failure_names_its_pool():
    _, doc = analyze_json(str(samples_dir() / "issue-11586-heartbeat-redacted.log"))
    finding = next(f for f in doc["findings"] if f["kind"] == "backend-unreachable")
    assert finding["pool_uuid"] == "a288c84e-d100-334b-9bc3-0d79ffe9a610"


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.log")))
def test_own_fixtures_in_every_format(fixture):
    code, doc = analyze_json(str(FIXTURES / fixture))
    assert code in (0, 1, 2)
    assert doc["sources"]["agent-log"]["ok"]


def test_own_linstor_stop_fixture_without_shared():
    code, doc = analyze_json(str(FIXTURES / "log4j1-linstor-stop.log"))
    assert code == 2 and "stop-failure" in kinds(doc)
    assert doc["findings"][0]["adaptor"] == "LinstorStorageAdaptor"


def test_text_output_has_nagios_line_and_timeline():
    result = analyze(str(FIXTURES / "log4j1-linstor-stop.log"))
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("CLOUDSTACK-GUARD CRITICAL - stop-failure") and " | " in lines[0]
    assert any(line.startswith("timeline (") for line in lines)


def test_rotated_set_is_read_in_the_order_written(tmp_path):
    def line(minute: int, uuid: str) -> str:
        return (f"2024-01-01 10:{minute:02d}:00,000 INFO  [kvm.storage.LibvirtStorageAdaptor] "
                f"(agentRequest-Handler-1:null) (logid:1) Attempting to create storage pool {uuid} "
                f"(NetworkFilesystem) in libvirt\n")
    uuids = [f"0000000{i}-0000-4000-8000-000000000000" for i in range(3)]
    with gzip.open(tmp_path / "agent.log.2.gz", "wt") as handle:
        handle.write(line(1, uuids[0]))
    (tmp_path / "agent.log.1").write_text(line(2, uuids[1]))
    (tmp_path / "agent.log").write_text(line(3, uuids[2]))
    shell_order = [str(tmp_path / n) for n in ("agent.log", "agent.log.1", "agent.log.2.gz")]
    _, doc = analyze_json(*shell_order)
    assert [e["pool_uuid"] for e in doc["timeline"]] == uuids


def test_pasted_log_on_stdin():
    code, doc = analyze_json("-", stdin=(FIXTURES / "ticket-paste.log").read_bytes())
    assert code in (0, 1, 2) and "<stdin>" in doc["sources"]["agent-log"]["detail"]


def test_garbage_never_crashes(tmp_path):
    rng = random.Random(7)
    real = (FIXTURES / "log4j1-linstor-stop.log").read_bytes()
    cases = {
        "random-10mb.log": rng.randbytes(10 * 1024 * 1024),
        "binary.log": bytes(range(256)) * 1000 + b"\x00" * 5000,
        "truncated.log": real[: len(real) // 2],
        "truncated.gz": gzip.compress(real)[:-20],
        "one-huge-line.log": b"2024-01-01 10:00:00,000 WARN  [cloud.agent.Agent] (x:null) Caught:" + b"A" * 3_000_000,
        "empty.log": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        result = analyze(str(tmp_path / name))
        assert result.returncode in (0, 1, 2, 3), name
        assert b"Traceback" not in result.stderr, (name, result.stderr[-2000:])


def test_missing_file_is_a_one_line_unknown(tmp_path):
    result = analyze(str(tmp_path / "nope.log"))
    assert result.returncode == 3
    assert result.stdout.decode().strip() == (
        f"CLOUDSTACK-GUARD UNKNOWN - {tmp_path / 'nope.log'}: cannot read (No such file or directory)")
