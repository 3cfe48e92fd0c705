"""The RBD probe's pure parts: the pool URL as CloudStack writes it (and what it must
refuse, without ever repeating the cephx secret), the endpoint from each view of a pool,
and the banner parsers, which must take anything a peer sends for a ProbeError at worst.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends import ceph_banner, rbd
from guard.backends.wire import ProbeError
from guard.model import Pool

SECRET = "AQDz/k9lAAAAABAA+vQ2=="
URL_SAFE_SECRET = "AQDz_k9lAAAAABAA-vQ2=="
ENCODED_SECRET = "AQDz%2Fk9lAAAAABAA%2BvQ2%3D%3D"

V2_BANNER = b"ceph v2\n" + struct.pack("<HQQ", 16, 0x3, 0)


def legacy_addr(family: int, port: int, address: bytes) -> bytes:
    storage = struct.pack(">HH", family, port)
    storage += (b"\0" * 4 + address) if family == ceph_banner.AF_INET6 else address
    return struct.pack("<II", 0, 0) + storage.ljust(128, b"\0")


V1_BANNER = (b"ceph v027" + legacy_addr(ceph_banner.AF_INET, 6789, bytes([10, 0, 0, 1]))
             + legacy_addr(ceph_banner.AF_INET, 40000, bytes([10, 0, 0, 9])))


# -- the URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "monitors", "pool"), [
    ("rbd://mon1/rbdpool", [("mon1", None)], "rbdpool"),
    (f"rbd://cloudstack:{SECRET}@mon1,mon2,mon3/rbdpool",
     [("mon1", None), ("mon2", None), ("mon3", None)], "rbdpool"),
    (f"rbd://cloudstack:{URL_SAFE_SECRET}@10.0.0.1/rbdpool", [("10.0.0.1", None)], "rbdpool"),
    (f"rbd://cloudstack:{ENCODED_SECRET}@10.0.0.1:6789/rbdpool", [("10.0.0.1", 6789)], "rbdpool"),
    ("rbd://admin@mon1/rbdpool", [("mon1", None)], "rbdpool"),
    (f"rbd://odd@user:{SECRET}@mon1/rbdpool", [("mon1", None)], "rbdpool"),  # the last '@' ends it
    # the pool's port, on the last monitor, is every monitor's (LibvirtStoragePoolDef)
    ("rbd://mon1,mon2:3300/rbdpool", [("mon1", 3300), ("mon2", 3300)], "rbdpool"),
    ("rbd://mon1:3300,mon2:6789/rbdpool", [("mon1", 3300), ("mon2", 6789)], "rbdpool"),
    ("rbd://mon1:3300,mon2/rbdpool", [("mon1", 3300), ("mon2", None)], "rbdpool"),
    ("rbd://[2001:db8::1],[2001:db8::2]:3300/p", [("2001:db8::1", 3300), ("2001:db8::2", 3300)], "p"),
    ("RBD://mon1/pool%20one/", [("mon1", None)], "pool one"),
])
def test_parse_url_accepts_what_cloudstack_writes(url, monitors, pool):
    target = rbd.parse_url(url)
    assert [(m.host, m.port) for m in target.monitors] == monitors
    assert target.pool == pool
    assert "@" not in target.url and "AQD" not in target.url


@pytest.mark.parametrize(("url", "message"), [
    ("http://mon1/rbdpool", "not an rbd:// URL"),
    ("mon1/rbdpool", "not an rbd:// URL"),
    ("rbd://mon1", "no /POOL after the monitors"),
    (f"rbd://cloudstack:{SECRET}@mon1", "no /POOL after the monitors"),
    ("rbd://mon1/", "no pool in rbd://mon1/"),
    ("rbd:///rbdpool", "no monitor in the URL"),
    ("rbd://mon1,,mon2/rbdpool", "empty monitor in 'mon1,,mon2'"),
    ("rbd://mon1:port/rbdpool", "monitor 'mon1:port' has a port that is not a TCP port (1-65535)"),
    ("rbd://mon1:70000/rbdpool", "monitor 'mon1:70000' has a port that is not a TCP port (1-65535)"),
    ("rbd://mon1:/rbdpool", "monitor 'mon1:' has a port that is not a TCP port (1-65535)"),
    ("rbd://:6789/rbdpool", "monitor ':6789' names no host"),
    ("rbd://2001:db8::1/rbdpool", "monitor '2001:db8::1' is IPv6 and goes in brackets, [ADDRESS]:PORT"),
    ("rbd://[2001:db8::1/rbdpool", "monitor '[2001:db8::1' has an unclosed '['"),
    ("rbd://[mon1]/rbdpool", "monitor '[mon1]' in [ ] is not an IPv6 address"),
    ("rbd://[::1]x/rbdpool", "unexpected text after the ]: monitor '[::1]x'"),
])
def test_parse_url_names_each_problem(url, message):
    with pytest.raises(ValueError) as caught:
        rbd.parse_url(url)
    assert str(caught.value).startswith(message)
    with pytest.raises(ValueError):
        rbd.BACKEND.validate(url)


def test_secret_never_in_an_error_or_a_shown_url():
    for url in (f"rbd://cloudstack:{SECRET}@mon1", f"rbd://cloudstack:{SECRET}@mon1:x/p",
                f"rbd://cloudstack:{SECRET}@2001:db8::1/p", f"http://cloudstack:{SECRET}@mon1/p",
                f"rbd://cloudstack:{SECRET}@/p"):
        with pytest.raises(ValueError) as caught:
            rbd.parse_url(url)
        for fragment in SECRET.split("/") + ["cloudstack"]:
            assert fragment not in str(caught.value)
            assert fragment not in rbd.shown_url(url)


@given(secret=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_%:",
                      min_size=8, max_size=60),
       user=st.sampled_from(["cloudstack", "admin", "client.cloudstack"]))
@settings(max_examples=200, deadline=None)
def test_any_base64_secret_is_cut_off(secret, user):
    target = rbd.parse_url(f"rbd://{user}:{secret}@mon1,[::1]:3300/rbdpool")
    assert target.url == "rbd://mon1:3300,[::1]:3300/rbdpool"
    assert rbd.shown_url(f"rbd://{user}:{secret}@anything") == "rbd://anything"


def test_unusable_url_is_a_bad_answer_without_the_secret():
    result = asyncio.run(rbd.probe(f"rbd://cloudstack:{SECRET}@mon1", 1.0))
    assert result.status == "bad-answer"
    assert result.detail.startswith("pool URL unusable: no /POOL")
    assert result.target == "rbd://mon1"
    assert "AQD" not in repr(result)


# -- endpoints -------------------------------------------------------------------------


def pool(origin: str, **kwargs) -> Pool:
    values = {"uuid": "b90eae9d-973c-362c-8afc-af88f0743892", "type": "RBD", "origin": origin}
    values.update(kwargs)
    return Pool(**values)


@pytest.mark.parametrize(("view", "url", "source"), [
    (pool("management", source_hosts=("10.0.0.1",), source_path="rbdpool"),
     "rbd://10.0.0.1/rbdpool", "management server"),
    (pool("management", source_hosts=("10.0.0.1,10.0.0.2,10.0.0.3",), source_path="rbdpool"),
     "rbd://10.0.0.1,10.0.0.2,10.0.0.3/rbdpool", "management server"),
    (pool("management", source_hosts=("2001:db8::1,[2001:db8::2]",), source_path="/rbdpool"),
     "rbd://[2001:db8::1],[2001:db8::2]/rbdpool", "management server"),
    (pool("libvirt", source_hosts=("10.0.0.1", "10.0.0.2"), source_port=6789, source_path="rbdpool"),
     "rbd://10.0.0.1,10.0.0.2:6789/rbdpool", "libvirt pool XML"),
    (pool("libvirt", source_hosts=("mon1",), source_path="rbdpool"),
     "rbd://mon1/rbdpool", "libvirt pool XML"),
    (pool("libvirt", source_hosts=("2001:db8::1",), source_port=3300, source_path="rbdpool"),
     "rbd://[2001:db8::1]:3300/rbdpool", "libvirt pool XML"),
])
def test_endpoint_from_each_view(view, url, source):
    endpoint = rbd.BACKEND.endpoint(view)
    assert endpoint is not None
    assert (endpoint.url, endpoint.source) == (url, source)
    assert rbd.parse_url(endpoint.url).url == rbd.parse_url(url).url


@pytest.mark.parametrize("view", [
    pool("management", type="NetworkFilesystem", source_hosts=("10.0.0.1",), source_path="/export"),
    pool("management", source_hosts=(), source_path="rbdpool"),
    pool("management", source_hosts=("10.0.0.1",), source_path=""),
    pool("libvirt", source_hosts=(), source_path="rbdpool"),
    pool("elsewhere", source_hosts=("10.0.0.1",), source_path="rbdpool"),
])
def test_no_endpoint_when_the_view_does_not_say(view):
    assert rbd.BACKEND.endpoint(view) is None


def test_endpoint_carries_no_credentials():
    endpoint = rbd.BACKEND.endpoint(pool("management", source_hosts=("mon1",), source_path="p"))
    assert endpoint is not None and "@" not in endpoint.url


# -- banners ---------------------------------------------------------------------------


def test_client_banners_are_what_the_servers_read():
    # ProtocolV2::_wait_for_peer_banner reads prefix + le16, then that many bytes
    v2 = ceph_banner.CLIENT_BANNER_V2
    assert v2 == b"ceph v2\n\x10\x00" + bytes(16)
    # ProtocolV1::wait_client_banner reads strlen(CEPH_BANNER) + sizeof(ceph_entity_addr)
    assert len(ceph_banner.CLIENT_BANNER_V1) == 9 + 136
    assert ceph_banner.CLIENT_BANNER_V1[:13] == b"ceph v027" + bytes(4)  # the legacy marker
    assert ceph_banner.CLIENT_BANNER_V1[17:19] == b"\x00\x02"  # AF_INET in network order


def test_v2_banner():
    assert ceph_banner.banner_length(V2_BANNER[:8]) == 10
    assert ceph_banner.banner_length(V2_BANNER[:10]) == 26
    banner = ceph_banner.parse_banner(V2_BANNER)
    assert banner == ceph_banner.Banner("msgr2", "features supported 0x3 required 0x0")


def test_v1_banner_names_the_monitor_address():
    assert ceph_banner.banner_length(V1_BANNER[:8]) == 281
    assert ceph_banner.parse_banner(V1_BANNER) == ceph_banner.Banner("msgr1", "monitor at 10.0.0.1:6789")
    v6 = b"ceph v027" + legacy_addr(ceph_banner.AF_INET6, 3300, bytes(15) + b"\x01") + bytes(136)
    assert ceph_banner.parse_banner(v6).info == "monitor at [::1]:3300"
    odd = b"ceph v027" + legacy_addr(1, 0, b"") + bytes(136)
    assert ceph_banner.parse_banner(odd).info == "monitor at an address of family 1"


@pytest.mark.parametrize(("data", "message"), [
    (b"HTTP/1.1 400 Bad", "sent 'HTTP/1.1 400 Bad', not a Ceph banner"),
    (b"SSH-2.0-", "sent 'SSH-2.0-', not a Ceph banner"),
    (b"ceph v2\n\x0f\x00", "msgr2 banner announces 15 bytes of features, expected 16 to 4096"),
    (b"ceph v2\n\xff\xff", "msgr2 banner announces 65535 bytes of features"),
    (b"ceph v", "banner cut short after 6 byte(s)"),
])
def test_not_a_banner(data, message):
    with pytest.raises(ProbeError) as caught:
        ceph_banner.banner_length(data)
    assert caught.value.status == "bad-answer"
    assert caught.value.detail.startswith(message)


def test_v1_lookalike_and_wrong_sizes():
    with pytest.raises(ProbeError, match="not a known Ceph banner"):
        ceph_banner.parse_banner(b"ceph v026" + bytes(272))
    with pytest.raises(ProbeError, match="banner has 25 byte"):
        ceph_banner.parse_banner(V2_BANNER[:-1])
    with pytest.raises(ProbeError, match="banner has 282 byte"):
        ceph_banner.parse_banner(V1_BANNER + b"x")


def read(data: bytes) -> ceph_banner.Banner:
    async def go() -> ceph_banner.Banner:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await ceph_banner.read_banner(reader, "mon1:3300")
    return asyncio.run(go())


def test_read_banner_reads_exactly_one_banner():
    assert read(V2_BANNER + b"frame after it").protocol == "msgr2"
    assert read(V1_BANNER + b"more").protocol == "msgr1"
    with pytest.raises(ProbeError) as caught:
        read(V2_BANNER[:12])
    assert caught.value.detail == "banner from mon1:3300: the peer closed after 2 byte(s)"
    with pytest.raises(ProbeError) as caught:
        read(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert caught.value.detail == "mon1:3300 sent 'HTTP/1.1', not a Ceph banner"


def test_an_oversized_length_is_refused_before_the_payload_is_read():
    async def go() -> int:
        reader = asyncio.StreamReader()
        reader.feed_data(b"ceph v2\n\xff\xff" + bytes(65535))
        reader.feed_eof()
        with pytest.raises(ProbeError, match="announces 65535 bytes"):
            await ceph_banner.read_banner(reader, "mon1:3300")
        return len(await reader.read())
    assert asyncio.run(go()) == 65535


replies = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=300).map(lambda tail: b"ceph v2\n" + tail),
    st.binary(max_size=300).map(lambda tail: b"ceph v027" + tail),
    st.integers(0, len(V2_BANNER)).map(lambda n: V2_BANNER[:n]),
    st.integers(0, len(V1_BANNER)).map(lambda n: V1_BANNER[:n]),
    st.integers(0, 0xFFFF).map(lambda n: b"ceph v2\n" + struct.pack("<H", n) + bytes(min(n, 5000))),
)


@given(replies)
@settings(max_examples=200, deadline=None)
def test_parsers_raise_nothing_but_probe_errors(data):
    for parse in (ceph_banner.banner_length, ceph_banner.parse_banner):
        try:
            parse(data)
        except ProbeError as exc:
            assert exc.status == "bad-answer"


@given(replies)
@settings(max_examples=200, deadline=None)
def test_reader_raises_nothing_but_probe_errors(data):
    try:
        banner = read(data)
    except ProbeError as exc:
        assert exc.status == "bad-answer"
    else:
        assert banner.protocol in ("msgr1", "msgr2")
        assert len(data) >= 26
