"""The StorPool backend's pure parts: the URL grammar, endpoint(), StorPool's config files
as StorPool reads them, storpool_confget's lines as the agent reads them, the ServicesList
answer, and the HA heartbeat's judgement of `storpool -j service list`."""

from __future__ import annotations

import json
import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends.base import Endpoint
from guard.backends.storpool import BACKEND, parse_url, redact
from guard.backends.storpool_conf import (
    heartbeat_verdict,
    parse_conf_text,
    parse_confget_output,
    parse_services,
    read_conf,
)
from guard.backends.wire import ProbeError
from guard.model import Pool

TOKEN = "8847465629873658472"
HOST = "kvm1.example.org"


def services(clients: dict[str, object], **data: object) -> bytes:
    return json.dumps({"generation": 7, "data": {"clients": clients, **data}}).encode()


def client(node: object, status: object = "running") -> dict[str, object]:
    return {"id": node, "nodeId": node, "status": status, "version": "21.0"}


# -- the URL grammar -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown", "host", "port", "token"), [
    ("storpool:", "storpool:", None, 81, None),
    ("  STORPOOL:  ", "storpool:", None, 81, None),
    ("storpool://", "storpool:", None, 81, None),
    ("storpool://10.1.2.3", "storpool://10.1.2.3:81", "10.1.2.3", 81, None),
    ("storpool://sp-api:8081/", "storpool://sp-api:8081", "sp-api", 8081, None),
    ("storpool://[fd00::1]:81", "storpool://[fd00::1]:81", "fd00::1", 81, None),
    (f"SP_API_HTTP=10.2.87.30:81;SP_AUTH_TOKEN={TOKEN};SP_TEMPLATE=ssd",
     "SP_API_HTTP=10.2.87.30:81;SP_TEMPLATE=ssd", "10.2.87.30", 81, TOKEN),
    (f"SP_TEMPLATE=hdd;SP_AUTH_TOKEN={TOKEN};SP_API_HTTP=sp1:8080",
     "SP_API_HTTP=sp1:8080;SP_TEMPLATE=hdd", "sp1", 8080, TOKEN),
    (f"storpool:SP_API_HTTP=sp1;SP_AUTH_TOKEN={TOKEN}", "SP_API_HTTP=sp1", "sp1", 80, TOKEN),
    # Java's split("=") cuts "x=" into one part: CloudStack skips the pair, the last one wins.
    (f"SP_API_HTTP=sp1:81;SP_TEMPLATE=;SP_AUTH_TOKEN=old;SP_AUTH_TOKEN={TOKEN}",
     "SP_API_HTTP=sp1:81", "sp1", 81, TOKEN),
])
def test_parse_url_accepts_storpool_and_cloudstack_forms(text, shown, host, port, token):
    target = parse_url(text)
    assert (target.shown, target.host, target.port, target.token) == (shown, host, port, token)
    assert TOKEN not in target.shown and TOKEN not in repr(target)


def test_a_cloudstack_url_without_a_port_is_port_80_as_in_storpool_util():
    """StorPoolUtil builds http://<SP_API_HTTP>/ctrl/1.0/: no port there is HTTP's own."""
    assert parse_url(f"SP_API_HTTP=sp1;SP_AUTH_TOKEN={TOKEN}").port == 80
    assert parse_url("storpool://sp1").port == 81


