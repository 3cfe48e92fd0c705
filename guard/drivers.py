"""What the agent's storage adaptors do with a pool, per CloudStack pool type.

The evaluator asks this table, not the pool type, whether a stale pool can break VM stops
and which probe tells if its backend is alive. The facts come from the agent's sources
(KVMStoragePoolManager and the adaptors) as summarised in the project's reference notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Driver:
    adaptor: str
    backend: str
    caches_pools: bool
    disconnect_reaches_backend: bool
    """True when disconnect-by-path calls the backend for ANY path, so a stale entry whose
    backend is gone makes every VM stop on the host fail (LINSTOR)."""
    ha_heartbeat_tool: str = ""
    heartbeat_outlives_removal: bool = False
    """The KVM HA monitor keeps heartbeating a removed pool (it checks libvirt for NFS, RBD
    and CLVM pools, not for LINSTOR ones), and a failing heartbeat can reboot the host."""
    probe: Optional[str] = None
    libvirt_backed: bool = False


_LIBVIRT = "LibvirtStorageAdaptor"

DRIVERS: dict[str, Driver] = {
    "Linstor": Driver(
        adaptor="LinstorStorageAdaptor",
        backend="LINSTOR controller REST API",
        caches_pools=True,
        disconnect_reaches_backend=True,
        ha_heartbeat_tool="drbdsetup",
        heartbeat_outlives_removal=True,
        probe="linstor",
    ),
    "NetworkFilesystem": Driver(
        _LIBVIRT, "NFS server (mounted by libvirt)", True, False, "kvmheartbeat.sh",
        libvirt_backed=True,
    ),
    "RBD": Driver(_LIBVIRT, "Ceph monitors", True, False, "kvmheartbeat.sh", libvirt_backed=True),
    "CLVM": Driver(_LIBVIRT, "clustered LVM", True, False, "kvmheartbeat.sh", libvirt_backed=True),
    "CLVM_NG": Driver(_LIBVIRT, "clustered LVM", True, False, libvirt_backed=True),
    "Filesystem": Driver(_LIBVIRT, "local filesystem", True, False, libvirt_backed=True),
    "SharedMountPoint": Driver(_LIBVIRT, "shared mount point", True, False, libvirt_backed=True),
    "Gluster": Driver(_LIBVIRT, "GlusterFS", True, False, libvirt_backed=True),
    "StorPool": Driver("StorPoolStorageAdaptor", "StorPool API and storpool CLI", True, False),
    "PowerFlex": Driver("ScaleIOStorageAdaptor", "PowerFlex SDC (drv_cfg)", True, False),
    "Iscsi": Driver("IscsiAdmStorageAdaptor", "iSCSI target (iscsiadm)", True, False),
    "FiberChannel": Driver("FiberChannelAdapter", "multipath", True, False),
    "ManagedNFS": Driver("ManagedNfsStorageAdaptor", "managed NFS", False, False),
}

UNKNOWN = Driver(adaptor="unknown adaptor", backend="unknown", caches_pools=True,
                 disconnect_reaches_backend=False)

_ALIASES = {name.lower(): name for name in DRIVERS}
_ALIASES.update({"nfs": "NetworkFilesystem", "linstor": "Linstor", "ceph": "RBD"})


def canonical_type(pool_type: str) -> str:
    """CloudStack spells types differently across APIs and logs (Linstor, LINSTOR, NFS)."""
    return _ALIASES.get(pool_type.strip().lower(), pool_type.strip())


def driver_for(pool_type: str) -> Driver:
    return DRIVERS.get(canonical_type(pool_type), UNKNOWN)


def adaptor_pool_type(adaptor: str) -> str:
    """The pool type an adaptor class serves, for failures that name only the adaptor."""
    for name, driver in DRIVERS.items():
        if driver.adaptor == adaptor and not driver.libvirt_backed:
            return name
    return ""
