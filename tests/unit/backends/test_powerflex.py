"""The PowerFlex backend's pure parts: the URL CloudStack's form takes (and what must never
be printed from it), the endpoint from the management server's listing, the credentials
file, where the SDC lives, and the parsers for what a gateway and drv_cfg print, which
must answer ProbeError and nothing else to whatever bytes they get."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends import powerflex, powerflex_credentials, powerflex_sdc
from guard.backends.wire import ProbeError
from guard.config import AgentConfig, Config, PowerFlexConfig
from guard.model import Pool

# ScaleIOUtil.java's sample output of drv_cfg --query_mdms, with addresses filled in.
SAMPLE = (b"Retrieved 2 mdm(s)\n"
          b"MDM-ID 3ef46cbf2aaf5d0f SDC ID 6b18479c00000003 INSTALLATION ID 68ab55462cbb3ae4 "
          b"IPs [0]-10.0.0.1 [1]-10.0.0.2\n"
          b"MDM-ID 2e706b2740ec200f SDC ID 301b852c00000003 INSTALLATION ID 33f8662e7a5c1e6c "
          b"IPs [0]-10.0.1.1 [1]-10.0.1.2\n")
SECRET = "S3cret-Pa55"


# -- URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "host", "port", "pool"), [
    ("powerflex://gw.example.com/pool1", "gw.example.com", 443, "pool1"),
    ("POWERFLEX://10.0.0.5:8443/pool1", "10.0.0.5", 8443, "pool1"),
    ("powerflex://10.0.0.5", "10.0.0.5", 443, ""),
    ("powerflex://10.0.0.5/", "10.0.0.5", 443, ""),
    ("powerflex://[fd00::5]:8443/p", "fd00::5", 8443, "p"),
    ("powerflex://[fd00::5]/p", "fd00::5", 443, "p"),
    ("powerflex://gw/my%20pool", "gw", 443, "my pool"),
    ("  powerflex://gw/4daaa55e00000000  ", "gw", 443, "4daaa55e00000000"),
])
def test_good_urls(url: str, host: str, port: int, pool: str) -> None:
    target = powerflex.parse_url(url)
    assert (target.host, target.port, target.pool, target.credentials) == (host, port, pool, None)


def test_userinfo_is_percent_decoded_like_java_uri() -> None:
    target = powerflex.parse_url("powerflex://admin:p%40ss%3Aw%2Fd@gw:8443/pool1")
    assert target.credentials == powerflex_credentials.Credentials("admin", "p@ss:w/d")
    assert (target.host, target.port) == ("gw", 8443)


def test_an_unencoded_at_in_the_password_still_finds_the_host() -> None:
    target = powerflex.parse_url(f"powerflex://admin:{SECRET}@x@gw/pool1")
    assert target.host == "gw"
    assert target.credentials is not None and target.credentials.password == f"{SECRET}@x"


def test_the_shown_url_and_repr_never_carry_the_password() -> None:
    target = powerflex.parse_url(f"powerflex://admin:{SECRET}@gw/pool1")
    assert target.url == "powerflex://gw:443/pool1"
    assert SECRET not in repr(target)
    assert target.credentials is not None and SECRET not in repr(target.credentials)
    assert powerflex.parse_url("powerflex://[fd00::5]/p").url == "powerflex://[fd00::5]:443/p"


@pytest.mark.parametrize(("url", "words"), [
    ("https://gw/pool1", "not a PowerFlex URL"),
    ("gw/pool1", "not a PowerFlex URL"),
    ("powerflex:/gw/pool1", "not a PowerFlex URL"),
    ("powerflex:///pool1", "gateway address names no host"),
    ("powerflex://gw:0/p", "not a TCP port"),
    ("powerflex://gw:65536/p", "not a TCP port"),
    ("powerflex://gw:https/p", "not a TCP port"),
    ("powerflex://gw:/p", "not a TCP port"),
    ("powerflex://gw?x=1", "query or fragment"),
    ("powerflex://g_w!/p", "characters no host name has"),
    ("powerflex://fd00::5/p", "in brackets"),
    ("powerflex://[fd00::5/p", "unclosed"),
    ("powerflex://[nothere]/p", "not an IPv6 address"),
    ("powerflex://[fd00::5]x/p", "unexpected text"),
    ("powerflex://admin@gw/p", "no password"),
    ("powerflex://:pw@gw/p", "empty"),
    ("powerflex://admin:@gw/p", "empty"),
    ("powerflex://gw/a%0Ab", "control characters"),
    ("powerflex://ad%0Amin:pw@gw/p", "control characters"),
])
def test_bad_urls_say_what_is_wrong_in_one_line(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        powerflex.parse_url(url)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError):
        powerflex.BACKEND.validate(url)


@pytest.mark.parametrize("url", [
    f"powerflex://admin:{SECRET}#x@gw/pool1",      # '#' ends the authority: port "S3cret-Pa55"
    f"powerflex://admin:{SECRET}?x@gw/pool1",
    f"powerflex://admin:{SECRET}/x@gw/pool1",
    f"powerflex://admin:{SECRET}@gw:bad/pool1",
])
def test_a_password_a_parser_misplaces_is_never_in_the_message(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        powerflex.parse_url(url)
    assert SECRET not in str(caught.value)
    assert "percent-encoded" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=4, alphabet="ab1@:/?#[]%.-_ ") | st.text(min_size=4), st.text())
def test_no_parse_error_ever_quotes_the_password(password: str, tail: str) -> None:
    """Not even when it holds what ends a URL's authority (/ ? # @ [ ]) where it stands:
    the password is fenced by a mark no message has, so no piece of it may show."""
    fenced = f"\u00a7{password}\u00a7"
    url = f"powerflex://admin:{fenced}@{tail.replace(chr(0xa7), '')}"
    try:
        powerflex.parse_url(url)
    except ValueError as exc:
        assert "\u00a7" not in str(exc), str(exc)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.text().map(lambda t: "powerflex://" + t)))
def test_parse_url_raises_only_value_error_and_its_shown_url_parses_back(text: str) -> None:
    try:
        target = powerflex.parse_url(text)
    except ValueError:
        return
    again = powerflex.parse_url(target.url)
    assert (again.host, again.port, again.pool, again.credentials) == (target.host, target.port,
                                                                       target.pool, None)


def test_unparsable_url_shown_without_anything_before_the_last_at() -> None:
    assert powerflex._shown(f"powerflex://admin:{SECRET}#x@gw/p") == "powerflex://gw/p"
    assert powerflex._shown(f"admin:{SECRET}@gw") == "gw"


# -- endpoint ---------------------------------------------------------------------------


def management_pool(**kwargs: object) -> Pool:
    values: dict = {"uuid": "u1", "type": "PowerFlex", "origin": "management",
                    "source_hosts": ("10.0.0.5",), "source_path": "4daaa55e00000000"}
    values.update(kwargs)
    return Pool(**values)


def test_endpoint_from_the_management_listing_is_the_gateway_so_its_pools_are_probed_once() -> None:
    endpoint = powerflex.BACKEND.endpoint(management_pool())
    assert endpoint == ("powerflex://10.0.0.5", "management server")
    other = powerflex.BACKEND.endpoint(management_pool(source_path="5ebbb66f00000001"))
    assert other == endpoint
    powerflex.BACKEND.validate(endpoint.url)


def test_endpoint_brackets_an_ipv6_gateway_and_works_without_a_path() -> None:
    endpoint = powerflex.BACKEND.endpoint(management_pool(source_hosts=("fd00::5",), source_path=""))
    assert endpoint is not None and endpoint.url == "powerflex://[fd00::5]"
    assert powerflex.parse_url(endpoint.url).host == "fd00::5"


@pytest.mark.parametrize("pool", [
    management_pool(type="Linstor"),
    management_pool(source_hosts=()),
    management_pool(source_hosts=("not a host",)),
    management_pool(origin="libvirt"),
    Pool("u1", "PowerFlex", "libvirt", source_hosts=("10.0.0.5",), source_path="pool1"),
])
def test_no_endpoint_from_a_view_that_does_not_say(pool: Pool) -> None:
    assert powerflex.BACKEND.endpoint(pool) is None


def test_backend_name_and_scheme() -> None:
    assert (powerflex.BACKEND.name, powerflex.BACKEND.schemes) == ("powerflex", ("powerflex",))


# -- credentials file -------------------------------------------------------------------


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def test_credentials_file(tmp_path: Path) -> None:
    path = write(tmp_path / "pf.ini", f"[powerflex]\nusername = admin\npassword = {SECRET}\n")
    credentials = powerflex_credentials.load_credentials(path)
    assert credentials == powerflex_credentials.Credentials("admin", SECRET)
    assert SECRET not in repr(credentials)


@pytest.mark.parametrize(("text", "words"), [
    ("[other]\nusername = a\n", r"section \[powerflex\] missing"),
    ("[powerflex]\nusername = admin\n", "'powerflex.password' is missing"),
    (f"[powerflex]\npassword = {SECRET}\n", "'powerflex.username' is missing"),
    (f"password = {SECRET}\n", "MissingSectionHeaderError at line 1"),
    (f"[powerflex]\nusername = a\n{SECRET}\n", "ParsingError at line 3"),
    (f"[powerflex]\npassword = a\npassword = {SECRET}\n", "DuplicateOptionError at line 3"),
])
def test_bad_credentials_files_name_the_file_and_never_the_password(
    tmp_path: Path, text: str, words: str
) -> None:
    path = write(tmp_path / "pf.ini", text)
    with pytest.raises(ValueError, match=words) as caught:
        powerflex_credentials.load_credentials(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert SECRET not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_and_non_utf8_credentials(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        powerflex_credentials.load_credentials(str(tmp_path / "missing.ini"))
    path = tmp_path / "latin.ini"
    path.write_bytes(b"[powerflex]\nusername = a\npassword = \xe9\xff\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        powerflex_credentials.load_credentials(str(path))


# -- SDC home ---------------------------------------------------------------------------


def test_sdc_home_from_config_then_agent_properties_then_default(tmp_path: Path) -> None:
    props = tmp_path / "agent.properties"
    props.write_text("powerflex.sdc.home.dir = /srv/sdc \nhost=ms1\n", encoding="utf-8")
    agent = AgentConfig(properties=str(props))
    assert powerflex_sdc.sdc_home(Config(agent=agent)) == "/srv/sdc"
    assert powerflex_sdc.sdc_home(Config(agent=agent, powerflex=PowerFlexConfig(sdc_home="/x"))) == "/x"
    props.write_text("#powerflex.sdc.home.dir=/srv/sdc\n", encoding="utf-8")
    assert powerflex_sdc.sdc_home(Config(agent=agent)) == "/opt/emc/scaleio/sdc"
    missing = AgentConfig(properties=str(tmp_path / "absent.properties"))
    assert powerflex_sdc.sdc_home(Config(agent=missing)) == "/opt/emc/scaleio/sdc"


# -- drv_cfg --query_mdms ---------------------------------------------------------------


def test_the_documented_sample() -> None:
    assert powerflex_sdc.parse_query_mdms(SAMPLE) == (
        powerflex_sdc.Mdm("3ef46cbf2aaf5d0f", "6b18479c00000003", "68ab55462cbb3ae4", ("10.0.0.1", "10.0.0.2")),
        powerflex_sdc.Mdm("2e706b2740ec200f", "301b852c00000003", "33f8662e7a5c1e6c", ("10.0.1.1", "10.0.1.2")),
    )


def test_no_mdm_and_variants() -> None:
    assert powerflex_sdc.parse_query_mdms(b"Retrieved 0 mdm(s)\n") == ()
    only = powerflex_sdc.parse_query_mdms(b"MDM-ID 0x3EF46CBF2AAF5D0F SDC ID 6b18479c00000003\n")
    assert only == (powerflex_sdc.Mdm("3ef46cbf2aaf5d0f", "6b18479c00000003", "", ()),)


@pytest.mark.parametrize(("output", "words"), [
    (b"", "neither"),
    (b"drv_cfg: unknown option\n", "neither"),
    (b"Retrieved 1 mdm(s)\n", "listed none"),
    (b"Retrieved 1 mdm(s)\nMDM-ID zzz SDC ID 1\n", "never prints"),
    (b"x" * (powerflex_sdc.MAX_DRV_CFG_OUTPUT + 1), "more than"),
])
def test_what_drv_cfg_never_prints_is_bad_answer(output: bytes, words: str) -> None:
    with pytest.raises(ProbeError, match=words) as caught:
        powerflex_sdc.parse_query_mdms(output)
    assert caught.value.status == "bad-answer"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_drv_cfg_output_never_raises_anything_else(output: bytes) -> None:
    try:
        powerflex_sdc.parse_query_mdms(output)
    except ProbeError as exc:
        assert exc.status == "bad-answer"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(SAMPLE)), st.binary(max_size=64))
def test_truncated_or_extended_samples_never_raise_anything_else(cut: int, tail: bytes) -> None:
    try:
        powerflex_sdc.parse_query_mdms(SAMPLE[:cut] + tail)
    except ProbeError as exc:
        assert exc.status == "bad-answer"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="MDM-ID SDCINSTALLATONPs0123456789abcdefx[]-.\n", max_size=300))
def test_near_miss_text_never_raises_anything_else(text: str) -> None:
    try:
        powerflex_sdc.parse_query_mdms(text.encode())
    except ProbeError as exc:
        assert exc.status == "bad-answer"


# -- gateway answers --------------------------------------------------------------------


def test_token_and_version_are_bare_json_strings() -> None:
    assert powerflex.parse_token(b'"YWRtaW46MTYxMjM0NTY3ODkw"') == "YWRtaW46MTYxMjM0NTY3ODkw"
    assert powerflex.parse_version(b'"3.6"') == "3.6"
    assert powerflex.parse_version(b' "4.5.2.100"\n') == "4.5.2.100"


@pytest.mark.parametrize("body", [
    b"", b"3.6", b'{"version": "3.6"}', b'"It works"', b"<html><body>It works!</body></html>",
    b'""', b'"3.6\\u0000"', b'"' + b"9" * 100 + b'"', b"\xff\xfe",
])
def test_a_version_that_is_no_version_is_bad_answer(body: bytes) -> None:
    with pytest.raises(ProbeError) as caught:
        powerflex.parse_version(body)
    assert caught.value.status == "bad-answer"


@pytest.mark.parametrize("body", [b'"two words"', b"<html>It works!</html>", b"[]", b'"' + b"t" * 5000 + b'"'])
def test_a_token_that_is_no_token_is_bad_answer(body: bytes) -> None:
    with pytest.raises(ProbeError) as caught:
        powerflex.parse_token(body)
    assert caught.value.status == "bad-answer"


def test_gateway_error_message_from_its_error_object_else_its_text() -> None:
    body = b'{"message":"Unauthorized","httpStatusCode":401,"errorCode":0}'
    assert powerflex.gateway_message(body) == "Unauthorized"
    assert powerflex.gateway_message(b"<h1>Bad\x00Gateway</h1>\r\n") == "<h1>Bad Gateway</h1>"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_gateway_bodies_never_raise_anything_else(body: bytes) -> None:
    for parse in (powerflex.parse_token, powerflex.parse_version):
        try:
            parse(body)
        except ProbeError as exc:
            assert exc.status == "bad-answer"
    message = powerflex.gateway_message(body)
    assert message.isprintable() and len(message) <= 200


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=20))
def test_any_json_value_never_raises_anything_else(value: object) -> None:
    body = json.dumps(value).encode()
    for parse in (powerflex.parse_token, powerflex.parse_version):
        try:
            parse(body)
        except ProbeError as exc:
            assert exc.status == "bad-answer"
    assert powerflex.gateway_message(body).isprintable()


def test_deeply_nested_error_json_is_text_not_recursion_error() -> None:
    nested = b"[" * 4000 + b"]" * 4000
    assert powerflex.gateway_message(nested).startswith("[[[")


def test_status_ranking_puts_unreachable_before_wrong_answers() -> None:
    ranks = {s: powerflex._rank(s) for s in ("healthy", "auth", "bad-answer", "http-error",
                                            "refused", "timeout", "dns", "tls")}
    assert ranks["healthy"] < ranks["auth"] == ranks["bad-answer"] == ranks["http-error"] < ranks["refused"]
    assert ranks["refused"] == ranks["timeout"] == ranks["dns"] == ranks["tls"]
