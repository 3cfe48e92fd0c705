"""What the agent-log parser recognises, on real excerpts from public CloudStack issues
(read from ../shared, never copied here), on synthetic fixtures in every format
(tests/data), and on random mixes of the lines hosts write."""

from __future__ import annotations

import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.sources.agentlog import parse_lines
from tests.support.logtext import (
    DATA,
    FRAGMENTS,
    HEADERS,
    JERSEY_EXC,
    KINDS,
    KVM,
    NOISE,
    NOW_2026,
    POOL_TYPES,
    disk_cleanup_failures,
    fixture,
    local,
    of,
    sample,
    samples_dir,
)


def test_every_sample_parses_and_points_at_real_lines():
    names = sorted(samples_dir().glob("*.log"))
    assert len(names) >= 30
    for path in names:
        lines = path.read_text(encoding="utf-8", errors="replace").count("\n") + 1
        for event in sample(path.stem):
            assert event.kind in KINDS, path.name
            assert 1 <= event.line <= lines, (path.name, event)
            assert event.file == str(path)


def test_9022_npe_inside_linstor_adaptor_is_a_disk_cleanup_failure():
    [failure] = of(sample("issue-9022-agent"), "storage-failure")
    assert failure.adaptor == "LinstorStorageAdaptor"
    assert failure.operation == "disk-cleanup"
    assert failure.exception == "java.lang.NullPointerException"
    assert failure.line == 1
    assert failure.ts == pytest.approx(local("2024-05-01 08:52:37,013"))
    assert "getResourceByPath" in failure.detail


def test_10465_headerless_trace_is_a_linstor_connection_failure():
    [failure] = sample("issue-10465-agent-trace")
    assert failure.kind == "storage-failure"
    assert failure.exception == JERSEY_EXC
    assert failure.adaptor == "LinstorStorageAdaptor"
    assert "inferred from the Jersey client failure" in failure.detail
    assert failure.ts is None and failure.line == 1


def test_6463_failed_pool_creation_is_pool_create_not_disk_cleanup():
    [failure] = of(sample("issue-6463-agent"), "storage-failure")
    assert failure.operation == "pool-create"
    assert failure.adaptor == "LibvirtStorageAdaptor"
    assert failure.pool_uuid == "a67e3adf-8acf-3ec8-9342-634bd09dc951"
    assert failure.exception.startswith("com.cloud.utils.exception.CloudRuntimeException: Failed")


@pytest.mark.parametrize("name", [
    "issue-7823-agent-restartloop", "pr-8067-agent-startup", "issue-4118-agent-startup-4.13",
    "issue-9525-agent-journal", "issue-6794-agent-journal-props", "issue-7596-agent-reconnect",
    "issue-9250-agent", "issue-11586-heartbeat-redacted", "pr-145-agent-heartbeat-2015",
    "issue-5776-agent-nfs-pools", "issue-11730-agent-log4j2", "issue-2611-agent",
    "issue-2611-agent-modifypool", "issue-4118-agent", "issue-4118-agent-pool-refresh-4.13",
    "issue-6836-agent-netfs-xml", "issue-5741-agent-multiline", "pr-1430-agent-nio",
])
def test_routine_samples_show_no_disk_cleanup_failure(name):
    assert disk_cleanup_failures(sample(name)) == []


def test_nfs_pool_attach_5776():
    adds = of(sample("issue-5776-agent-nfs-pools"), "pool-add")
    assert [(e.pool_uuid, e.pool_type, e.line) for e in adds] == [
        ("60b59087-7c53-3058-a50c-f50737e556bc", "NetworkFilesystem", 1),
        ("60b59087-7c53-3058-a50c-f50737e556bc", "NetworkFilesystem", 2),
        ("c8e9ca6a-c004-3851-a074-19f4948b28ff", "NetworkFilesystem", 4),
        ("c8e9ca6a-c004-3851-a074-19f4948b28ff", "NetworkFilesystem", 5),
    ]


def test_log4j2_layout_11730():
    events = sample("issue-11730-agent-log4j2")
    assert {(e.pool_uuid, e.pool_type) for e in of(events, "pool-add")} == {
        ("dc9afbc9-aec9-30ff-81c8-9a9aa1485c68", "NetworkFilesystem")}
    [ready] = of(events, "agent-connected")
    assert ready.detail.startswith("Ready command is processed for agent [id: 179")
    assert ready.ts == pytest.approx(local("2025-09-26 13:05:09,573"))


