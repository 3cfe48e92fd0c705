"""Storage pools as libvirt holds them.

CloudStack names the libvirt pools it creates by the pool's uuid; anything else on the
host (an operator's own pools) is not ours to judge and is skipped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - parses libvirt's own XML, not input from afar
from typing import Any, Optional

from guard.deadline import run_bounded
from guard.model import Pool, SourceStatus, pool_id

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

STATES = {0: "inactive", 1: "building", 2: "running", 3: "degraded", 4: "inaccessible"}

_TYPES = {"rbd": "RBD", "logical": "CLVM", "dir": "Filesystem", "fs": "SharedMountPoint",
          "gluster": "Gluster", "iscsi": "Iscsi"}


def _quiet(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr unless a handler is set; ours go in findings."""


def quiet_libvirt() -> None:
    """For the whole process: libvirt's own `libvirt: ... error : ...` lines on stderr
    carry no guard context and repeat with every retry."""
    import libvirt

    libvirt.registerErrorHandler(_quiet, None)


def cloudstack_type(xml_type: str, source_format: str) -> str:
    """libvirt's pool type in CloudStack's vocabulary (netfs splits by its format)."""
    if xml_type == "netfs":
        return "Gluster" if source_format == "glusterfs" else "NetworkFilesystem"
    return _TYPES.get(xml_type, xml_type)


def parse_pool_xml(xml: str, state: str) -> Optional[Pool]:
    """None for XML that is not a uuid-named pool: malformed XML never raises."""
    try:
        root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    except ET.ParseError:
        return None
    name = (root.findtext("name") or "").strip()
    if root.tag != "pool" or not UUID_RE.match(name):
        return None
    source = root.find("source")
    hosts: tuple[str, ...] = ()
    source_format = source_path = ""
    port = 0
    if source is not None:
        named = [h for h in source.findall("host") if h.get("name")]
        hosts = tuple(h.get("name", "") for h in named)
        port = next((int(h.get("port", "")) for h in named if _is_port(h.get("port", ""))), 0)
        fmt = source.find("format")
        source_format = fmt.get("type", "") if fmt is not None else ""
        source_path = _source_path(source)
    return Pool(
        uuid=pool_id(name),
        type=cloudstack_type(root.get("type", ""), source_format),
        origin="libvirt",
        name=name,
        state=state,
        source_hosts=hosts,
        target=(root.findtext("target/path") or "").strip(),
        source_path=source_path,
        source_port=port if 0 < port < 65536 else 0,
    )


def _is_port(text: str) -> bool:
    """str.isdigit also takes superscripts and any number of digits, which int() refuses."""
    return text.isascii() and text.isdigit() and len(text) <= 5


def _source_path(source: ET.Element) -> str:
    """What the pool is on its backend: an RBD pool's or a Gluster volume's name, an NFS
    export's dir, an iSCSI target's IQN (LibvirtStorageAdaptor writes each so)."""
    name = (source.findtext("name") or "").strip()
    directory = source.find("dir")
    device = source.find("device")
    if name:
        return name
    if directory is not None and directory.get("path"):
        return directory.get("path", "")
    return device.get("path", "") if device is not None else ""


def pool_of(handle: Any) -> Optional[Pool]:
    """One pool as its handle reads now; raises libvirtError (the pool is gone, or the
    connection)."""
    return parse_pool_xml(handle.XMLDesc(0), STATES.get(handle.info()[0], "unknown"))


def _list_pools(uri: str) -> list[Pool]:
    import libvirt

    quiet_libvirt()
    conn = libvirt.openReadOnly(uri)
    try:
        pools = []
        for handle in conn.listAllStoragePools(0):
            try:
                pool = pool_of(handle)
            except libvirt.libvirtError:
                continue
            if pool is not None:
                pools.append(pool)
        return pools
    finally:
        conn.close()


def read_libvirt_pools(uri: str, timeout: float) -> tuple[list[Pool], SourceStatus]:
    try:
        pools = run_bounded(lambda: _list_pools(uri), timeout)
    except TimeoutError as exc:
        return [], SourceStatus("libvirt", False, f"{uri}: {exc}")
    except Exception as exc:  # noqa: BLE001 - libvirtError or ImportError; both mean unreadable
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [], SourceStatus("libvirt", False, f"{uri}: {message}")
    return pools, SourceStatus("libvirt", True, f"{uri}: {len(pools)} CloudStack pool(s)")