@pytest.mark.parametrize(("text", "message"), [
    ("", "not empty"),
    ("storpool: x", "no blanks"),
    ("sp-api:81", "not a StorPool URL"),
    ("http://sp-api:81", "not a StorPool URL"),
    (f"SP_AUTH_TOKEN={TOKEN};SP_TEMPLATE=ssd", "no SP_API_HTTP"),
    ("SP_API_HTTP=sp1:81;SP_TEMPLATE=ssd", "no SP_AUTH_TOKEN"),
    (f"SP_API_HTTP=sp1:81;SP_AUTH_TOKEN={TOKEN}=x", "no SP_AUTH_TOKEN"),
    (f"SP_API_HTTP=http://sp1:81;SP_AUTH_TOKEN={TOKEN}", "must be HOST[:PORT]"),
    (f"SP_API_HTTP=sp1:99999;SP_AUTH_TOKEN={TOKEN}", "SP_API_HTTP 'sp1:99999' is not HOST[:PORT]"),
    (f"SP_API_HTTP=sp1:81;SP_AUTH_TOKEN={TOKEN}\u00e9", "cannot carry"),
    ("storpool://user:pw@sp1", "must be HOST[:PORT]"),
    ("storpool://sp1/path", "must be HOST[:PORT]"),
])
def test_parse_url_names_the_problem_and_never_the_token(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_url(text)
    assert TOKEN not in str(caught.value) and "pw" not in str(caught.value)


def test_redact_hides_the_token_of_any_text():
    assert redact(f"SP_API_HTTP=a:1;SP_AUTH_TOKEN={TOKEN};x") == "SP_API_HTTP=a:1;SP_AUTH_TOKEN=***;x"


def test_the_backend_claims_storpool_urls_and_nothing_else():
    assert BACKEND.claims("storpool:") and BACKEND.claims(f"SP_API_HTTP=a;SP_AUTH_TOKEN={TOKEN}")
    assert not BACKEND.claims("http://linstor:3370") and not BACKEND.claims("nfs://n/x")
    BACKEND.validate("storpool:")
    with pytest.raises(ValueError):
        BACKEND.validate("storpool://a:b")


# -- endpoint ----------------------------------------------------------------------------

SP_ID = "ssd;4f3c2b1a-0d9e-4c8b-a7f6-5e4d3c2b1a09"


@pytest.mark.parametrize("origin", ["management", "libvirt", "history"])
def test_every_storpool_pool_is_this_hosts_storpool_conf(origin):
    """One endpoint for all: the heartbeat asks this host's CLI whatever pool it beats for,
    and the management server's view (host n/a, path /dev/storpool-byid/) names no API."""
    pool = Pool(SP_ID, "StorPool", origin, source_hosts=("n/a",), source_path="/dev/storpool-byid/")
    assert BACKEND.endpoint(pool) == Endpoint("storpool:", "storpool.conf")


def test_other_pool_types_have_no_storpool_endpoint():
    assert BACKEND.endpoint(Pool("5e4a1c2b-3d4e-4f50-8a6b-7c8d9e0f1a2b", "Linstor", "management",
                                 url="http://ctl:3370")) is None


# -- storpool.conf -----------------------------------------------------------------------


def test_conf_sections_apply_to_their_host_only_and_after_the_global_lines():
    text = (f"SP_OURID=1\n[{HOST}]\nSP_OURID = 7\n[kvm1]\nSP_OURID=9\n[other]\nSP_OURID=2\n"
            "SP_API_HTTP_HOST=10.0.0.9\n")
    assert parse_conf_text(text, HOST).values == {"SP_OURID": "7"}
    # No short-name fallback: StorPool matches the section to platform.node() exactly.
    assert parse_conf_text(text, "kvm1.other.org").values == {"SP_OURID": "1"}
    assert parse_conf_text(text, "").values == {"SP_OURID": "1"}


def test_conf_comments_blanks_and_values_as_confget_reads_them():
    text = ("# a comment\n   ; another\n\n  SP_API_HTTP_HOST =  10.0.0.5   \n"
            "SP_AUTH_TOKEN=\"123\" # kept\nSP_CLUSTER_NAME='a b'\n"
            "SP_IFACE=eth0,\\\n  eth1\nSP_EMPTY=\n")
    assert parse_conf_text(text, HOST).values == {
        "SP_API_HTTP_HOST": "10.0.0.5",
        "SP_AUTH_TOKEN": "\"123\" # kept",
        "SP_CLUSTER_NAME": "'a b'",
        "SP_IFACE": "eth0,  eth1",
        "SP_EMPTY": "",
    }


def test_conf_garbage_lines_are_counted_not_fatal():
    parsed = parse_conf_text("SP_OURID=3\nthis is not a setting\n[]\n=5\n\x00\xff\n", HOST)
    assert parsed.values == {"SP_OURID": "3"}
    assert parsed.unreadable == (2, 3, 4, 5)


def test_read_conf_reads_conf_d_sorted_after_the_main_file_and_skips_dot_files(tmp_path):
    main = tmp_path / "storpool.conf"
    main.write_text(f"SP_OURID=1\nSP_API_HTTP_PORT=8081\n[{socket.gethostname()}]\nSP_AUTH_TOKEN=a\n")
    (tmp_path / "storpool.conf.d").mkdir()
    (tmp_path / "storpool.conf.d" / "20-late.conf").write_text("SP_OURID=20\n")
    (tmp_path / "storpool.conf.d" / "10-early.conf").write_text("SP_OURID=10\nSP_API_HTTP_HOST=sp\n")
    (tmp_path / "storpool.conf.d" / ".30-hidden.conf").write_text("SP_OURID=30\n")
    (tmp_path / "storpool.conf.d" / "40-backup.conf.bak").write_text("SP_OURID=40\n")
    conf = read_conf(str(main), socket.gethostname())
    assert conf.found and conf.problems == ()
    assert (conf.our_id, conf.api_host, conf.api_port, conf.token) == ("20", "sp", 8081, "a")


def test_read_conf_defaults_and_a_missing_file(tmp_path):
    main = tmp_path / "storpool.conf"
    main.write_text("SP_OURID=4\nnot a line\n")
    conf = read_conf(str(main), HOST)
    assert (conf.api_host, conf.api_port, conf.token) == ("127.0.0.1", 81, "")
    assert conf.problems == (f"{main}: StorPool would refuse line(s) 2",)
    missing = read_conf(str(tmp_path / "absent.conf"), HOST)
    assert not missing.found and "No such file" in missing.problems[0]
    main.write_text("SP_API_HTTP_PORT=eighty-one\n")
    assert read_conf(str(main), HOST).api_port is None


def test_the_token_is_kept_out_of_the_conf_repr(tmp_path):
    main = tmp_path / "storpool.conf"
    main.write_text(f"SP_AUTH_TOKEN={TOKEN}\n")
    assert TOKEN not in repr(read_conf(str(main), HOST))


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(max_size=20))
def test_the_conf_parser_takes_any_text(text, hostname):
    parsed = parse_conf_text(text, hostname)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.values.items())


