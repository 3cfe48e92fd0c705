"""Fuzzing, on a fixed budget, every reader of text the guard does not write itself: the
agent log (whole files, gzip, a growing file and its saved reading state), agent.properties,
libvirt's pool XML, the management API's JSON, the LINSTOR controller's answers, the HTTP
wire under the REST probes, and StorPool's adaptor log.

Each source promises that no input makes it raise (what it cannot read becomes a
SourceStatus or a ProbeResult saying so) and that a detail is one line: `check` prints it
as one line and a monitoring system keeps only the first. The inputs are mutations of the
shapes hosts really write, so the budget goes to the parsers' branches, not to noise the
first check of every parser turns away. The backend wire parsers fuzzed in their own
tests (tests/unit/backends) are not fuzzed again here.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import re
import tempfile
import time
import xml.etree.ElementTree as ET  # noqa: S405 - builds the XML under test
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.backends import http, linstor, wire
from guard.backends.wire import ProbeError
from guard.config import Credentials, LinstorConfig, ManagementConfig
from guard.model import LogEvent, SourceStatus
from guard.sources import storpoollog
from guard.sources.agentconf import agent_properties, read_agent_properties
from guard.sources.agentlog import IncrementalParser, iter_events, parse_lines, read_agent_log
from guard.sources.cloudstack_api import Client
from guard.sources.libvirt import parse_pool_xml
from guard.sources.management import ManagementError, read_cluster_hosts, read_management
from tests.support.logtext import KINDS

FUZZ: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow],
                        "derandomize": False}
UUID = "3f1c9a52-7d4e-4b8a-9c11-52e0d7a6b901"
NOW = time.mktime((2026, 11, 21, 12, 0, 0, 0, 0, -1))
PROBE_WORDS = {"healthy", "refused", "timeout", "dns", "tls", "http-error", "bad-answer", "auth"}


def one_line(text: str) -> bool:
    """A carriage return breaks a line too: a terminal goes back and writes over it."""
    return "\n" not in text and "\r" not in text


# -- mutations of real shapes ------------------------------------------------------------------

EDIT_CHARS = st.one_of(st.sampled_from(list(" \t[](){}:;,.-_'\"\\<>#@=/\n\r\x00\ufeff0123456789")),
                       st.characters(exclude_categories=("Cs",)))
"""Characters text decoded from bytes can hold: no lone surrogate, which no reader here
is given (files are read as bytes, libvirt's XML comes decoded as strict UTF-8)."""
EDIT_PIECES = st.sampled_from(["\\n", "\\r", "\\t", "\\u000a", "\\u00", "\\n\\tat ", "\r\n", "; try: 2 of 5."])
"""Escapes and separators the parsers give a meaning to."""


@st.composite
def mutated(draw: st.DrawFn, originals: Sequence[str]) -> str:
    """A real shape after a few edits (cut short, characters put in, taken out, a stretch
    doubled): what a pasted, redacted or half-written line looks like to the parser."""
    text = draw(st.sampled_from(originals))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(("cut", "insert", "delete", "double")))
        if edit == "cut":
            text = text[:at]
        elif edit == "insert":
            piece = draw(st.text(EDIT_CHARS, min_size=1, max_size=4) | EDIT_PIECES)
            text = text[:at] + piece + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        else:
            end = at + draw(st.integers(1, 20))
            text = text[:end] + text[at:]
    return text


@st.composite
def mutated_bytes(draw: st.DrawFn, originals: Sequence[bytes]) -> bytes:
    """As `mutated`, on bytes: a peer's answer cut short or with bytes flipped."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(("cut", "insert", "flip")))
        if edit == "cut":
            del data[at:]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif at < len(data):
            data[at] ^= draw(st.integers(1, 255))
    return bytes(data)


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(2**63, 2**200).map(lambda n: -n if n % 2 else n),
    st.floats(), st.text(max_size=12),
    st.sampled_from(["", " ", "\n", "a\nb", "KVM", "Up", "Removed", UUID, UUID.upper(), "-1", "0", "1e400"]),
    mutated(["kvm-1", "Up", "1.26.1", "ONLINE", "unable to verify user credentials", "431", UUID]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
"""Any JSON value: wrong types, nulls, huge numbers, nested lists, text with newlines."""
HUGE_NUMBER = b"9" * 5000
"""More digits than Python 3.11's int() takes from text by default (4300)."""
DEEP = b"[" * 5000
"""Deeper than json.loads can go: it raises RecursionError, not ValueError."""


