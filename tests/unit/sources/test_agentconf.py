"""agent.properties: java.util.Properties.load semantics, rule by rule, a round trip through
Properties.store's escaping, and what the guard makes of the agent's keys."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.sources.agentconf import (
    DEFAULT_PORT,
    MAX_BYTES,
    agent_properties,
    parse_properties,
    parse_properties_notes,
    read_agent_properties,
)
from tests.support.paths import DATA
from tests.support.unprivileged import read_as_nobody

FIXTURES = DATA / "agentconf"


# ---------------------------------------------------------------- Properties.load rules


def test_comments_and_blank_lines():
    text = "# c\n! c\n   # indented\n\t! tab\n\f# form feed\n\n   \n\t\nkey=value\n"
    assert parse_properties(text) == {"key": "value"}


def test_separators_and_whitespace_around_them():
    text = ("a=1\nb:2\nc 3\nd\t4\ne\f5\nf = 6\ng : 7\nh   8\ni = = 9\nj:=10\nk = :11\nl\n"
            "m=\n  n  \n")
    assert parse_properties(text) == {
        "a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8",
        "i": "= 9", "j": "=10", "k": ":11", "l": "", "m": "", "n": "",
    }


def test_value_keeps_trailing_whitespace_and_inner_separators():
    assert parse_properties("url = http://h:3370/a=b  ") == {"url": "http://h:3370/a=b  "}


def test_escapes():
    text = ("t=a\\tb\\nc\\rd\\fe\n"
            "u=\\u0041\\u00e9\\u20AC\n"
            "o=\\q\\\\\\z\\=\\:\\#\\!\n"
            "lead=\\  x\n")
    assert parse_properties(text) == {
        "t": "a\tb\nc\rd\fe", "u": "Aé€", "o": "q\\z=:#!", "lead": "  x"}


def test_escaped_separators_in_keys():
    text = "a\\=b=c\na\\:b:c\na\\ b c\n\\#not-comment=1\n\\!also=2\n"
    assert parse_properties(text) == {
        "a=b": "c", "a:b": "c", "a b": "c", "#not-comment": "1", "!also": "2"}


def test_continuation_lines():
    cases = {
        "k=a\\\n   b\\\n\tc": {"k": "abc"},
        "k=a\\\\\nx=y": {"k": "a\\", "x": "y"},
        "k=a\\\\\\\n b": {"k": "a\\b"},
        "k=a\\\n#b": {"k": "a#b"},
        "k=a\\\n!b": {"k": "a!b"},
        "#c\\\nk=v": {"k": "v"},
        "k=a\\\n\nx=y": {"k": "a", "x": "y"},
        "k=a\\\n   \nx=y": {"k": "a", "x": "y"},
        "k\\\n  =v": {"k": "v"},
        "k=v\\": {"k": "v"},
        "\\\n\nx=1": {"x": "1"},
        "\\": {"": ""},
        "k=a\\\r\n  b": {"k": "ab"},
        "k=a\\\r  b": {"k": "ab"},
    }
    for text, expected in cases.items():
        assert parse_properties(text) == expected, repr(text)


def test_line_terminators_are_only_cr_lf_crlf():
    assert parse_properties("a=1\rb=2\r\nc=3\n") == {"a": "1", "b": "2", "c": "3"}
    assert parse_properties("a=1\x0bb=2\x85c\u2028d\x1ce") == {"a": "1\x0bb=2\x85c\u2028d\x1ce"}


def test_last_duplicate_wins_and_empty_key():
    assert parse_properties("a=1\na=2\n=v\n") == {"a": "2", "": "v"}
    assert parse_properties(":w") == {"": "w"}


def test_malformed_unicode_escape_is_kept_as_text_and_noted():
    values, notes = parse_properties_notes("a=\\u12G4x\nb=\\u12\nc=\\u\n")
    assert values == {"a": "\\u12G4x", "b": "\\u12", "c": "\\u"}
    assert len(notes) == 3 and all("malformed" in n for n in notes)


def test_surrogate_pairs_combine_and_lone_ones_survive():
    assert parse_properties("s=\\uD83D\\uDE00\nl=\\uD800x") == {"s": "😀", "l": "\ud800x"}


def test_tricky_fixture_file():
    props, status = read_agent_properties(str(FIXTURES / "tricky.properties"))
    assert status.ok
    assert dict(props.values) == {
        "key.with.spaces": "value with trailing space ",
        "host": "10.0.0.1 ,10.0.0.2",
        "port": "8251",
        "escaped=key:name x": "a\tbé\\",
        "continued": "onetwo\\",
        "after": "1",
        "not.continued": "2",
        "zone": "last",
    }
    assert props.hosts == ("10.0.0.1", "10.0.0.2") and props.port == 8251


def java_store_escape(text: str, is_key: bool, escape_unicode: bool) -> str:
    """Properties.saveConvert, as store() applies it to keys and values."""
    out = []
    for i, c in enumerate(text):
        code = ord(c)
        if 61 < code < 127:
            out.append("\\\\" if c == "\\" else c)
        elif c == " ":
            out.append("\\ " if i == 0 or is_key else " ")
        elif c in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
        elif c in "=:#!":
            out.append("\\" + c)
        elif (code < 0x20 or code > 0x7E) and escape_unicode:
            units = c.encode("utf-16-be")
            out.extend(f"\\u{units[j] << 8 | units[j + 1]:04X}" for j in range(0, len(units), 2))
        else:
            out.append(c)
    return "".join(out)


def java_store(values: dict[str, str], escape_unicode: bool) -> str:
    lines = ["#Storage", "#Sat Nov 21 12:00:00 UTC 2026"]
    lines += [f"{java_store_escape(k, True, escape_unicode)}="
              f"{java_store_escape(v, False, escape_unicode)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(values=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8),
       escape_unicode=st.booleans())
def test_round_trip_through_java_store(values, escape_unicode):
    assert parse_properties(java_store(values, escape_unicode)) == values


PROPERTY_ALPHABET = st.one_of(
    st.sampled_from(list("ab=: \t\f\\\n\r#!u0F")), st.characters())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=PROPERTY_ALPHABET, max_size=200))
def test_random_text_never_raises(text):
    values, notes = parse_properties_notes(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
    agent_properties("x", values, notes)


# ---------------------------------------------------------------- the agent's view


def test_real_layout_fixture():
    props, status = read_agent_properties(str(FIXTURES / "agent.properties"))
    assert status.ok and status.name == "agent-properties"
    assert props.hosts == ("10.20.0.10", "10.20.0.11")
    assert props.lb_algorithm == "roundrobin"
    assert props.port == 8250
    assert props.guid == "4f5e6d7c-8b9a-4c3d-2e1f-0a9b8c7d6e5f"
    assert (props.zone, props.pod, props.cluster) == ("1", "1", "3")
    assert props.local_storage_uuids == (
        "a1b2c3d4-0000-4000-8000-000000000001", "a1b2c3d4-0000-4000-8000-000000000002")
    assert props.values["hypervisor.uri"] == "qemu:///system"
    assert props.notes == ()
    assert "10.20.0.10, 10.20.0.11" in status.detail


def test_properties_are_read_only():
    props, _ = read_agent_properties(str(FIXTURES / "agent.properties"))
    with pytest.raises(TypeError):
        props.values["host"] = "elsewhere"
    with pytest.raises(dataclasses.FrozenInstanceError):
        props.port = 1


@pytest.mark.parametrize(("host", "hosts", "lb", "noted"), [
    (" 10.0.0.1 , 10.0.0.2 ,,@shuffle", ("10.0.0.1", "10.0.0.2"), "shuffle", False),
    ("ms1.example.org", ("ms1.example.org",), "", False),
    ("fd00::10,fd00::11@static", ("fd00::10", "fd00::11"), "static", False),
    ("@MSHOST@", (), "", True),
    (",", (), "", True),
    (None, ("localhost",), "", True),
])
def test_host_list(host, hosts, lb, noted):
    values = {"guid": "g"} if host is None else {"guid": "g", "host": host}
    props = agent_properties("p", values)
    assert (props.hosts, props.lb_algorithm) == (hosts, lb)
    assert bool(props.notes) == noted


@pytest.mark.parametrize(("raw", "port", "noted"), [
    ("8250", 8250, False), ("+9000", 9000, False), ("82x50", DEFAULT_PORT, True),
    ("70000", DEFAULT_PORT, True), ("0", DEFAULT_PORT, True), ("", DEFAULT_PORT, True),
    ("٩٠٠٠", 9000, False), ("8250 ", 8250, False), (None, DEFAULT_PORT, False),
])
def test_port(raw, port, noted):
    values = {"guid": "g", "host": "h"}
    if raw is not None:
        values["port"] = raw
    props = agent_properties("p", values)
    assert props.port == port
    assert any("port" in n for n in props.notes) == noted


def test_placeholders_and_missing_guid():
    props = agent_properties("p", {"host": "h", "zone": "@ZONE@", "pod": "@POD@", "cluster": "7"})
    assert (props.zone, props.pod, props.cluster, props.guid) == ("", "", "7", "")
    assert any("guid" in n for n in props.notes)
    assert props.local_storage_uuids == ()


def test_utf8_then_latin1(tmp_path):
    utf8 = tmp_path / "utf8.properties"
    utf8.write_bytes("guid=g\nhost=h\nzone=Zürich\n".encode())
    latin = tmp_path / "latin1.properties"
    latin.write_bytes("guid=g\nhost=h\nzone=Zürich\n".encode("latin-1"))
    for path in (utf8, latin):
        props, status = read_agent_properties(str(path))
        assert status.ok and props.zone == "Zürich"


def test_missing_file_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "agent.properties"
    props, status = read_agent_properties(str(path))
    assert props is None and not status.ok and status.name == "agent-properties"
    assert str(path) in status.detail and "guard.toml" in status.detail


def test_directory_instead_of_file(tmp_path):
    props, status = read_agent_properties(str(tmp_path))
    assert props is None and not status.ok and str(tmp_path) in status.detail


def test_unreadable_file(world_tmp):
    path = world_tmp / "agent.properties"
    path.write_text("host=h\n")
    path.chmod(0)
    result = read_as_nobody("guard.sources.agentconf", "read_agent_properties", str(path))
    assert not result["found"] and not result["ok"] and "root" in result["detail"]


def test_oversized_file_is_cut_and_noted(tmp_path):
    path = tmp_path / "agent.properties"
    path.write_bytes(b"guid=g\nhost=h\n" + b"#" * (MAX_BYTES + 10))
    props, status = read_agent_properties(str(path))
    assert status.ok and props.hosts == ("h",)
    assert any("first" in n for n in props.notes) and "first" in status.detail


def test_the_heartbeat_retry_sleep_is_read_as_the_agent_reads_it(tmp_path):
    """KVMHABase: milliseconds as a Long; the default (10000) when missing, blank or not
    a whole number, as AgentPropertiesFileHandler's converter answers."""
    from guard.sources.agentconf import heartbeat_retry_sleep_s

    def read(text: str) -> float:
        path = tmp_path / "agent.properties"
        path.write_text(text)
        return heartbeat_retry_sleep_s(read_agent_properties(str(path))[0])

    assert heartbeat_retry_sleep_s(None) == 10.0
    assert read("host=10.0.0.1\n") == 10.0
    assert read("kvm.heartbeat.update.retry.sleep=2000\n") == 2.0
    assert read("kvm.heartbeat.update.retry.sleep = 500 \n") == 0.5
    for unusable in ("", "   ", "ten", "2.5", "-3", "0x10", "\u0661\u0662", str(2**63)):
        assert read(f"kvm.heartbeat.update.retry.sleep={unusable}\n") == 10.0, unusable
