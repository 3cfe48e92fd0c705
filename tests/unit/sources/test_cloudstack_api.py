"""The guard's CloudStack API client: its signature is the one ApiServer.verifyRequest
computes (as the emulator computes it, and as cs, an independent signer, does), and its
answers are read as CloudStack writes them."""

from __future__ import annotations

import urllib.parse

import pytest
from cs import CloudStack
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.sources.cloudstack_api import ApiError, _answer, java_encode, signed_query
from tests.support.emulators.management import compute_signature

KEY, SECRET = "api-key-9f1c", "s3cr3t/+=~key"


def parsed(query: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "zoneid", "keyword", "type", "page", "id"]),
                       st.text(max_size=20), max_size=4))
def test_the_signature_is_the_servers_and_cs_agrees(params):
    params = dict(params, command="listStoragePools")
    sent = parsed(signed_query(params, KEY, SECRET, now=1_800_000_000))
    assert sent["signature"] == compute_signature(sent, SECRET)
    if not any("~" in v for v in params.values()):
        # cs leaves `~` as it is where java.net.URLEncoder, and so the server, writes %7E
        theirs = {k: v for k, v in sent.items() if k != "signature"}
        CloudStack("http://x/client/api", KEY, SECRET)._sign(theirs)
        assert theirs["signature"] == sent["signature"]
    assert sent["apiKey"] == KEY and sent["signatureVersion"] == "3"
    assert sent["expires"] == "2027-01-15T08:10:00+0000"


def test_values_are_encoded_as_java_does():
    assert java_encode("a b~c+d*é") == "a%20b%7Ec%2Bd*%C3%A9"


@pytest.mark.parametrize("status,body,said", [
    (200, b'{"listhostsresponse": {"count": 1, "host": [{"id": "h"}]}}', None),
    (401, b'{"listhostsresponse": {"errorcode": 401, "errortext": "unable to verify\\nuser"}}',
     "API error: 401 unable to verify user"),
    (530, b'{"errorresponse": {"errorcode": 530, "errortext": "Internal error"}}', "API error: 530 Internal error"),
    (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
     "HTTP 502 Bad Gateway, the answer is not JSON: text/html, 50 bytes: 502 Bad Gateway"),
    (200, b"", "the answer is not JSON: text/html, empty"),
    (200, b'[1, 2]', "unexpected answer shape"),
    (503, b'{"a": 1, "b": 2}', "HTTP 503 Bad Gateway"),
])
def test_answers_are_read_as_cloudstack_writes_them(status, body, said):
    if said is None:
        assert _answer(status, "OK", "text/javascript; charset=UTF-8", body) == {
            "count": 1, "host": [{"id": "h"}]}
        return
    with pytest.raises(ApiError) as raised:
        _answer(status, "Bad Gateway", "text/html", body)
    assert str(raised.value) == said


def test_a_refused_signature_from_a_host_clock_far_behind_says_so():
    from email.utils import formatdate

    from guard.sources.cloudstack_api import EXPIRES_S, skew_hint

    now = 1_800_000_000.0
    hint = skew_hint(formatdate(now + 3600, usegmt=True), now)
    assert "60 min behind the server's" in hint and "check NTP" in hint and "\n" not in hint
    assert skew_hint(formatdate(now + EXPIRES_S - 120, usegmt=True), now) == "", "the signature was still good"
    assert skew_hint(formatdate(now - 86400, usegmt=True), now) == "", "ahead: expires is not passed"
    assert skew_hint("Mon, 01 Jan 2024 00:00:00 -0000", 1704067200.0 - 3600) != ""
    for broken in ("", "yesterday", "Mon, 99 Foo 2024 99:99:99 GMT", "\x00"):
        assert skew_hint(broken, now) == "", broken
