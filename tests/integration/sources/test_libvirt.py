"""The libvirt source against a private libvirtd: the guard's pools, not the operator's."""

from __future__ import annotations

from guard.sources.libvirt import read_libvirt_pools
from tests.support.histories import UUID_A, UUID_B
from tests.support.libvirtd import define_dir_pool, define_netfs_pool


def test_libvirt_private_daemon_pools(libvirtd, libvirt_conn, tmp_path):
    define_dir_pool(libvirt_conn, UUID_A, tmp_path / "local")
    define_netfs_pool(libvirt_conn, UUID_B, "127.0.0.1", "/export/primary", str(tmp_path / "mnt"))
    libvirt_conn.storagePoolDefineXML(
        f"<pool type='dir'><name>operators-own</name><target><path>{tmp_path}</path></target></pool>", 0)
    pools, status = read_libvirt_pools(libvirtd.uri, 3)
    assert status.ok
    found = {p.uuid: p for p in pools}
    assert set(found) == {UUID_A, UUID_B}
    assert found[UUID_A].state == "running" and found[UUID_A].type == "Filesystem"
    assert found[UUID_B].state == "inactive" and found[UUID_B].type == "NetworkFilesystem"
    assert found[UUID_B].source_hosts == ("127.0.0.1",)