def test_reconnect_9250_quoted_pool_add_and_jersey_failure_of_unknown_operation():
    events = sample("issue-9250-agent")
    assert {(e.pool_uuid, e.pool_type) for e in of(events, "pool-add")} == {
        ("8a76c6b2-f791-4f6b-a09e-85a581b8189f", "Filesystem")}
    [failure] = of(events, "storage-failure")
    assert failure.exception.startswith("javax.ws.rs.ProcessingException: javax.net.ssl.")
    assert failure.operation == "" and failure.adaptor == "LinstorStorageAdaptor"
    assert failure.line == 7


def test_delete_command_request_line_11104():
    events = sample("issue-11104-agent-deletepool")
    [command] = of(events, "pool-delete-command")
    assert (command.pool_uuid, command.pool_type, command.line) == (
        "27ea62dc-ded2-4a25-9115-277c981f33fa", "Filesystem", 1)
    assert command.ts == pytest.approx(local("2025-06-29 03:36:47,233"))
    [removal] = of(events, "pool-remove")
    assert removal.pool_uuid == command.pool_uuid and removal.line == 3


def test_delete_command_without_request_line_pr_11200():
    events = sample("pr-11200-agent-pool-missing")
    [command] = of(events, "pool-delete-command")
    assert command.pool_uuid == "cc67e53b-d383-47c4-8a6a-e95992f477fb"
    assert command.line == 1
    assert [e.line for e in of(events, "pool-remove")] == [2]


def test_heartbeat_failure_redacted_11586():
    [beat] = of(sample("issue-11586-heartbeat-redacted"), "heartbeat-failure")
    assert beat.pool_uuid == "a288c84e-d100-334b-9bc3-0d79ffe9a610"
    assert beat.detail.startswith("try 5 of 5: Failed to create /mnt/a288c84e")
    assert beat.ts is None and beat.line == 2


def test_versions_and_restart_loop_7823_and_4334():
    events = sample("issue-7823-agent-restartloop")
    assert [e.detail for e in of(events, "agent-version")] == ["4.18.0.0"] * 4
    assert [e.line for e in of(events, "agent-start")] == [3, 6, 9]
    old = sample("issue-4334-ssvm-cloudout-4.14")
    assert [e.detail for e in of(old, "agent-version")] == ["4.14.0.0"]
    assert len(of(old, "agent-start")) == 1


def test_journald_pid_and_year_9525():
    [add] = of(sample("issue-9525-agent-journal"), "pool-add")
    assert (add.pool_uuid, add.pool_type, add.pid) == (
        "5a0edcc5-002b-4f39-84ef-b8c7e8486dc9", "Filesystem", 3077)
    assert add.ts == time.mktime((2026, 8, 13, 14, 17, 27, 0, 0, -1))


def test_syslog_headers_8032():
    """The WARN record of the java process is a header (its pid and the year-less stamp
    kept); journal's line and java's bare libvirt line are not. A storage frame continued
    through syslog makes the record an event, so what the header yielded can be seen."""
    lines = (samples_dir() / "issue-8032-agent-syslog.log").read_text().splitlines()
    assert list(parse_lines(lines, now=NOW_2026)) == []
    frame = (f"Oct  3 20:13:00 host02 java[44876]: #011at {KVM}.storage.LibvirtStorageAdaptor."
             "getStoragePool(LibvirtStorageAdaptor.java:1)")
    [failure] = parse_lines(lines[:3] + [frame], now=NOW_2026)
    assert failure.kind == "storage-failure" and failure.line == 3
    assert failure.pid == 44876 and failure.adaptor == "LibvirtStorageAdaptor"
    assert failure.ts == time.mktime((2026, 10, 3, 20, 13, 0, 0, 0, -1))
    assert "WARN [kvm.resource.LibvirtConnection]" in failure.detail


def test_grep_n_prefixes_14002():
    events = sample("pr-14002-agent-grep-n")
    assert [(e.kind, e.line) for e in events] == [("agent-connected", 2), ("agent-connected", 3)]
    assert events[0].ts == pytest.approx(local("2026-09-16 12:13:38,188"))


def test_trace_embedded_in_answer_json_4118():
    [failure] = sample("issue-4118-agent-answer-trace")
    assert failure.kind == "storage-failure" and failure.line == 6
    assert failure.operation == "pool-create" and failure.adaptor == "LibvirtStorageAdaptor"
    assert failure.pool_uuid == "2258aa76-7813-354d-b274-961fb337e716"