# -- storpool_confget --------------------------------------------------------------------


def test_confget_lines_as_the_agent_splits_them():
    text = "SP_OURID=3\r\nSP_EMPTY=\nSP_URL=a=b\nSP_OURID=4\nnoise\nSP_TRAIL=5=\n"
    assert parse_confget_output(text) == {"SP_OURID": "3", "SP_TRAIL": "5"}


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_the_confget_parser_takes_any_text(text):
    assert isinstance(parse_confget_output(text), dict)


# -- the ServicesList answer ---------------------------------------------------------------


def test_a_services_list_answer_summarised():
    body = services({"3": client(3), "5": client(5, "down")}, clusterStatus="running",
                    servers={"1": client(1)}, mgmt={"id": 65535, "nodeId": 1, "status": "running"})
    answer = parse_services(200, body)
    assert answer.summary == ("cluster running, clients 1/2 running, servers 1/1 running, "
                              "mgmt 1/1 running")
    assert [answer.client_status(n) for n in ("3", "5", "9")] == ["running", "down", "absent"]


@pytest.mark.parametrize(("status", "body", "word", "said"), [
    (401, {"error": {"name": "authFailed", "descr": "bad token", "transient": False}}, "auth",
     "HTTP 401: authFailed: bad token"),
    (200, {"error": {"name": "clusterNotReady", "descr": "no quorum", "transient": True}},
     "http-error", "HTTP 200: clusterNotReady: no quorum (transient)"),
    (500, {"error": "plain text"}, "http-error", "HTTP 500: : plain text"),
    (502, {"data": {}}, "http-error", "HTTP 502"),
    (200, {"generation": 1}, "bad-answer", "no data object"),
    (200, [1, 2], "bad-answer", "no data object"),
])
def test_services_list_refusals(status, body, word, said):
    with pytest.raises(ProbeError) as caught:
        parse_services(status, json.dumps(body).encode())
    assert caught.value.status == word and said in caught.value.detail
    assert caught.value.http_status == status


def test_a_web_page_is_no_services_list():
    with pytest.raises(ProbeError, match="no JSON: '<h1>Bad Request</h1>"):
        parse_services(400, b"<h1>Bad Request</h1>\r\n")