def field(known: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value the reader expects at this key, else any JSON value."""
    return st.one_of(known, known, JSON_VALUES)


# -- the agent log ------------------------------------------------------------------------------

LOG4J1 = "2024-03-01 10:00:00,123 {lvl:<5} [{cat}] (agentRequest-Handler-2:null) (logid:0a1b2c3d) {msg}"
LOG4J2 = "2025-03-01 10:00:00,123 {lvl:<5} [{cat}] (AgentRequest-Handler-2:[]) (logid:0a1b2c3d) {msg}"
JOURNALD = "Mar  1 10:00:00 kvm-1 java[1234]: {lvl:<5} [{cat}] (AgentRequest-Handler-2:) (logid:) {msg}"
LIBVIRT_ADAPTOR = "kvm.storage.LibvirtStorageAdaptor"
LINSTOR_ADAPTOR = "kvm.storage.LinstorStorageAdaptor"
ANSWER_DETAILS = ("com.cloud.utils.exception.CloudRuntimeException: Failed to create storage pool\\n\\tat "
                  "com.cloud.hypervisor.kvm.storage.LibvirtStorageAdaptor.createStoragePool"
                  "(LibvirtStorageAdaptor.java:710)\\n")
MESSAGES = [
    ("INFO", LIBVIRT_ADAPTOR, f"Attempting to create storage pool {UUID} (NetworkFilesystem) in libvirt"),
    ("INFO", LIBVIRT_ADAPTOR, f"Found existing defined storage pool {UUID}, using it."),
    ("INFO", LIBVIRT_ADAPTOR, f"Attempting to remove storage pool {UUID} from libvirt"),
    ("INFO", LIBVIRT_ADAPTOR, f"Storage pool {UUID} was sucessfully removed from libvirt."),
    ("DEBUG", LINSTOR_ADAPTOR, f"Linstor createStoragePool: name: '{UUID}', host: 'http://10.0.0.5:3370'"),
    ("DEBUG", LINSTOR_ADAPTOR, f"Linstor: Using storage pool: {UUID}"),
    ("DEBUG", LINSTOR_ADAPTOR, "Linstor: Couldn't find resource for this path: /dev/drbd1001"),
    ("WARN", "kvm.resource.KVMHAMonitor",
     f"Write heartbeat for pool [{UUID}] failed: timeout after 60 seconds; try: 1 of 5."),
    ("WARN", "kvm.resource.KVMHAMonitor",
     f"Write heartbeat for pool [{UUID}] failed: ; stopping cloudstack-agent."),
    ("INFO", "cloud.agent.AgentShell", "Agent started"),
    ("INFO", "cloud.agent.AgentShell", "Implementation Version is 4.19.1.0"),
    ("INFO", "cloud.agent.Agent", "Stopping the agent: Reason = sig.kill"),
    ("INFO", "cloud.agent.Agent", "Connected to the host: 10.0.0.1"),
    ("DEBUG", "cloud.agent.Agent",
     'Request:Seq 1-2:  { Cmd , MgmtId: 1, via: 1, Ver: v1, Flags: 100111, [{"com.cloud.agent.api.'
     f'DeleteStoragePoolCommand":{{"_pool":{{"uuid":"{UUID}","host":"10.0.0.5","type":"Linstor"}},'
     '"wait":0}}] }'),
    ("DEBUG", "cloud.agent.Agent", "Processing command: com.cloud.agent.api.DeleteStoragePoolCommand"),
    ("DEBUG", "cloud.agent.Agent",
     'Seq 1-2:  { Ans: , MgmtId: 1, via: 1, Ver: v1, Flags: 10, [{"com.cloud.agent.api.Answer":'
     f'{{"result":false,"details":"{ANSWER_DETAILS}","wait":0}}}}] }}'),
    ("WARN", "cloud.agent.Agent", "Caught: "),
    ("ERROR", "kvm.storage.KVMStoragePoolManager", "Failed to disconnect the disk"),
]
TRACE_LINES = [
    "javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused (Connection refused)",
    "\tat org.glassfish.jersey.client.ClientRuntime.invoke(ClientRuntime.java:254)",
    "\tat com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath"
    "(LinstorStorageAdaptor.java:420)",
    "        at com.cloud.hypervisor.kvm.resource.wrapper.LibvirtStopCommandWrapper.execute"
    "(LibvirtStopCommandWrapper.java:120)",
    "Caused by: java.net.ConnectException: Connection refused",
    "\t... 12 more",
    "Mar  1 10:00:00 kvm-1 java[1234]: #011at com.cloud.hypervisor.kvm.storage.LibvirtStorageAdaptor"
    ".deleteStoragePool(LibvirtStorageAdaptor.java:1000)",
    "<pool type='netfs'>", "</pool>", "",
]
LINES = ([layout.format(lvl=lvl, cat=cat, msg=msg)
          for layout in (LOG4J1, LOG4J2, JOURNALD) for lvl, cat, msg in MESSAGES]
         + TRACE_LINES
         + ["> " + LOG4J1.format(lvl="INFO", cat="cloud.agent.AgentShell", msg="Agent started"),
            "4711:" + LOG4J1.format(lvl="WARN", cat="cloud.agent.Agent", msg="Caught: "),
            "\ufeff" + LOG4J2.format(lvl="INFO", cat="cloud.agent.Agent", msg="Ready command is processed"),
            "2024-03-01T10:00:00.123456+01:00 kvm-1 cloudstack-agent[77]: "
            + LOG4J1.format(lvl="INFO", cat="cloud.agent.AgentShell", msg="Agent started")[24:]])
LOG_LINE = st.one_of(mutated(LINES), mutated(LINES), st.sampled_from(LINES), st.text(max_size=60))
LOG_LINES = st.lists(LOG_LINE, max_size=25)


@st.composite
def log_file(draw: st.DrawFn) -> tuple[bytes, str]:
    """A log file's bytes and its shape: plain text (lenient UTF-8, a last line still being
    written), binary garbage, or gzip whole, cut short, with a byte flipped, or followed
    by another member or by garbage."""
    if draw(st.booleans()):
        text = "\n".join(draw(LOG_LINES)) + draw(st.sampled_from(["\n", ""]))
        data = text.encode()
    else:
        data = draw(st.binary(max_size=200))
    shape = draw(st.sampled_from(("plain", "gzip", "gzip-cut", "gzip-flipped", "gzip-twice", "gzip-garbage")))
    if shape == "plain":
        return data, shape
    packed = gzip.compress(data)
    if shape == "gzip-cut":
        return packed[:draw(st.integers(2, len(packed) - 1))], shape
    if shape == "gzip-flipped":
        at = draw(st.integers(0, len(packed) - 1))
        return packed[:at] + bytes([packed[at] ^ draw(st.integers(1, 255))]) + packed[at + 1:], shape
    if shape == "gzip-twice":
        return packed + gzip.compress(data[::-1]), shape
    if shape == "gzip-garbage":
        return packed + draw(st.binary(min_size=1, max_size=12)), shape
    return packed, shape


def check_events(events: list[LogEvent], files: Sequence[str]) -> None:
    for event in events:
        assert event.kind in KINDS
        assert event.file in files and event.line >= 1


@settings(max_examples=250, **FUZZ)
@given(current=log_file(), rotated=st.lists(log_file(), max_size=2))
def test_any_rotated_set_of_log_files_is_read_to_events_and_a_one_line_status(current, rotated):
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "agent.log"
        log.write_bytes(current[0])
        names = [str(log)]
        for number, (data, _) in enumerate(rotated, 1):
            older = Path(f"{log}.{number}.gz" if number > 1 else f"{log}.{number}")
            older.write_bytes(data)
            names.append(str(older))
        problems: list[str] = []
        check_events(list(iter_events(reversed(names), problems, now=NOW)), names)
        assert all(one_line(problem) for problem in problems)
        events, status = read_agent_log(str(log))
    check_events(events, names)
    assert status.name == "agent-log" and one_line(status.detail)
    if current[1] == "gzip-cut":
        assert not status.ok and "truncated" in status.detail


@settings(max_examples=600, **FUZZ)
@given(lines=LOG_LINES, cuts=st.lists(st.integers(0, 25), max_size=4))
def test_a_log_read_as_it_grows_says_what_one_whole_read_says(lines, cuts):
    parser = IncrementalParser("agent.log")
    events: list[LogEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(lines)]:
        events += parser.feed(lines[start:cut])
        start = max(start, cut)
    events += parser.flush()
    assert parser.line == len(lines)
    assert events == list(parse_lines(lines, "agent.log", now=time.time()))


def reading_state() -> dict[str, Any]:
    """What a reader leaves for the next one mid-file, every part filled in: a pool type
    learned, a delete request still waiting for its pool (a bare `Processing command:`
    with no request line before it), a failure seen, a trace open."""
    parser = IncrementalParser("agent.log")
    parser.feed([LOG4J1.format(lvl=lvl, cat=cat, msg=msg) for lvl, cat, msg in MESSAGES[:1] + MESSAGES[14:]]
                + TRACE_LINES[:3])
    parser.feed([LOG4J1.format(lvl="WARN", cat="cloud.agent.Agent", msg="Caught: "), TRACE_LINES[0]])
    state: dict[str, Any] = json.loads(json.dumps(parser.state()))
    return state


READING_STATE = reading_state()


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths_of(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths_of(inner, (*prefix, index))
    return found


STATE_PATHS = paths_of(READING_STATE)[1:]


def replaced(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    """A copy of `value` with what is at `path` replaced by `new`, or taken out."""
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    head, rest = path[0], path[1:]
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = replaced(copy[head], rest, new, delete)
    return copy


def test_the_reading_state_fixture_has_every_part_filled_in():
    assert READING_STATE["pending"] is not None
    messages = READING_STATE["messages"]
    assert messages["pool_types"] and messages["delete_waiting"] and messages["recent_failures"]


@settings(max_examples=400, **FUZZ)
@given(edits=st.lists(st.tuples(st.sampled_from(STATE_PATHS), JSON_VALUES, st.booleans()), min_size=1, max_size=3),
       lines=LOG_LINES)
def test_a_damaged_reading_state_is_refused_with_value_error_or_read_on(edits, lines):
    """The state comes back from the history file, which anything may have written: one
    this code did not write is refused, never read on into events with made-up lines."""
    state: Any = READING_STATE
    for path, new, delete in edits:
        if path in paths_of(state):
            state = replaced(state, path, new, delete)
    try:
        parser = IncrementalParser.resumed("agent.log", state, 7)
    except ValueError:
        return
    events = parser.feed(lines) + parser.flush()
    assert all(event.kind in KINDS and event.file == "agent.log" and event.line >= 0 for event in events)


# -- agent.properties ---------------------------------------------------------------------------

PROPERTY_LINES = [
    "#Storage", "#Sat Nov 21 12:00:00 UTC 2026", "! a comment", "",
    "host=10.20.0.10,10.20.0.11@roundrobin", "host = ms1.example.org", "host=@MSHOST@",
    "host=ms1,\\", "    ms2", "host=10.20.0.10\\u002c10.20.0.11", "port=8250", "port : 99999", "port=+08250", "port",
    "guid=4f5e6d7c-8b9a-4c3d-2e1f-0a9b8c7d6e5f", "zone=1", "pod=@POD@", "cluster 3",
    f"local.storage.uuid={UUID},{UUID.upper()}", "workers=5", "hypervisor.type=kvm",
    "resource=com.cloud.hypervisor.kvm.resource.LibvirtComputingResource",
    "keystore.passphrase=s3cr3t\\u0021", "guid\\u0067=caf\\u00e9\\t", "zone=\\uZZZZ", "pod\\=x\\:y=\\\\",
]


@settings(max_examples=550, **FUZZ)
@given(lines=st.lists(st.one_of(mutated(PROPERTY_LINES), st.text(max_size=30)), max_size=15),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), tail=st.binary(max_size=8))
def test_any_agent_properties_file_is_read_with_a_one_line_status(lines, newline, tail):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.properties"
        path.write_bytes(newline.join(lines).encode() + tail)
        props, status = read_agent_properties(str(path))
    assert props is not None and status.ok and one_line(status.detail)
    assert 0 < props.port < 65536
    assert all(host and host == host.strip() for host in props.hosts)


def test_a_host_with_an_escaped_newline_is_shown_escaped_in_the_status(tmp_path):
    path = tmp_path / "agent.properties"
    path.write_text("host=1\\n0.20.0.10,10.20.0.11@roundrobin")
    props, status = read_agent_properties(str(path))
    assert props is not None and props.hosts == ("1\n0.20.0.10", "10.20.0.11")
    assert one_line(status.detail) and "'1\\n0.20.0.10', 10.20.0.11 port" in status.detail


def test_a_placeholder_with_an_escaped_newline_is_shown_escaped_in_the_status(tmp_path):
    path = tmp_path / "agent.properties"
    path.write_text("host=@MS\\nHOST@\nguid=g\n")
    _, status = read_agent_properties(str(path))
    assert one_line(status.detail) and "placeholder '@MS\\nHOST@'" in status.detail


# -- libvirt's pool XML -------------------------------------------------------------------------

EXTRA_ELEMENTS = ["capacity", "allocation", "available", "adapter", "auth", "secret", "permissions", "mode",
                  "owner", "group", "label", "features", "cow", "host", "dir", "device", "format", "name", "path"]
ATTRIBUTE_NAMES = ["type", "name", "port", "path", "unit", "usage", "uuid", "username"]
TEXT_VALUES = st.one_of(
    st.sampled_from(["", "10.0.0.5", "mon1.example.org", "glusterfs", "nfs", "auto", "/export/primary", "rbdpool",
                     "iqn.2010-01.com.example:storage", UUID, UUID.upper(), f" {UUID}\n", UUID[:-1], f"{UUID}x"]),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=12),
)
"""Text XML can carry; the mutations of the serialized tree make the XML itself broken."""
PORT_VALUES = st.one_of(
    st.sampled_from(["6789", "3370", "24007", "0", "65535", "65536", "-1", "+80", " 80", ""]),
    st.text(st.characters(categories=("Nd",)), min_size=1, max_size=5),
    st.text(st.characters(categories=("No",)), min_size=1, max_size=5),
    st.integers(4301, 6000).map(lambda digits: "9" * digits),
    st.text(max_size=6),
)
"""Ports as libvirt writes them, and digits int() refuses: other scripts' numerals,
superscripts, more digits than it converts."""


def element(tag: str, attributes: dict[str, str], text: Optional[str], children: list[ET.Element]) -> ET.Element:
    node = ET.Element(tag, attributes)
    node.text = text
    node.extend(children)
    return node


NO_ATTRIBUTES: st.SearchStrategy[dict[str, str]] = st.just({})
NO_TEXT: st.SearchStrategy[Optional[str]] = st.none()
NO_CHILDREN: st.SearchStrategy[list[ET.Element]] = st.just([])


def xml_node(tag: str, attributes: st.SearchStrategy[dict[str, str]] = NO_ATTRIBUTES,
             text: st.SearchStrategy[Optional[str]] = NO_TEXT,
             children: st.SearchStrategy[list[ET.Element]] = NO_CHILDREN) -> st.SearchStrategy[ET.Element]:
    return st.builds(element, st.just(tag), attributes, text, children)


STRAY = st.recursive(
    st.builds(element, st.sampled_from(EXTRA_ELEMENTS),
              st.dictionaries(st.sampled_from(ATTRIBUTE_NAMES), TEXT_VALUES, max_size=2),
              st.none() | TEXT_VALUES, st.just([])),
    lambda inner: st.builds(element, st.sampled_from(EXTRA_ELEMENTS), st.just({}), st.none(),
                            st.lists(inner, max_size=3)),
    max_leaves=6,
)
"""Elements where libvirt puts none, or other pool types' elements."""
SOURCE = xml_node("source", children=st.lists(st.one_of(
    xml_node("host", st.fixed_dictionaries({"name": TEXT_VALUES, "port": PORT_VALUES})),
    xml_node("host", st.fixed_dictionaries({}, optional={"name": TEXT_VALUES, "port": PORT_VALUES})),
    xml_node("dir", st.fixed_dictionaries({}, optional={"path": TEXT_VALUES})),
    xml_node("device", st.fixed_dictionaries({}, optional={"path": TEXT_VALUES})),
    xml_node("format", st.fixed_dictionaries({}, optional={"type": TEXT_VALUES})),
    xml_node("name", text=st.none() | TEXT_VALUES),
    xml_node("auth", st.fixed_dictionaries({"type": st.just("ceph"), "username": TEXT_VALUES}),
             children=st.lists(xml_node("secret", st.fixed_dictionaries({"uuid": TEXT_VALUES})), max_size=1)),
    STRAY,
), max_size=5))
TARGET = xml_node("target", children=st.lists(st.one_of(
    xml_node("path", text=st.none() | TEXT_VALUES), xml_node("permissions"), STRAY), max_size=3))