def test_bare_debug_create_line_is_not_a_second_pool_add_6836():
    assert of(sample("issue-6836-agent-netfs-xml"), "pool-add") == []


def test_agent_frames_in_a_management_log_3523():
    [failure] = of(sample("issue-3523-mgmt-storage-head"), "storage-failure")
    assert failure.operation == "pool-create" and failure.line == 2


def test_nio_failure_is_not_storage_pr_1430():
    assert of(sample("pr-1430-agent-nio"), "storage-failure") == []


# ---------------------------------------------------------------- synthetic fixtures


def test_log4j1_linstor_stop_failure():
    events = fixture("log4j1-linstor-stop.log")
    assert [(e.kind, e.line) for e in events] == [
        ("agent-start", 1), ("agent-version", 2), ("agent-connected", 4), ("pool-add", 6),
        ("pool-add", 7), ("pool-add", 8), ("linstor-pool", 23), ("storage-failure", 24),
        ("agent-stop", 57),
    ]
    lin = events[3]
    assert (lin.pool_type, lin.url) == ("Linstor", "http://10.20.0.31:3370")
    assert events[6].pool_uuid == lin.pool_uuid == "3f1c9a52-7d4e-4b8a-9c11-52e0d7a6b901"
    failure = events[7]
    assert failure.exception == JERSEY_EXC
    assert failure.adaptor == "LinstorStorageAdaptor"
    assert failure.operation == "disk-cleanup"
    assert "LinstorStorageAdaptor.disconnectPhysicalDiskByPath" in failure.detail
    assert failure.ts == pytest.approx(local("2025-02-26 10:47:14,893"))
    assert events[-1].detail == "sig.kill"


def test_log4j_without_logid_and_old_spelling():
    events = fixture("log4j-old-nologid.log")
    assert [(e.kind, e.line) for e in events] == [
        ("agent-start", 1), ("agent-version", 2), ("pool-add", 8), ("pool-remove", 9)]
    assert events[3].pool_type == "RBD"


def test_log4j2_delete_heartbeat_foreign_path():
    events = fixture("log4j2-delete-heartbeat.log")
    kinds = [(e.kind, e.line) for e in events]
    assert kinds == [
        ("agent-start", 1), ("agent-version", 2), ("agent-connected", 3),
        ("pool-delete-command", 4), ("pool-delete-command", 6), ("pool-remove", 7),
        ("pool-remove", 8), ("linstor-foreign-path", 9), ("heartbeat-failure", 10),
        ("heartbeat-failure", 11), ("agent-stop", 12),
    ]
    linstor_delete = events[3]
    assert linstor_delete.pool_type == "Linstor"
    assert linstor_delete.url == "http://10.20.0.31:3370"
    assert events[4].pool_uuid == "9d2e4f61-0a3b-4c5d-8e7f-1a2b3c4d5e6f"
    assert events[7].detail.startswith("/dev/disk/by-path/ip-10.20.0.50:3260-iscsi")
    assert events[8].detail == "try 1 of 5: drbdsetup: command not found"
    assert events[9].detail == "stopping cloudstack-agent: drbdsetup: command not found"
    assert events[8].pool_type == "Linstor"


def test_journald_capture_with_interleaved_lines():
    events = fixture("journald.log")
    assert all(e.pid == 2211 for e in events)
    [failure] = of(events, "storage-failure")
    assert failure.line == 4 and failure.operation == "disk-cleanup"
    assert failure.ts == time.mktime((2026, 3, 14, 9, 30, 3, 0, 0, -1))
    assert [e.line for e in of(events, "agent-connected")] == [10]


def test_journald_year_is_previous_when_current_would_be_future():
    january = time.mktime((2027, 1, 2, 0, 0, 0, 0, 0, -1))
    [start] = of(fixture("journald.log", now=january), "agent-start")
    assert time.localtime(start.ts).tm_year == 2026
    assert time.localtime(of(fixture("journald.log"), "agent-start")[0].ts).tm_year == 2026


def test_rsyslog_tab_escapes():
    events = fixture("rsyslog-messages.log")
    [failure] = of(events, "storage-failure")
    assert (failure.line, failure.operation, failure.pid) == (2, "pool-create", 41877)
    assert failure.pool_uuid == "5e6f7a8b-9c0d-3e1f-a2b3-c4d5e6f7a8b9"
    assert [(e.pool_type, e.line) for e in of(events, "pool-add")] == [("RBD", 7)]


