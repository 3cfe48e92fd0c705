"""The test harness itself: a private libvirtd and the cloudstack-agent stand-in.

Every other real-parts test trusts these, so they are checked against the real daemon and
real sockets, including the ways they are meant to fail.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt
import psutil
import pytest

from tests.support.emulators.agent_standin import start_standin, stop_standin
from tests.support.libvirtd import (
    PrivateLibvirtd,
    define_dir_pool,
    define_netfs_pool,
    define_rbd_pool,
    destroy_pool,
    pool_names,
    tracked_connection,
    undefine_pool,
)
from tests.support.net import established_to
from tests.support.polling import wait_for

LOG4J_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO |WARN |ERROR) \[\w+\.\w+\.\w+\] "
    r"\([\w-]+:null\) \(logid:[0-9a-f]*\) \S.*$"
)
HOST_LIBVIRT_DIRS = (
    "/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt",
)


def pool_xml(pool: libvirt.virStoragePool) -> ET.Element:
    return ET.fromstring(pool.XMLDesc(0))  # noqa: S314 - our own libvirtd's output


def snapshot(paths: tuple[str, ...]) -> dict[str, frozenset[str] | None]:
    """Every file and directory under each path; None where the path does not exist."""
    result: dict[str, frozenset[str] | None] = {}
    for top in paths:
        if not os.path.lexists(top):
            result[top] = None
            continue
        found = set()
        for base, dirs, files in os.walk(top):
            found.update(os.path.join(base, name) for name in dirs + files)
        result[top] = frozenset(found)
    return result


# --- private libvirtd ---------------------------------------------------------------


def test_libvirtd_runs_privately(libvirtd: PrivateLibvirtd) -> None:
    assert libvirtd.running
    assert libvirtd.uri == f"qemu+unix:///system?socket={libvirtd.socket_path}"
    assert libvirtd.socket_path.is_socket()
    proc = psutil.Process(libvirtd.pid)
    assert proc.name() == "libvirtd"
    assert os.readlink(f"/proc/{proc.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    conn = libvirt.open(libvirtd.uri)
    try:
        assert conn.getLibVersion() > 0
    finally:
        conn.close()


def test_dir_pool_lifecycle(libvirt_conn: libvirt.virConnect, tmp_path: Path) -> None:
    pool_uuid = str(uuid.uuid4())
    target = tmp_path / "local-storage"
    pool = define_dir_pool(libvirt_conn, pool_uuid, target)

    seen = libvirt_conn.storagePoolLookupByName(pool_uuid)
    assert seen.UUIDString() == pool_uuid
    assert seen.isActive() and seen.isPersistent()
    assert target.is_dir()
    xml = pool_xml(seen)
    assert xml.get("type") == "dir"
    assert xml.findtext("name") == pool_uuid
    assert xml.findtext("target/path") == str(target)

    assert destroy_pool(libvirt_conn, pool_uuid) is True
    assert not pool.isActive()
    assert destroy_pool(libvirt_conn, pool_uuid) is False
    assert undefine_pool(libvirt_conn, pool_uuid) is True
    assert pool_uuid not in pool_names(libvirt_conn)
    assert undefine_pool(libvirt_conn, pool_uuid) is False


def test_dir_pool_can_stay_inactive(libvirt_conn: libvirt.virConnect, tmp_path: Path) -> None:
    pool_uuid = str(uuid.uuid4())
    pool = define_dir_pool(libvirt_conn, pool_uuid, tmp_path / "never-built", start=False)
    assert not pool.isActive()
    assert not (tmp_path / "never-built").exists()
    assert pool_uuid in pool_names(libvirt_conn)


def test_netfs_pool_is_defined_not_mounted(
    libvirt_conn: libvirt.virConnect, tmp_path: Path
) -> None:
    pool_uuid = str(uuid.uuid4())
    target = tmp_path / "mnt" / pool_uuid
    pool = define_netfs_pool(libvirt_conn, pool_uuid, "127.0.0.1", "/export/primary", str(target))

    assert not pool.isActive()
    assert not target.exists()
    xml = pool_xml(libvirt_conn.storagePoolLookupByName(pool_uuid))
    assert xml.get("type") == "netfs"
    assert xml.findtext("name") == pool_uuid
    assert xml.find("source/host").get("name") == "127.0.0.1"
    assert xml.find("source/dir").get("path") == "/export/primary"
    assert xml.findtext("target/path") == str(target)


def test_rbd_pool_definition_needs_the_rbd_backend(libvirt_conn: libvirt.virConnect) -> None:
    backend = [
        path
        for pattern in ("/usr/lib/*/libvirt/storage-backend", "/usr/lib*/libvirt/storage-backend")
        for path in glob.glob(f"{pattern}/libvirt_storage_backend_rbd.so")
    ]
    pool_uuid = str(uuid.uuid4())
    if backend:
        pool = define_rbd_pool(libvirt_conn, pool_uuid, "127.0.0.1", "cloudstack")
        xml = pool_xml(pool)
        assert xml.get("type") == "rbd"
        assert xml.find("source/host").get("name") == "127.0.0.1"
    else:
        missing = r"missing backend for pool type \d+ \(rbd\)"
        with pytest.raises(libvirt.libvirtError, match=missing):
            define_rbd_pool(libvirt_conn, pool_uuid, "127.0.0.1", "cloudstack")
        assert pool_uuid not in pool_names(libvirt_conn)


def test_tracked_connection_removes_only_new_pools(
    libvirtd: PrivateLibvirtd, tmp_path: Path
) -> None:
    kept = str(uuid.uuid4())
    added = [str(uuid.uuid4()), str(uuid.uuid4())]
    conn = libvirt.open(libvirtd.uri)
    try:
        define_dir_pool(conn, kept, tmp_path / "kept")
        with tracked_connection(libvirtd) as tracked:
            define_dir_pool(tracked, added[0], tmp_path / "a")
            define_netfs_pool(tracked, added[1], "127.0.0.1", "/export", str(tmp_path / "b"))
        names = pool_names(conn)
        assert kept in names
        assert not names & set(added)
    finally:
        undefine_pool(conn, kept)
        conn.close()


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_stopped_libvirtd_is_unavailable_and_comes_back(
    libvirtd: PrivateLibvirtd, libvirt_conn: libvirt.virConnect, tmp_path: Path, graceful: bool
) -> None:
    pool_uuid = str(uuid.uuid4())
    define_dir_pool(libvirt_conn, pool_uuid, tmp_path / "pool")
    old_pid = libvirtd.pid

    libvirtd.stop(graceful=graceful)
    assert not libvirtd.running
    assert not psutil.pid_exists(old_pid)
    with pytest.raises(libvirt.libvirtError):
        libvirt_conn.listAllStoragePools(0)
    with pytest.raises(libvirt.libvirtError, match="Failed to connect socket"):
        libvirt.open(libvirtd.uri)

    libvirtd.start()
    conn = libvirt.open(libvirtd.uri)
    try:
        assert libvirtd.pid != old_pid
        pool = conn.storagePoolLookupByName(pool_uuid)
        assert pool.isActive()
    finally:
        conn.close()


def test_host_libvirt_dirs_untouched(libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    before = snapshot(HOST_LIBVIRT_DIRS)
    pid_file_before = os.path.lexists("/run/libvirtd.pid")
    libvirtd.restart()
    pool_uuid = str(uuid.uuid4())
    with tracked_connection(libvirtd) as conn:
        define_dir_pool(conn, pool_uuid, tmp_path / "pool")
        define_netfs_pool(conn, str(uuid.uuid4()), "127.0.0.1", "/export", str(tmp_path / "n"))
        assert (libvirtd.root / "etc" / "storage" / f"{pool_uuid}.xml").is_file()
        assert (libvirtd.run_dir / "storage" / f"{pool_uuid}.xml").is_file()
    libvirtd.stop(graceful=False)
    libvirtd.start()
    assert snapshot(HOST_LIBVIRT_DIRS) == before
    assert os.path.lexists("/run/libvirtd.pid") == pid_file_before


# --- cloudstack-agent stand-in ------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A bound but not yet listening socket: connecting is refused until listen()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


def write_properties(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "agent.properties"
    path.write_text(
        "#Storage\n"
        "guid=2a9e4b6c-7f3d-4d1e-9b0a-5c8e1f2d3a4b\n"
        "host=127.0.0.1,192.0.2.10@roundrobin\n"
        f"port={port}\n"
        "hypervisor.type=kvm\n"
    )
    return path


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_standin_looks_like_the_agent(listener: socket.socket, tmp_path: Path) -> None:
    listener.listen(1)
    port = listener.getsockname()[1]
    props = write_properties(tmp_path, port)
    log = tmp_path / "agent.log"
    proc = start_standin(props, log, version="4.19.1.2")
    try:
        assert "com.cloud.agent.AgentShell" in psutil.Process(proc.pid).cmdline()
        peer, _ = listener.accept()
        with peer:
            assert wait_for(lambda: established_to(proc.pid, port))
            assert wait_for(lambda: f"Connected to 127.0.0.1:{port}" in log.read_text())
    finally:
        status = stop_standin(proc)

    assert status == 0
    lines = log_lines(log)
    assert all(LOG4J_LINE.match(line) for line in lines), lines
    messages = [line.split(") ", 2)[2] for line in lines]
    assert messages[:3] == [
        "Agent started",
        "Implementation Version is 4.19.1.2",
        f"agent.properties found at {props}",
    ]
    assert " INFO  [cloud.agent.AgentShell] (main:null) (logid:) Agent started" in lines[0]
    assert lines[-1].endswith(
        " INFO  [cloud.agent.Agent] (AgentShutdownThread:null) (logid:) "
        "Stopping the agent: Reason = sig.kill"
    )


def test_standin_retries_and_reconnects(listener: socket.socket, tmp_path: Path) -> None:
    port = listener.getsockname()[1]
    log = tmp_path / "agent.log"
    proc = start_standin(write_properties(tmp_path, port), log)
    try:
        refused = f"Unable to connect to remote: is there a server running on port {port}"
        assert wait_for(lambda: "Connecting to host:127.0.0.1" in log.read_text())
        assert refused in log.read_text()

        listener.listen(1)
        peer, _ = listener.accept()
        assert wait_for(lambda: established_to(proc.pid, port))
        peer.close()
        assert wait_for(lambda: "Connected to the host: 127.0.0.1" in log.read_text())
        peer, _ = listener.accept()
        assert established_to(proc.pid, port)
        peer.close()
    finally:
        status = stop_standin(proc)
    assert status == 0
    text = log.read_text()
    warn = r" WARN  \[utils\.nio\.NioConnection\] \(main:null\) \(logid:\) "
    assert re.search(warn + refused, text)
    assert re.search(
        r" INFO  \[cloud\.agent\.Agent\] \(Agent-Handler-1:null\) \(logid:[0-9a-f]{8}\) "
        r"Lost connection to host: 127\.0\.0\.1\. ",
        text,
    )
    assert "Reconnecting to host:127.0.0.1" in text
    assert text.rstrip().endswith("Stopping the agent: Reason = sig.kill")


def test_standin_exits_zero_on_sigterm_while_retrying(
    listener: socket.socket, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    proc = start_standin(write_properties(tmp_path, listener.getsockname()[1]), log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    stop_standin(proc)
    assert log_lines(log)[-1].endswith("Stopping the agent: Reason = sig.kill")