POOL_NAME = xml_node("name", text=st.one_of(st.sampled_from([UUID, UUID.upper(), f" {UUID}\n"]),
                                             st.just(UUID), TEXT_VALUES))
POOL_ROOTS = st.builds(
    lambda tag, attributes, name, source, rest: element(tag, attributes, None, name + source + rest),
    st.sampled_from(["pool"] * 5 + ["network"]),
    st.fixed_dictionaries({}, optional={"type": st.sampled_from(["netfs", "rbd", "logical", "dir", "fs", "gluster",
                                                                 "iscsi", "mpath"]) | st.text(max_size=6)}),
    st.sampled_from([1, 1, 1, 0]).flatmap(lambda n: st.lists(POOL_NAME, min_size=n, max_size=n)),
    st.sampled_from([1, 1, 1, 0]).flatmap(lambda n: st.lists(SOURCE, min_size=n, max_size=n)),
    st.lists(st.one_of(SOURCE, TARGET, POOL_NAME, xml_node("uuid", text=TEXT_VALUES), STRAY), max_size=3),
)
"""In libvirt's order (name, source, the rest), each part sometimes missing or repeated."""


@settings(max_examples=500, **FUZZ)
@given(root=POOL_ROOTS, edit=st.booleans(), data=st.data())
def test_any_pool_xml_is_a_pool_or_none(root, edit, data):
    xml = ET.tostring(root, encoding="unicode")
    if edit:
        xml = data.draw(mutated([xml]))
    pool = parse_pool_xml(xml, "running")
    if pool is not None:
        assert pool.origin == "libvirt" and pool.state == "running"
        assert 0 <= pool.source_port < 65536
        assert all(isinstance(host, str) and host for host in pool.source_hosts)


