"""The iSCSI probe's pure parts: the URL, the endpoint from each view of a pool, and the
verdict on a listing, which must come of any key text at all a target may send. The PDUs
and their parsers are test_iscsi_pdu's."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends import iscsi, iscsi_pdu
from guard.backends.base import Endpoint
from guard.backends.wire import ProbeError
from guard.model import Pool

IQN = "iqn.2010-01.com.example:storage.pool1"
UUID = "6f1a8a54-0000-4000-8000-000000000001"


# -- the URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "host", "port", "iqn", "lun"), [
    (f"iscsi://10.0.0.5/{IQN}/1", "10.0.0.5", 3260, IQN, 1),
    (f"iscsi://san.example:3261/{IQN}/0", "san.example", 3261, IQN, 0),
    (f"ISCSI://[fd00::5]:3262/{IQN}/7", "fd00::5", 3262, IQN, 7),
    (f"iscsi://10.0.0.5/{IQN}", "10.0.0.5", 3260, IQN, None),
    (f"iscsi://10.0.0.5/{IQN}/", "10.0.0.5", 3260, IQN, None),
    ("iscsi://10.0.0.5", "10.0.0.5", 3260, "", None),
    ("iscsi://10.0.0.5:3260/", "10.0.0.5", 3260, "", None),
    ("iscsi://10.0.0.5/eui.0123456789ABCDEF/2", "10.0.0.5", 3260, "eui.0123456789ABCDEF", 2),
    ("iscsi://10.0.0.5/naa.60014055f0e8d2a1/3", "10.0.0.5", 3260, "naa.60014055f0e8d2a1", 3),
    (f"  iscsi://chap:s3cret@10.0.0.5/{IQN}/1 ", "10.0.0.5", 3260, IQN, 1),
])
def test_parse_url_accepts_what_cloudstack_and_operators_write(
    url: str, host: str, port: int, iqn: str, lun: int | None
) -> None:
    target = iscsi.parse_url(url)
    assert (target.host, target.port, target.iqn, target.lun) == (host, port, iqn, lun)


def test_the_shown_url_names_the_port_probed_brackets_ipv6_and_drops_credentials() -> None:
    assert iscsi.parse_url(f"iscsi://10.0.0.5/{IQN}/1").url == f"iscsi://10.0.0.5:3260/{IQN}/1"
    assert iscsi.parse_url("iscsi://[fd00::5]").url == "iscsi://[fd00::5]:3260"
    assert iscsi.parse_url("iscsi://[fd00::5]").portal == "[fd00::5]:3260"
    assert iscsi.parse_url(f"iscsi://u:s3cret@h/{IQN}").url == f"iscsi://h:3260/{IQN}"


@pytest.mark.parametrize(("url", "message"), [
    (f"nfs://10.0.0.5/{IQN}/1", "not an iscsi:// URL"),
    (f"iscsi:/10.0.0.5/{IQN}/1", "not an iscsi:// URL"),
    (f"iscsi:///{IQN}/1", "no host in the iscsi:// URL"),
    (f"iscsi://10.0.0.5:0/{IQN}/1", "port 0 is not a port"),
    (f"iscsi://10.0.0.5:99999/{IQN}/1", "bad host or port"),
    (f"iscsi://10.0.0.5:x/{IQN}/1", "bad host or port"),
    (f"iscsi://[fd00::5/{IQN}/1", "bad host or port"),
    (f"iscsi://10.0.0.5/{IQN}/1?x=1", "a query or fragment has no meaning"),
    (f"iscsi://10.0.0.5/{IQN}/1#frag", "a query or fragment has no meaning"),
    (f"iscsi://10.0.0.5/{IQN}/1/2", "too many path segments: expected /IQN/LUN"),
    ("iscsi://10.0.0.5//1", "empty path segment: expected /IQN/LUN"),
    ("iscsi://10.0.0.5/storage/1", "iSCSI target name must start with iqn., eui. or naa.: 'storage'"),
    (f"iscsi://10.0.0.5/{IQN}/one", "LUN must be a decimal number: 'one'"),
    (f"iscsi://10.0.0.5/{IQN}/-1", "LUN must be a decimal number: '-1'"),
    (f"iscsi://10.0.0.5/{IQN}/{1 << 64}", "LUN must be a decimal number"),
    ("iscsi://10.0.0.5/iqn.2010-01.com.example:a b/1", "a character no iSCSI name has"),
    (f"iscsi://bad%20host/{IQN}/1", "bad host 'bad%20host'"),
    ("iscsi://10.0.0.5/iqn." + "a" * 220 + "/1", "longer than 223 bytes"),
])
def test_parse_url_names_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        iscsi.parse_url(url)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError) as again:
        iscsi.BACKEND.validate(url)
    assert str(again.value) == str(caught.value)


@pytest.mark.parametrize("url", [
    "iscsi://chap:s3cret@10.0.0.5:99999/x", "iscsi://chap:s3cret@/x", "iscsi://chap:s3cret@h/nope/1",
    "iscsi://chap:s3cret@h/iqn.a/x",
])
def test_no_message_quotes_the_credentials(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        iscsi.parse_url(url)
    assert "s3cret" not in str(caught.value)
    result = asyncio.run(iscsi.probe(url, 0.5))
    assert result.status == "bad-answer"
    assert "s3cret" not in result.target + result.detail
    assert result.detail.startswith("unusable iSCSI URL: ")


# -- endpoints -------------------------------------------------------------------------


def management(pool_type: str, ipaddress: str, path: str) -> Pool:
    return Pool(UUID, pool_type, "management", source_hosts=(ipaddress,) if ipaddress else (),
                target=path, source_path=path)


def libvirt(host: str, port: int, device: str) -> Pool:
    return Pool(UUID, "Iscsi", "libvirt", source_hosts=(host,), source_port=port, source_path=device)


def test_endpoint_from_the_management_server_is_the_portal_and_the_pools_iqn_and_lun() -> None:
    found = iscsi.BACKEND.endpoint(management("IscsiLUN", "10.0.0.5", f"/{IQN}/1"))
    assert found == Endpoint(f"iscsi://10.0.0.5:3260/{IQN}/1", "management server")
    found = iscsi.BACKEND.endpoint(management("Iscsi", "fd00::5", f"{IQN}/1"))
    assert found == Endpoint(f"iscsi://[fd00::5]:3260/{IQN}/1", "management server")


def test_endpoint_of_a_managed_pool_is_its_portal_alone() -> None:
    """SolidFire's and Datera's path is their plugin's URL, not an IQN; their ipaddress
    is the storage portal (SolidFirePrimaryDataStoreLifeCycle)."""
    path = "MVIP=10.0.0.1:443;SVIP=10.0.0.2:3260;clusterAdminUsername=admin;clusterDefaultMinIops=200"
    assert iscsi.BACKEND.endpoint(management("Iscsi", "10.0.0.2", path)) == Endpoint(
        "iscsi://10.0.0.2:3260", "management server")
    assert iscsi.BACKEND.endpoint(management("Iscsi", "10.0.0.2", "https://x/a/b?c#d")) == Endpoint(
        "iscsi://10.0.0.2:3260", "management server")


def test_endpoint_from_libvirt_is_the_source_host_port_and_device_path() -> None:
    assert iscsi.BACKEND.endpoint(libvirt("san.example", 3261, IQN)) == Endpoint(
        f"iscsi://san.example:3261/{IQN}", "libvirt pool XML")
    assert iscsi.BACKEND.endpoint(libvirt("san.example", 0, IQN)) == Endpoint(
        f"iscsi://san.example:3260/{IQN}", "libvirt pool XML")
    assert iscsi.BACKEND.endpoint(libvirt("san.example", 0, "")) == Endpoint(
        "iscsi://san.example:3260", "libvirt pool XML")


def test_no_endpoint_without_a_host_for_other_types_or_other_views() -> None:
    assert iscsi.BACKEND.endpoint(management("IscsiLUN", "", f"/{IQN}/1")) is None
    assert iscsi.BACKEND.endpoint(management("NetworkFilesystem", "10.0.0.5", "/export")) is None
    assert iscsi.BACKEND.endpoint(Pool(UUID, "Iscsi", "history")) is None
    assert iscsi.BACKEND.endpoint(Pool(UUID, "Iscsi", "history", source_hosts=("h",))) is None
    assert iscsi.BACKEND.endpoint(management("IscsiLUN", "bad host", f"/{IQN}/1")) is None


def test_the_backend_row() -> None:
    assert (iscsi.BACKEND.name, iscsi.BACKEND.schemes) == ("iscsi", ("iscsi",))


# -- the verdict -----------------------------------------------------------------------


def test_judging_the_listing() -> None:
    target = iscsi.parse_url(f"iscsi://h/{IQN}/1")
    assert iscsi.judge(target, [(IQN.upper(), ())]) == ("healthy", f"target {IQN} listed by h:3260")
    others = [(f"iqn.2010-01.com.example:t{i}", ()) for i in range(7)]
    status, detail = iscsi.judge(target, others)
    assert status == "bad-answer"
    assert detail == (f"portal h:3260 answers but does not list {IQN} (lists: iqn.2010-01.com.example:t0, "
                      "iqn.2010-01.com.example:t1, iqn.2010-01.com.example:t2, iqn.2010-01.com.example:t3, "
                      "iqn.2010-01.com.example:t4 and 2 more)")
    assert iscsi.judge(target, []) == ("bad-answer", f"portal h:3260 answers but does not list {IQN} "
                                                     "(lists: none)")
    assert iscsi.judge(iscsi.parse_url("iscsi://h"), []) == (
        "healthy", "portal h:3260 answers discovery and lists no target")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["TargetName", "TargetAddress", "TargetAlias", "", "x"]),
                          st.text(max_size=20)), max_size=12), st.binary(max_size=200))
def test_random_key_text_never_raises_anything_but_probe_error(pairs: list[tuple[str, str]], noise: bytes) -> None:
    for data in (b"".join(f"{k}={v}\0".encode() for k, v in pairs), noise):
        try:
            listed = iscsi_pdu.parse_send_targets(iscsi_pdu.parse_keys(data))
        except ProbeError:
            continue
        iscsi.judge(iscsi.parse_url(f"iscsi://h/{IQN}"), listed)
        iscsi_pdu.negotiation_answers(iscsi_pdu.parse_keys(data), set())
