"""The libvirt source on the in-process test driver and on pool XML of every shape: a
foreign or broken pool is skipped, and libvirt's own stderr chatter never leaks."""

from __future__ import annotations

import pytest

from guard.sources.libvirt import parse_pool_xml, read_libvirt_pools
from tests.support.histories import UUID_A

TEST_DRIVER_XML = f"""<node>
  <pool type='netfs'>
    <name>{UUID_A}</name><uuid>{UUID_A}</uuid>
    <source><host name='10.1.1.1'/><dir path='/export'/><format type='nfs'/></source>
    <target><path>/mnt/{UUID_A}</path></target>
  </pool>
  <pool type='dir'><name>operators-own-pool</name><target><path>/var/lib/images</path></target></pool>
</node>"""


def test_libvirt_test_driver(tmp_path):
    (tmp_path / "node.xml").write_text(TEST_DRIVER_XML)
    pools, status = read_libvirt_pools(f"test://{tmp_path}/node.xml", 3)
    assert status.ok and [p.uuid for p in pools] == [UUID_A]
    assert pools[0].type == "NetworkFilesystem" and pools[0].source_hosts == ("10.1.1.1",)
    assert pools[0].state == "running" and pools[0].target == f"/mnt/{UUID_A}"
    default, status = read_libvirt_pools("test:///default", 3)
    assert status.ok and default == []


def test_libvirt_down_is_one_line_and_silent(capfd):
    pools, status = read_libvirt_pools("qemu+unix:///system?socket=/nonexistent/sock", 3)
    assert pools == [] and not status.ok
    assert "\n" not in status.detail and "/nonexistent/sock" in status.detail
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("xml", ["", "<pool", "<pool><name>x</name></pool>", "<network/>",
                                 f"<pool type='rbd'><name>{UUID_A}</name><source><host/></source></pool>"])
def test_malformed_or_foreign_pool_xml(xml):
    pool = parse_pool_xml(xml, "running")
    assert pool is None or (pool.uuid == UUID_A and pool.source_hosts == ())
