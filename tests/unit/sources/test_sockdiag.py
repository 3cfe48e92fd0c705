"""sock_diag against real sockets of this process: the same established connections
psutil reads from /proc/net, IPv4 and IPv6; and where netlink is refused (the daemon's
unit allows AF_UNIX, AF_INET and AF_INET6 only), the agent's connection is still read."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from guard.sources import agent, sockdiag
from guard.sources.sockdiag import Remote


@pytest.fixture
def connections() -> Iterator[set[Remote]]:
    """Two established connections each way on loopback, v4 and v6; yields the remote
    ends this process sees."""
    opened: list[socket.socket] = []
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            server = socket.socket(family)
            opened.append(server)
            server.bind((host, 0))
            server.listen()
            client = socket.create_connection(server.getsockname()[:2], timeout=5)
            accepted, _ = server.accept()
            opened += [client, accepted]
        remotes = set()
        for sock in opened:
            try:
                ip, port = sock.getpeername()[:2]
            except OSError:
                continue  # the listeners
            remotes.add(Remote(ip, port))
        yield remotes
    finally:
        for sock in opened:
            sock.close()


def _psutil_view() -> set[Remote]:
    proc = psutil.Process()
    conns = (proc.net_connections(kind="tcp") if hasattr(proc, "net_connections")
             else proc.connections(kind="tcp"))
    return {Remote(c.raddr.ip, c.raddr.port) for c in conns
            if c.status == psutil.CONN_ESTABLISHED and c.raddr}


def test_sock_diag_sees_what_proc_net_shows(connections: set[Remote]) -> None:
    answer = sockdiag.established([os.getpid()])
    assert answer is not None, "sock_diag refused on this machine"
    found, hidden = answer
    assert not hidden and connections <= set(found)
    assert set(found) == _psutil_view()


def test_a_process_without_sockets_has_no_connections(tmp_path) -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        assert sockdiag.established([child.pid]) == ([], False)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_gone_process_holds_nothing() -> None:
    assert sockdiag.socket_inodes([2 ** 22 + 12345]) == (set(), False)


def test_a_dump_that_ended_early_or_was_interrupted_is_not_taken_as_whole() -> None:
    """The kernel ends an aborted dump with DONE carrying a negative errno, and flags
    a dump the socket table changed under: either way the caller reads /proc instead
    of judging from half the sockets."""
    header = sockdiag._HEADER
    done = header.pack(header.size + 4, sockdiag.NLMSG_DONE, 0x2, 1, 0) + sockdiag._ERRNO.pack(0)
    assert sockdiag.parse(done, socket.AF_INET, []) is True
    aborted = header.pack(header.size + 4, sockdiag.NLMSG_DONE, 0x2, 1, 0) + sockdiag._ERRNO.pack(-errno.EINTR)
    with pytest.raises(sockdiag.Unavailable, match="ended early"):
        sockdiag.parse(aborted, socket.AF_INET, [])
    interrupted = header.pack(header.size + 4, sockdiag.NLMSG_DONE, 0x2 | sockdiag.NLM_F_DUMP_INTR, 1, 0) \
        + sockdiag._ERRNO.pack(0)
    with pytest.raises(sockdiag.Unavailable, match="interrupted"):
        sockdiag.parse(interrupted, socket.AF_INET, [])


def test_without_netlink_the_agent_s_connections_come_from_proc_net(
        connections: set[Remote], monkeypatch: pytest.MonkeyPatch) -> None:
    tree = [psutil.Process()]
    fast, hidden = agent._established(tree)
    assert not hidden and connections <= set(fast)

    real_socket = socket.socket

    def refused(family: int = -1, *args: object, **kwargs: object) -> socket.socket:
        if family == socket.AF_NETLINK:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return real_socket(family, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sockdiag.socket, "socket", refused)
    assert sockdiag.established([os.getpid()]) is None
    slow, hidden = agent._established(tree)
    assert not hidden and set(slow) == set(fast)


def _real_dump_read(family: int) -> bytes:
    """One read of a real dump from this kernel, for the fuzzing below to mutate."""
    link = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, sockdiag.NETLINK_SOCK_DIAG)
    with link:
        body = sockdiag._REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << sockdiag.TCP_ESTABLISHED)
        link.sendto(sockdiag._HEADER.pack(sockdiag._HEADER.size + len(body),
                                          sockdiag.SOCK_DIAG_BY_FAMILY,
                                          sockdiag.NLM_F_REQUEST | sockdiag.NLM_F_DUMP, 1, 0) + body,
                    (0, 0))
        link.settimeout(5)
        return link.recv(65536)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_dump_read_is_sockets_or_unavailable(connections: set[Remote], data: st.DataObject) -> None:
    """Whatever a read holds (a real read cut, bytes flipped, lengths broken), the parser
    gives sockets, the end of the dump, or Unavailable: never another exception, and
    never a loop."""
    family = data.draw(st.sampled_from([socket.AF_INET, socket.AF_INET6]))
    real = bytearray(_real_dump_read(family))
    assume(real)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(real) - 1))
        real[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(real)))
    found: list[tuple[int, Remote]] = []
    try:
        sockdiag.parse(bytes(real[:cut]), family, found)
    except sockdiag.Unavailable as exc:
        assert "\n" not in str(exc)
    assert all(0 <= remote.port < 65536 for _, remote in found)
