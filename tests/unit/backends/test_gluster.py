"""The Gluster probe's URL grammar, its endpoints from both views of a pool, and its DUMP
parser: the real answer of a glusterd is read right, glusterd is told from other GlusterFS
services, and nothing a peer sends raises anything but ProbeError."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.backends import gluster
from guard.backends.gluster import Program, Target
from guard.backends.wire import ProbeError
from guard.model import Pool

WHAT = "the reply from 127.0.0.1:24007 to a GlusterFS DUMP call"
PEER = "127.0.0.1:24007"

GLUSTERD_10_3 = bytes.fromhex(
    "00000000000000000000000000000000000000010000000747462d44554d500000000000075bb86d0000000000000001"
    "0000000100000011476c757374657244207376632070656572000000000000000012e5a5000000000000000200000001"
    "0000001a476c7573746572442073766320636c6920726561642d6f6e6c790000000000000012e5bf0000000000000002"
    "0000000100000011476c75737465724420737663206d676d74000000000000000012e5a1000000000000000200000001"
    "00000014476c75737465724420737663206d676d74207633000000000012e5a10000000000000003000000010000000f"
    "476c757374657220506f72746d617000000000000208aec000000000000000010000000100000011476c757374657220"
    "48616e647368616b650000000000000000dbb4a900000000000000020000000100000016476c7573746572204d474d54"
    "2048616e647368616b650000000000000012eb41000000000000000100000000"
)
"""The results of DUMP as glusterd 10.3 (Debian 12) sent them, captured on loopback."""


def dump(programs: list[tuple[str, int, int]], op_ret: int = 0, op_errno: int = 0) -> bytes:
    data = struct.pack(">Qii", 0, op_ret, op_errno)
    for name, number, version in programs:
        raw = name.encode()
        data += struct.pack(">II", 1, len(raw)) + raw + b"\0" * (-len(raw) % 4)
        data += struct.pack(">QQ", number, version)
    return data + struct.pack(">I", 0)


# -- URLs ----------------------------------------------------------------------------------


def test_good_urls():
    assert gluster.parse_url("gluster://10.0.0.7/vol0") == Target("10.0.0.7", 24007, "vol0")
    assert gluster.parse_url("GLUSTER://gl.example:24008/vol0/") == Target("gl.example", 24008, "vol0")
    assert gluster.parse_url("gluster://[fd00::7]/vol0").url == "gluster://[fd00::7]:24007/vol0"
    assert gluster.parse_url("gluster://admin:s3cret@10.0.0.7/vol0").url == "gluster://10.0.0.7:24007/vol0"


@pytest.mark.parametrize(("url", "message"), [
    ("gluster://10.0.0.7", "no volume in 'gluster://10.0.0.7', want gluster://HOST[:PORT]/VOLUME"),
    ("gluster://10.0.0.7/", "no volume in 'gluster://10.0.0.7/', want gluster://HOST[:PORT]/VOLUME"),
    ("nfs://10.0.0.7/vol0", "not a gluster:// URL: 'nfs://10.0.0.7/vol0', want gluster://HOST[:PORT]/VOLUME"),
    ("gluster:///vol0", "no host in 'gluster:///vol0', want gluster://HOST[:PORT]/VOLUME"),
    ("gluster://h:70000/v", "not a usable URL (bad host or port): 'gluster://h:70000/v', "
                            "want gluster://HOST[:PORT]/VOLUME"),
    ("gluster://h:0/v", "port 0 in 'gluster://h:0/v'"),
    ("gluster://h/v?x", "a query or fragment in 'gluster://h/v?x': a Gluster URL has neither"),
])
def test_bad_urls_say_what_is_wrong(url: str, message: str):
    with pytest.raises(ValueError) as caught:
        gluster.parse_url(url)
    assert str(caught.value) == message
    with pytest.raises(ValueError):
        gluster.BACKEND.validate(url)


def test_a_secret_never_reaches_an_error_message_or_the_result():
    with pytest.raises(ValueError) as caught:
        gluster.parse_url("gluster://u:s3cret@h:99999/v")
    assert "s3cret" not in str(caught.value)
    result = asyncio.run(gluster.probe("gluster://u:s3cret@h", 1.0))
    assert (result.status, result.target) == ("bad-answer", "gluster://h")
    assert "s3cret" not in result.detail


# -- endpoints -----------------------------------------------------------------------------


def pool(origin: str, hosts: tuple[str, ...] = ("10.0.0.7",), path: str = "/vol0", port: int = 0,
         kind: str = "Gluster") -> Pool:
    return Pool("c0ffee00-0000-4000-8000-000000000002", kind, origin, source_hosts=hosts,
                source_path=path, source_port=port)


def test_endpoint_from_the_management_server_drops_the_leading_slash():
    found = gluster.BACKEND.endpoint(pool("management"))
    assert found is not None
    assert (found.url, found.source) == ("gluster://10.0.0.7/vol0", "management server")


def test_endpoint_from_libvirt():
    netfs = gluster.BACKEND.endpoint(pool("libvirt", ("gl.example",), "/vol0", 24008))
    assert netfs is not None
    assert (netfs.url, netfs.source) == ("gluster://gl.example:24008/vol0", "libvirt pool XML")
    native = gluster.BACKEND.endpoint(pool("libvirt", ("gl.example",), "vol0"))
    assert native is not None and native.url == "gluster://gl.example/vol0"
    v6 = gluster.BACKEND.endpoint(pool("libvirt", ("fd00::7",)))
    assert v6 is not None and v6.url == "gluster://[fd00::7]/vol0"


def test_no_endpoint_without_what_it_needs():
    assert gluster.BACKEND.endpoint(pool("management", kind="NetworkFilesystem")) is None
    assert gluster.BACKEND.endpoint(pool("management", hosts=())) is None
    assert gluster.BACKEND.endpoint(pool("management", path="/")) is None
    assert gluster.BACKEND.endpoint(pool("history")) is None


# -- DUMP ----------------------------------------------------------------------------------


def test_the_answer_of_a_real_glusterd():
    parsed = gluster.parse_dump(GLUSTERD_10_3, WHAT)
    assert (parsed.gfs_id, parsed.op_ret, parsed.op_errno) == (0, 0, 0)
    assert parsed.programs[0] == Program("GF-DUMP", 123451501, 1)
    assert Program("GlusterD svc mgmt", 1238433, 2) in parsed.programs
    assert len(parsed.programs) == 8
    detail = gluster.judge(parsed, PEER, "vol0")
    assert detail.startswith(f"glusterd answers on {PEER} (8 programs: GF-DUMP, Gluster Handshake, ")
    assert detail.endswith("); the volume vol0 is not checked")


def test_a_service_without_glusterd_management_is_not_glusterd():
    brick = gluster.parse_dump(dump([("GF-DUMP", 123451501, 1), ("GlusterFS 4.x v1", 1298437, 400)]), WHAT)
    with pytest.raises(ProbeError) as caught:
        gluster.judge(brick, PEER, "vol0")
    assert caught.value.status == "bad-answer"
    assert caught.value.detail == (f"{PEER} answers DUMP but is not glusterd: no glusterd management "
                                   "program among [GF-DUMP, GlusterFS 4.x v1]")


def test_a_failed_dump_is_a_bad_answer():
    failed = gluster.parse_dump(dump([], op_ret=-1, op_errno=22), WHAT)
    with pytest.raises(ProbeError) as caught:
        gluster.judge(failed, PEER, "vol0")
    assert caught.value.detail == f"{PEER} answered DUMP with an error (op_ret -1, errno 22)"


def test_an_endless_program_list_is_refused():
    many = dump([("p", 1, 1)] * (gluster.MAX_PROGRAMS + 1))
    with pytest.raises(ProbeError) as caught:
        gluster.parse_dump(many, WHAT)
    assert caught.value.detail == f"{WHAT}: more than {gluster.MAX_PROGRAMS} programs"


def test_a_pointer_that_is_not_a_bool_is_refused():
    with pytest.raises(ProbeError) as caught:
        gluster.parse_dump(struct.pack(">QiiI", 0, 0, 0, 2), WHAT)
    assert caught.value.detail == f"{WHAT}: program list pointer is 2, not an XDR bool"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_never_raise_anything_but_probe_error(data: bytes):
    try:
        gluster.judge(gluster.parse_dump(data, WHAT), PEER, "vol0")
    except ProbeError as exc:
        assert exc.status == "bad-answer"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GLUSTERD_10_3) - 1))
def test_truncated_answers_are_a_bad_answer(cut: int):
    with pytest.raises(ProbeError):
        gluster.parse_dump(GLUSTERD_10_3[:cut], WHAT)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
                max_size=10),
       st.integers(0xFFFF_FFF0, 0xFFFF_FFFF))
def test_oversized_names_are_refused_and_sane_lists_read_back(programs: list[tuple[str, int, int]],
                                                             size: int):
    parsed = gluster.parse_dump(dump(programs), WHAT)
    assert [(p.name, p.number, p.version) for p in parsed.programs] == programs
    with pytest.raises(ProbeError):
        gluster.parse_dump(struct.pack(">QiiII", 0, 0, 0, 1, size) + b"x" * 64, WHAT)