def test_a_port_no_int_reads_is_no_port_not_an_exception():
    for port in ("\u00b2", "9" * 5000):
        xml = (f"<pool type='netfs'><name>{UUID}</name><source><host name='10.0.0.5' port='{port}'/>"
               "</source></pool>")
        pool = parse_pool_xml(xml, "running")
        assert pool is not None and pool.source_port == 0 and pool.source_hosts == ("10.0.0.5",)


# -- the management API -------------------------------------------------------------------------

HOSTNAME = "kvm-1"
CONFIG = ManagementConfig("/etc/cloudstack-guard/management.conf",
                          Credentials("http://ms.example:8080/client/api", "fuzz-api-key", "fuzz-secret"),
                          timeout=1.0)
PROPS = agent_properties("agent.properties", {"host": "ms.example", "guid": "g", "local.storage.uuid": UUID})
IDS = st.sampled_from([UUID, UUID.upper(), "c1", "z1", f"ssd;{UUID}", ""])
HOST_ENTRY = st.fixed_dictionaries({}, optional={
    "id": field(IDS), "name": field(st.sampled_from([HOSTNAME, f"{HOSTNAME}.example.org", "KVM-1", "kvm-2"])),
    "state": field(st.sampled_from(["Up", "Down", "Disconnected", "Alert"])), "clusterid": field(IDS),
    "zoneid": field(IDS), "ipaddress": field(st.sampled_from(["127.0.0.1", "10.9.9.9", "::1"])),
    "type": field(st.just("Routing")), "hypervisor": field(st.just("KVM")),
})
POOL_ENTRY = st.fixed_dictionaries({}, optional={
    "id": field(IDS), "name": field(st.sampled_from(["primary", "ceph-1"])),
    "type": field(st.sampled_from(["NetworkFilesystem", "RBD", "Linstor", "StorPool", "PowerFlex", "Gluster",
                                   "SharedMountPoint", "Filesystem", "Iscsi", "CLVM"])),
    "state": field(st.sampled_from(["Up", "Removed", "Maintenance", "Disabled"])),
    "scope": field(st.sampled_from(["CLUSTER", "ZONE", "HOST", "cluster", "REGION"])),
    "clusterid": field(IDS), "hypervisor": field(st.sampled_from(["KVM", "Any", "VMware"])),
    "ipaddress": field(st.sampled_from(["10.0.0.5", "http://10.0.0.5:3370", ""])),
    "path": field(st.sampled_from(["/export/primary", "rbdpool", ""])),
})