def test_ticket_paste_with_grep_context_quotes_and_redaction():
    events = fixture("ticket-paste.log")
    assert [(e.kind, e.line) for e in events] == [
        ("storage-failure", 2), ("pool-add", 7), ("agent-connected", 9)]
    assert events[0].operation == "disk-cleanup"
    assert events[0].exception == "java.lang.NullPointerException"
    assert events[2].pid == 3355 and events[2].ts is None


def test_headerless_fragment_with_trailing_spaces():
    [failure] = fixture("fragment-trace.log")
    assert failure.exception == JERSEY_EXC
    assert "inferred from the Jersey client failure" in failure.detail


def test_answer_trace_counts_once_with_its_caught_record():
    events = fixture("answer-embedded.log")
    assert [(e.kind, e.line, e.operation) for e in events] == [
        ("storage-failure", 1, "pool-create"), ("storage-failure", 5, "pool-create")]
    assert events[1].detail.startswith("trace embedded in a failed Answer")


@pytest.mark.parametrize("message", [
    "Ready command is processed: agent id = 7",
    "Ready command is processed for agent id = 7",
    "Ready command is processed for agent [id: 7, uuid: u, name: kvm-1]",
    "Connected to the host: 10.0.0.1",
    "Connected to the host: 10.0.0.1 (Link: 10.0.0.1:8250)",
])
def test_every_agent_version_connected_line(message):
    line = HEADERS["log4j1"].format(lvl="INFO", cat="cloud.agent.Agent", msg=message)
    [event] = parse_lines([line])
    assert (event.kind, event.detail) == ("agent-connected", message)


@pytest.mark.parametrize("message", [
    "Linstor: Using storage pool: 3f1c9a52-7d4e-4b8a-9c11-52e0d7a6b901",
    "Linstor: Using storpool: 3f1c9a52-7d4e-4b8a-9c11-52e0d7a6b901",
])
def test_linstor_pool_in_use_both_spellings(message):
    line = HEADERS["log4j1"].format(lvl="DEBUG", cat="kvm.storage.LinstorStorageAdaptor",
                                    msg=message)
    [event] = parse_lines([line])
    assert (event.kind, event.pool_uuid, event.pool_type) == (
        "linstor-pool", "3f1c9a52-7d4e-4b8a-9c11-52e0d7a6b901", "Linstor")


def test_parse_lines_takes_newline_terminated_and_crlf_lines():
    text = (DATA / "log4j1-linstor-stop.log").read_text()
    from_file = fixture("log4j1-linstor-stop.log")
    crlf = [line.replace("\n", "\r\n") for line in text.splitlines(keepends=True)]
    for lines in (text.splitlines(keepends=True), crlf):
        events = list(parse_lines(lines, str(DATA / "log4j1-linstor-stop.log")))
        assert events == from_file



line_text = st.one_of(
    st.text(max_size=120),
    st.sampled_from(FRAGMENTS),
    st.builds(lambda a, b: a + b, st.sampled_from(FRAGMENTS), st.text(max_size=30)),
    st.builds(lambda a, b: a[: len(a) // 2] + b, st.sampled_from(FRAGMENTS),
              st.text(alphabet=string.printable, max_size=20)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_text, max_size=40))
def test_never_raises_and_events_point_at_real_lines(lines):
    events = list(parse_lines(lines, "x.log", now=NOW_2026))
    for event in events:
        assert event.kind in KINDS
        assert 1 <= event.line <= len(lines)


@settings(max_examples=150, deadline=None)
@given(
    uuid=st.uuids().map(str),
    pool_type=st.one_of(st.sampled_from(POOL_TYPES),
                        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,19}", fullmatch=True)),
    layout=st.sampled_from(sorted(HEADERS)),
    before=st.lists(st.sampled_from(NOISE), max_size=5),
    after=st.lists(st.sampled_from(NOISE), max_size=5),
)
def test_pool_add_round_trip(uuid, pool_type, layout, before, after):
    msg = f"Attempting to create storage pool {uuid} ({pool_type}) in libvirt"
    line = HEADERS[layout].format(lvl="INFO", cat="kvm.storage.LibvirtStorageAdaptor", msg=msg)
    events = list(parse_lines(before + [line] + after, now=NOW_2026))
    [add] = of(events, "pool-add")
    assert (add.pool_uuid, add.pool_type, add.line) == (uuid, pool_type, len(before) + 1)
    assert add.pid == (1234 if layout == "journald" else None)
    assert (add.ts is None) == (layout == "bare")