def check_services(status: int, body: bytes) -> None:
    """Read, or refused with a status word: never any other exception."""
    try:
        answer = parse_services(status, body)
    except ProbeError as exc:
        assert exc.status in ("http-error", "auth", "bad-answer") and exc.http_status == status
    else:
        assert status == 200 and isinstance(answer.summary, str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
services_like = st.fixed_dictionaries({"data": st.fixed_dictionaries(
    {}, optional={"clients": json_values | st.dictionaries(st.text(max_size=3), st.dictionaries(
        st.sampled_from(["id", "nodeId", "status"]), json_values), max_size=4),
        "servers": json_values, "mgmt": json_values, "clusterStatus": json_values})})


@settings(max_examples=200, deadline=None)
@given(st.integers(100, 599), json_values | services_like)
def test_any_json_answer_is_read_or_refused_as_a_probe_error(status, document):
    check_services(status, json.dumps(document).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_answer_is_read_or_refused_as_a_probe_error(body):
    check_services(200, body)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200))
def test_truncated_answers_are_probe_errors(cut):
    body = services({"3": client(3)}, clusterStatus="running")
    try:
        parse_services(200, body[:cut])
    except ProbeError as exc:
        assert exc.status == "bad-answer"


def test_a_deeply_nested_answer_is_a_bad_answer_not_a_recursion_error():
    with pytest.raises(ProbeError):
        parse_services(200, b"[" * 100_000)


# -- the heartbeat's judgement (StorPoolStoragePool.checkingHeartBeat) ------------------------


@pytest.mark.parametrize(("output", "our_id", "outcome", "node"), [
    (services({"1": client(1, "down"), "3": client(3)}), "3", "up", "running"),
    (services({"3": client(3, "down")}), "3", "down", "down"),
    (services({"3": client(3, "unknown-state")}), "3", "down", "down"),
    (services({"1": client(1)}), "3", "down", "absent"),
    (services({}), "3", "down", "absent"),
    # the heartbeat compares nodeId, not the key
    (services({"3": {"nodeId": 4, "status": "running"}}), "3", "down", "absent"),
    # gson reads "3" and 3.0 as the int 3
    (services({"9": {"nodeId": "3", "status": "running"}}), "3", "up", "running"),
    (services({"9": {"nodeId": 3.0, "status": ["running"]}}), "3", "up", "running"),
    (json.dumps({"error": {"name": "x", "descr": "no quorum"}}).encode(), "3", "down", "unknown"),
    (b"Error: cannot connect to the API", "3", "down", "unknown"),
    (services({"3": client(3)}) + b" trailing", "3", "down", "unknown"),
    # entries are read in order, each before the comparison: a broken one first throws ...
    (services({"1": {"status": "running"}, "3": client(3)}), "3", "crash", "unknown"),
    # ... a broken one after the match is never read
    (services({"3": client(3), "1": {"status": "running"}}), "3", "up", "running"),
    (services({"1": {"nodeId": 1, "status": None}}), "3", "crash", "unknown"),
    (services({"1": {"nodeId": True, "status": "running"}}), "3", "crash", "unknown"),
    (services({"1": "running"}), "3", "crash", "unknown"),
    (json.dumps({"data": {"servers": {}}}).encode(), "3", "crash", "unknown"),
    (json.dumps({"data": None}).encode(), "3", "crash", "unknown"),
    (b"[]", "3", "crash", "unknown"),
    (b"", "3", "crash", "unknown"),
    (b"  \n", "3", "crash", "unknown"),
    (services({"3": client(3)}), "", "crash", "unknown"),
    (services({"3": client(3)}), " 3", "crash", "unknown"),
    (services({"3": client(3)}), "99999999999", "crash", "unknown"),
])
def test_the_heartbeat_verdict(output, our_id, outcome, node):
    verdict = heartbeat_verdict(output, our_id)
    assert (verdict.outcome, verdict.client) == (outcome, node), verdict.why


def test_the_verdict_says_why():
    assert "SP_OURID 3" in heartbeat_verdict(services({"3": client(3, "down")}), "3").why
    assert "Integer.parseInt" in heartbeat_verdict(b"{}", "").why


@settings(max_examples=200, deadline=None)
@given(json_values | services_like, st.text(max_size=12))
def test_the_verdict_takes_any_json_and_any_node_id(document, our_id):
    verdict = heartbeat_verdict(json.dumps(document).encode(), our_id)
    assert verdict.outcome in ("up", "down", "crash")
    assert verdict.client in ("running", "down", "absent", "unknown")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["3", "", "x"]))
def test_the_verdict_takes_any_bytes(output, our_id):
    assert heartbeat_verdict(output, our_id).outcome in ("up", "down", "crash")
