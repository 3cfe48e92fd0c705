"""A process tree's established TCP connections, from the kernel's sock_diag netlink
interface (what `ss` uses) instead of /proc/net/tcp and tcp6.

Reading /proc/net/tcp walks the whole established hash table and formats every socket of
the host as text: 5 ms per file on a 24 GiB machine with 200 sockets, and a hypervisor
has more memory (a larger table) and thousands of sockets (consoles, Ceph OSDs, iSCSI
sessions); psutil then parses all of them in Python, on every check and every poll of
the daemon. A sock_diag dump asks for established sockets only and answers in binary.
Which sockets belong to the agent comes from its /proc/PID/fd links, as psutil does it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Iterable
from typing import NamedTuple, Optional

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_DUMP_INTR = 0x10
TCP_ESTABLISHED = 1
DEADLINE_S = 2.0
"""The whole dump's; a kernel that never says DONE must not keep a check reading."""

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, id
# inet_diag_msg: family, state, timer, retrans, sport, dport, src, dst, if + cookie,
# expires, rqueue, wqueue, uid, inode
_MESSAGE = struct.Struct("=BBBBH2s16s16s12xIIIII")
_ERRNO = struct.Struct("=i")


class Remote(NamedTuple):
    ip: str
    port: int


class Unavailable(Exception):
    """sock_diag cannot answer here (no netlink in this sandbox, a kernel without it):
    the caller asks /proc instead."""


def socket_inodes(pids: Iterable[int]) -> tuple[set[int], bool]:
    """The socket inodes the processes hold open, and whether some process's could not
    be seen (another user's: the caller says so); a process that exited holds none."""
    found = set()
    hidden = False
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except FileNotFoundError:
            continue
        except PermissionError:
            hidden = True
            continue
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith("socket:[") and target.endswith("]"):
                found.add(int(target[8:-1]))
    return found, hidden


def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


def _dump(family: int) -> list[tuple[int, Remote]]:
    """(inode, remote end) of every established TCP socket of this family."""
    try:
        link = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as exc:
        raise Unavailable(f"no sock_diag netlink socket: {exc}") from None
    with link:
        body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED)
        request = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY,
                               NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body
        try:
            link.sendto(request, (0, 0))
            return _answers(link, family)
        except OSError as exc:
            raise Unavailable(f"sock_diag dump failed: {exc}") from None


def _answers(link: socket.socket, family: int) -> list[tuple[int, Remote]]:
    found: list[tuple[int, Remote]] = []
    deadline = time.monotonic() + DEADLINE_S
    done = False
    while not done:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unavailable(f"sock_diag dump did not end within {DEADLINE_S:g}s")
        link.settimeout(left)
        data = link.recv(65536)
        if not data:
            raise Unavailable("sock_diag closed before the end of the dump")
        done = parse(data, family, found)
    return found


def parse(data: bytes, family: int, found: list[tuple[int, Remote]]) -> bool:
    """Adds the (inode, remote end) of each socket in one read of the dump to `found`;
    True once the dump has ended. Unavailable for anything the kernel would not send."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise Unavailable(f"sock_diag message of {length} bytes in a {len(data)}-byte read")
        if flags & NLM_F_DUMP_INTR:
            raise Unavailable("sock_diag dump interrupted: the socket table changed under it")
        payload, size = offset + _HEADER.size, length - _HEADER.size
        code = _ERRNO.unpack_from(data, payload)[0] if size >= _ERRNO.size else 0
        if kind == NLMSG_DONE:
            if code < 0:  # the dump's own error, when it ended early
                raise Unavailable(f"sock_diag dump ended early (error {-code})")
            return True
        if kind == NLMSG_ERROR:
            raise Unavailable(f"sock_diag refused the dump (error {-code})")
        if size >= _MESSAGE.size:
            fields = _MESSAGE.unpack_from(data, payload)
            if fields[0] == family:
                remote = Remote(_address(family, fields[7]), int.from_bytes(fields[5], "big"))
                found.append((fields[-1], remote))
        offset += (length + 3) & ~3
    return False


def established(pids: Iterable[int]) -> Optional[tuple[list[Remote], bool]]:
    """The remote ends of the processes' established TCP connections (IPv4-mapped IPv6
    written as IPv4) and whether some process's sockets could not be seen (another
    user's); None when sock_diag cannot answer here."""
    inodes, hidden = socket_inodes(pids)
    if not inodes:
        return [], hidden
    try:
        dumped = _dump(socket.AF_INET) + _dump(socket.AF_INET6)
    except Unavailable:
        return None
    return [remote for inode, remote in dumped if inode in inodes], hidden