def api_answer(response: str, item: str, entries: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[int, bytes]]:
    """An HTTP status and body for one command: its listing (any count, any items), an
    error in CloudStack's shape or not, another JSON document, or no JSON at all."""
    listing = st.builds(lambda items, count: {response: {"count": count, item: items}},
                        field(st.lists(entries, max_size=4)), field(st.integers(0, 3)))
    error = st.builds(lambda code, text: {response: {"errorcode": code, "errortext": text, "cserrorcode": 4350}},
                      field(st.sampled_from([401, 431, 530])), field(st.sampled_from(["unable to verify user"])))
    documents = st.one_of(
        st.tuples(st.just(200), listing), st.tuples(st.just(200), listing),
        st.tuples(st.sampled_from([401, 431, 500, 530]), error),
        st.tuples(st.sampled_from([200, 200, 404, 502]), JSON_VALUES),
    ).map(lambda answer: (answer[0], json.dumps(answer[1]).encode()))
    raw = st.tuples(st.sampled_from([200, 502]), st.one_of(
        st.binary(max_size=40),
        st.just(b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>\n"),
        st.just(b'{"' + response.encode() + b'":{"count":' + HUGE_NUMBER + b"}}"),
        st.just(DEEP),
    ))
    return st.one_of(documents, documents, documents, raw)


CAPABILITIES = st.one_of(
    st.builds(lambda version: (200, json.dumps({"listcapabilitiesresponse": {"capability": {
        "cloudstackversion": version}}}).encode()), field(st.sampled_from(["4.19.1.0", "4.20.0.0"]))),
    st.tuples(st.sampled_from([200, 401, 500]), JSON_VALUES.map(lambda doc: json.dumps(doc).encode())),
)


FALLBACK = re.compile(r"\S+: \w+(Error|Exception): ")
"""The detail read_management gives an exception it did not foresee."""


class FakeResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        self.reason = "OK" if status == 200 else "Error"

    def getheader(self, name: str) -> str:
        return "application/json; charset=UTF-8"

    def read(self) -> bytes:
        return self.body


class FakeConnection:
    """Stands where http.client's connection does: each command gets the answer drawn for
    it, so the whole way back (status, JSON, its shape, paging) is taken."""

    def __init__(self, answers: dict[str, tuple[int, bytes]]) -> None:
        self.answers = answers
        self.command = ""

    def request(self, method: str, url: str, headers: Optional[dict[str, str]] = None) -> None:
        self.command = parse_qs(urlsplit(url).query)["command"][0]

    def getresponse(self) -> FakeResponse:
        return FakeResponse(*self.answers[self.command])

    def close(self) -> None:
        pass


def one_host(host: dict[str, Any]) -> dict[str, tuple[int, bytes]]:
    """The answers of a server with this one host and no pool."""
    return {"listHosts": (200, json.dumps({"listhostsresponse": {"count": 1, "host": [host]}}).encode()),
            "listCapabilities": (200, b"{}"),
            "listStoragePools": (200, json.dumps({"liststoragepoolsresponse": {}}).encode())}


@settings(max_examples=400, **FUZZ)
@given(hosts=api_answer("listhostsresponse", "host", HOST_ENTRY), capabilities=CAPABILITIES,
       pools=api_answer("liststoragepoolsresponse", "storagepool", POOL_ENTRY),
       host_id=st.sampled_from(["", UUID]))
def test_any_management_answer_is_a_one_line_status(hosts, capabilities, pools, host_id):
    answers = {"listHosts": hosts, "listCapabilities": capabilities, "listStoragePools": pools}
    config = ManagementConfig(CONFIG.credentials_file, CONFIG.credentials, CONFIG.timeout, host_id=host_id)
    with mock.patch.object(Client, "_connection", lambda self: FakeConnection(answers)):
        host, found, elsewhere, status = read_management(config, HOSTNAME, PROPS)
        try:
            cluster = read_cluster_hosts(config, "c1")
        except ManagementError as exc:
            assert one_line(str(exc))
        else:
            assert all(isinstance(peer.name, str) for peer in cluster)
    assert isinstance(status, SourceStatus) and status.name == "management" and one_line(status.detail)
    assert not FALLBACK.match(status.detail), "a failure the source did not put in words"
    if status.ok:
        assert host is not None and all(pool.origin == "management" for pool in found)
        assert not {pool.uuid for pool in found} & set(elsewhere)
    else:
        assert (host, found, elsewhere) == (None, [], ())


def test_an_answer_nested_too_deeply_is_a_management_error():
    answers = {"listHosts": (200, DEEP), "listCapabilities": (200, DEEP)}
    with mock.patch.object(Client, "_connection", lambda self: FakeConnection(answers)):
        _, _, _, status = read_management(CONFIG, HOSTNAME, PROPS)
        with pytest.raises(ManagementError, match="^listHosts: the answer is JSON nested too deeply to read$"):
            read_cluster_hosts(CONFIG, "c1")
    assert not status.ok and "listHosts: the answer is JSON nested too deeply to read" in status.detail


def test_an_unreadable_version_answer_does_not_fail_the_source():
    answers = {**one_host({"id": "h1", "name": HOSTNAME, "state": "Up"}), "listCapabilities": (200, DEEP)}
    with mock.patch.object(Client, "_connection", lambda self: FakeConnection(answers)):
        found, _, _, status = read_management(CONFIG, HOSTNAME, PROPS)
    assert status.ok and found is not None and found.server_version == ""


def test_a_host_name_and_state_with_newlines_are_a_one_line_status():
    answers = one_host({"id": "h1", "name": "kvm-1\nx", "state": "Up\r", "ipaddress": "127.0.0.1"})
    with mock.patch.object(Client, "_connection", lambda self: FakeConnection(answers)):
        host, _, _, status = read_management(CONFIG, HOSTNAME, PROPS)
    assert status.ok and host is not None and host.name == "kvm-1\nx"
    assert status.detail.endswith(": host kvm-1 x (Up), 0 pool(s) in scope")


def test_a_host_whose_address_is_a_list_is_no_match_not_a_type_error():
    answers = one_host({"id": "h1", "name": "kvm-9", "state": "Up", "ipaddress": ["127.0.0.1"]})
    with mock.patch.object(Client, "_connection", lambda self: FakeConnection(answers)):
        _, _, _, status = read_management(CONFIG, HOSTNAME, PROPS)
    assert not status.ok and "no host matches name kvm-1" in status.detail


def test_an_error_code_with_a_newline_is_a_one_line_status():
    body = json.dumps({"listhostsresponse": {"errorcode": "431\nx", "errortext": "bad"}}).encode()
    answers = {"listHosts": (431, body)}
    with mock.patch.object(Client, "_connection", lambda self: FakeConnection(answers)):
        _, _, _, status = read_management(CONFIG, HOSTNAME, PROPS)
    assert not status.ok and one_line(status.detail) and "431 x bad" in status.detail


# -- the LINSTOR controller ---------------------------------------------------------------------

def rest_answer(document: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """What one GET brings back: mostly the JSON the controller sends, else an error in
    LINSTOR's shape (a list of ApiCallRc), a web page, bytes, or the probe error of a
    connection that failed (the wire's own words, fuzzed below)."""
    errors = st.lists(st.fixed_dictionaries({"ret_code": field(st.just(-4611686018427387904)),
                                             "message": field(st.just("Access denied"))},
                                            optional={"cause": JSON_VALUES}), max_size=2)
    body = st.one_of(document.map(lambda doc: json.dumps(doc).encode()), errors.map(lambda doc: json.dumps(doc).encode()),
                     st.just(b"<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n</html>\n"),
                     st.just(b'{"version":' + HUGE_NUMBER + b"}"), st.just(DEEP),
                     st.binary(max_size=30))
    status = st.sampled_from([200, 200, 200, 401, 404, 500, 502]) | st.integers(100, 599)
    answer = st.builds(http.Answer, status, st.just({"content-type": "application/json"}), body)
    failed = st.sampled_from([
        ProbeError("refused", "connection to ctl.example:3370 refused"),
        ProbeError("tls", "TLS handshake with ctl.example:3371 failed: certificate verify failed"),
        ProbeError("bad-answer", "answer cut short or malformed (IncompleteReadError)"),
    ])
    return st.one_of(answer, answer, answer, failed)


VERSION = st.fixed_dictionaries({"version": field(st.sampled_from(["1.26.1", "1.29.0"]))},
                                optional={"git_hash": JSON_VALUES, "build_time": JSON_VALUES,
                                          "rest_api_version": field(st.just("1.20.2"))})
NODES = st.lists(st.fixed_dictionaries(
    {"name": field(st.sampled_from([HOSTNAME, HOSTNAME.upper(), "kvm-2"]))},
    optional={"connection_status": field(st.sampled_from(["ONLINE", "OFFLINE", "CONNECTED", "EVICTED"])),
              "type": field(st.sampled_from(["SATELLITE", "COMBINED"]))}), max_size=3) | JSON_VALUES


@settings(max_examples=380, **FUZZ)
@given(health=rest_answer(JSON_VALUES), version=rest_answer(VERSION), nodes=rest_answer(NODES))
def test_any_linstor_answer_is_a_probe_result_with_a_one_line_detail(health, version, nodes):
    answers = {"/health": health, "/v1/controller/version": version, "/v1/nodes": nodes}

    async def get(target: http.Target, path: str, headers: Optional[dict[str, str]] = None,
                  ssl_context: Any = None, closed_hint: str = "") -> http.Answer:
        answer = answers[path.split("?")[0]]
        if isinstance(answer, ProbeError):
            raise answer
        return answer

    config = LinstorConfig(auth_json="/nonexistent/auth.json", node=HOSTNAME)
    with mock.patch.object(http, "get", get):
        result = asyncio.run(linstor.probe("http://ctl.example:3370", config, 5.0))
    assert result.backend == "linstor" and result.status in PROBE_WORDS and one_line(result.detail)
    if result.status == "healthy":
        assert isinstance(result.version, str) and isinstance(result.node_status, str)


def linstor_probe(answers: dict[str, http.Answer]) -> Any:
    async def get(target: http.Target, path: str, headers: Optional[dict[str, str]] = None,
                  ssl_context: Any = None, closed_hint: str = "") -> http.Answer:
        return answers[path.split("?")[0]]

    with mock.patch.object(http, "get", get):
        return asyncio.run(linstor.probe("http://ctl.example:3370", LinstorConfig(node=HOSTNAME), 5.0))


def test_linstor_answers_nested_too_deeply_are_bad_answers_and_http_errors():
    version = http.Answer(200, {}, b'{"version": "1.26.1"}')
    result = linstor_probe({"/health": http.Answer(200, {}, b""), "/v1/controller/version": version,
                            "/v1/nodes": http.Answer(200, {}, DEEP)})
    assert (result.status, result.detail) == ("bad-answer", "/v1/nodes is not JSON")
    result = linstor_probe({"/health": http.Answer(500, {}, DEEP)})
    assert result.status == "http-error" and result.http_status == 500


def test_a_linstor_error_page_is_a_one_line_detail():
    page = http.Answer(400, {}, b"<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n</html>\n")
    result = linstor_probe({"/health": page})
    assert result.status == "http-error" and result.http_status == 400
    assert one_line(result.detail) and "502 Bad Gateway" in result.detail


# -- the HTTP wire under the REST probes --------------------------------------------------------

HTTP_ANSWERS = [
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"version":"1.26.1"}',
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n[{\"a\"\r\n3\r\n:1}\r\n1\r\n]\r\n0\r\n\r\n",
    b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\r\n[{\"ret_code\":-1,\"message\":\"no\"}]",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
]


class FakeWriter:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


@settings(max_examples=1000, **FUZZ)
@given(raw=st.one_of(mutated_bytes(HTTP_ANSWERS), mutated_bytes(HTTP_ANSWERS), st.binary(max_size=120)))
def test_any_bytes_from_a_rest_peer_are_an_answer_or_a_bad_answer(raw):
    async def go() -> Any:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()

        async def connect(host: str, port: int, tls: Any = None) -> tuple[asyncio.StreamReader, FakeWriter]:
            return reader, FakeWriter()

        with mock.patch.object(wire, "connect", connect):
            try:
                return await http.get(http.Target("http", "ctl.example", 3370, ""), "/v1/nodes")
            except ProbeError as exc:
                return exc

    result = asyncio.run(go())
    if isinstance(result, ProbeError):
        assert result.status == "bad-answer" and one_line(result.detail)
    else:
        assert isinstance(result, http.Answer) and len(result.body) <= http.MAX_BODY_BYTES


# -- StorPool's adaptor log ---------------------------------------------------------------------

SP_LINES = [
    f"2026-11-21 11:00:05,05 StorPoolStorageAdaptor.createStoragePool: uuid=ssd-Template;{UUID}, "
    "host=10.1.1.1:0, path=/dev/storpool, userInfo=null, type=StorPool",
    f"2026-11-21 11:00:06,06 StorPoolStorageAdaptor.getStoragePool: uuid=ssd-Template;{UUID}",
    f"2026-11-21 11:00:07,07 StorPoolStorageAdaptor.deleteStoragePool: uuid=ssd-Template;{UUID}",
    "2026-11-21 11:00:08,08 StorPoolStorageAdaptor.attachOrDetachVolume: attach: name=x, path=/dev/sp-1",
    "StorPoolStorageAdaptor.createStoragePool: uuid=no-stamp;" + UUID,
    "", "\x00\xff binary",
]


@settings(max_examples=350, **FUZZ)
@given(lines=st.lists(st.one_of(mutated(SP_LINES), mutated(SP_LINES), st.text(max_size=30)), max_size=30),
       block=st.sampled_from([16, 64, 4096]), since=st.sampled_from([-math.inf, 0.0, NOW - 7200, NOW]))
def test_any_storpool_log_is_read_to_events_and_a_one_line_status(lines, block, since):
    """A small block makes the bisection and the block edges run on a few lines."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "storpool-agent.log"
        data = "\n".join(lines).encode()
        path.write_bytes(data)
        with mock.patch.object(storpoollog, "_BLOCK", block):
            events, status = storpoollog.StorPoolLog(str(path)).read(since)
    assert status.ok and one_line(status.detail)
    for event in events:
        assert event.kind == "pool-add" and event.pool_type == "StorPool" and event.pool_uuid
        assert event.ts is not None and event.ts >= since
        assert storpoollog._MARK in data[event.line:].split(b"\n", 1)[0]
