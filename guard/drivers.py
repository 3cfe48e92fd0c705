"""What the agent's storage adaptors do with a pool, per CloudStack pool type.

The evaluator asks this table, not the pool type, whether a stale pool can break VM stops,
whether the HA monitor keeps heartbeating it, what clears it, and which probe tells if its
backend is alive. Each fact names the CloudStack source file it was read in (paths under
plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/ and the storage plugins of
apache/cloudstack); tests/support/emulators/agent_model.py is the same facts as a state machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

Version = tuple[int, ...]

LINSTOR_DELETE_FIX: tuple[Version, ...] = ((4, 19, 3), (4, 20, 1))
"""LinstorPrimaryDataStoreLifeCycleImpl.deleteDataStore sends DeleteStoragePoolCommand to
the hosts it reaches from these releases on (apache/cloudstack#10561, 4.19.3.0 and
4.20.1.0); before, deleting a LINSTOR pool told no agent."""

ALWAYS: tuple[Version, ...] = ((0,),)
NEVER: tuple[Version, ...] = ()


def has_release(version: Version, fixes: tuple[Version, ...]) -> bool:
    """Whether `version` carries a change that landed on several branches: (4,19,3) and
    (4,20,1) mean 4.19.3+ on 4.19 and 4.20.1+ from 4.20 on."""
    for index, fix in enumerate(fixes):
        nxt = fixes[index + 1][:2] if index + 1 < len(fixes) else None
        if version >= fix and (nxt is None or version < nxt):
            return True
    return False


@dataclass(frozen=True)
class Driver:
    adaptor: str
    backend: str
    caches_pools: bool
    disconnect_reaches_backend: bool
    """True when disconnect-by-path calls the backend for ANY path, so a stale entry whose
    backend is gone makes every VM stop on the host fail (LinstorStorageAdaptor
    .disconnectPhysicalDiskByPath asks the first pool of its map)."""
    ha_heartbeat_tool: str = ""
    """What KVMHAMonitor runs for this type's pools; empty: never in the monitor
    (LibvirtStoragePool.isPoolSupportHA is NFS only)."""
    heartbeat_outlives_removal: bool = False
    """The HA monitor keeps heartbeating the pool after its removal: it checks libvirt only
    for NFS pools (KVMHAMonitor.java), and on 4.21+ deleteStoragePool drops only NFS pools
    from it (KVMStoragePoolManager.java)."""
    ha_from: Version = (0,)
    """First agent release whose pools of this type enter the HA monitor:
    LinstorStoragePool.isPoolSupportHA from 4.19.1 (apache/cloudstack#8407)."""
    maintenance_drops_from: Optional[Version] = None
    """First agent release on which ModifyStoragePoolCommand(add=false), sent on entering
    maintenance, really drops the pool from the adaptor that disconnect and heartbeat use.
    From 4.21 (apache/cloudstack#9903) the manager calls the adaptor's
    deleteStoragePool(uuid, details), whose StorageAdaptor default is a no-op; only
    ScaleIOStorageAdaptor overrides it, and the manager drops NFS from the HA monitor.
    None: maintenance never drops it (LinstorStorageAdaptor keeps its static map)."""
    delete_sent_from: tuple[Version, ...] = ALWAYS
    """Management-server releases whose deleteDataStore for this type sends
    DeleteStoragePoolCommand to the hosts: the default lifecycle always
    (CloudStackPrimaryDataStoreLifeCycleImpl), LINSTOR from #10561, StorPool never
    (StorPoolPrimaryDataStoreLifeCycle.deleteDataStore)."""
    probe: Optional[str] = None
    """The guard.backends backend that tells whether this type's storage answers."""
    libvirt_backed: bool = False
    agent_uses_control_plane: bool = True
    """False when only the management server talks to the probed control plane and the
    host's own data path is a local client: ScaleIOStorageAdaptor drives the SDC with
    drv_cfg, and only the server's ScaleIOGatewayClientImpl calls the PowerFlex gateway."""
    heartbeat_asks_backend: bool = False
    """The HA heartbeat fails when the backend does not answer: kvmheartbeat.sh writes to
    the NFS mount; StorPool's heartbeat runs `storpool -j service list`, which asks the
    StorPool API (StorPoolStoragePool.java). LINSTOR's runs drbdsetup locally."""


_LIBVIRT = "LibvirtStorageAdaptor"
_MAINT_4_21: Version = (4, 21)

DRIVERS: dict[str, Driver] = {
    "Linstor": Driver(
        adaptor="LinstorStorageAdaptor",
        backend="LINSTOR controller REST API",
        caches_pools=True,
        disconnect_reaches_backend=True,
        ha_heartbeat_tool="drbdsetup",
        heartbeat_outlives_removal=True,
        ha_from=(4, 19, 1),
        delete_sent_from=LINSTOR_DELETE_FIX,
        probe="linstor",
    ),
    "NetworkFilesystem": Driver(
        _LIBVIRT, "NFS server (mounted by libvirt)", True, False, "kvmheartbeat.sh",
        maintenance_drops_from=_MAINT_4_21, libvirt_backed=True, probe="nfs",
        heartbeat_asks_backend=True,
    ),
    "RBD": Driver(_LIBVIRT, "Ceph monitors", True, False, maintenance_drops_from=_MAINT_4_21,
                  libvirt_backed=True, probe="rbd"),
    "CLVM": Driver(_LIBVIRT, "clustered LVM", True, False, maintenance_drops_from=_MAINT_4_21,
                   libvirt_backed=True),
    "CLVM_NG": Driver(_LIBVIRT, "clustered LVM", True, False, maintenance_drops_from=_MAINT_4_21,
                      libvirt_backed=True),
    "Filesystem": Driver(_LIBVIRT, "local filesystem", True, False, maintenance_drops_from=_MAINT_4_21,
                         libvirt_backed=True),
    "SharedMountPoint": Driver(_LIBVIRT, "shared mount point", True, False,
                               maintenance_drops_from=_MAINT_4_21, libvirt_backed=True),
    "Gluster": Driver(_LIBVIRT, "GlusterFS", True, False, maintenance_drops_from=_MAINT_4_21,
                      libvirt_backed=True, probe="gluster"),
    "StorPool": Driver(
        "StorPoolStorageAdaptor", "StorPool API and storpool CLI", True, False,
        ha_heartbeat_tool="storpool -j service list", heartbeat_outlives_removal=True,
        delete_sent_from=NEVER, probe="storpool", heartbeat_asks_backend=True,
    ),
    "PowerFlex": Driver("ScaleIOStorageAdaptor", "PowerFlex SDC (drv_cfg)", True, False,
                        maintenance_drops_from=_MAINT_4_21, delete_sent_from=NEVER, probe="powerflex",
                        agent_uses_control_plane=False),
    "Iscsi": Driver("IscsiAdmStorageAdaptor", "iSCSI target (iscsiadm)", True, False,
                    delete_sent_from=NEVER, probe="iscsi"),
    "FiberChannel": Driver("FiberChannelAdapter", "multipath", True, False, delete_sent_from=NEVER),
    "ManagedNFS": Driver("ManagedNfsStorageAdaptor", "managed NFS", False, False),
}

UNKNOWN = Driver(adaptor="unknown adaptor", backend="unknown", caches_pools=True,
                 disconnect_reaches_backend=False, delete_sent_from=NEVER)

_ALIASES = {name.lower(): name for name in DRIVERS}
_ALIASES.update({"nfs": "NetworkFilesystem", "linstor": "Linstor", "ceph": "RBD"})


def canonical_type(pool_type: str) -> str:
    """CloudStack spells types differently across APIs and logs (Linstor, LINSTOR, NFS)."""
    return _ALIASES.get(pool_type.strip().lower(), pool_type.strip())


def driver_for(pool_type: str) -> Driver:
    return DRIVERS.get(canonical_type(pool_type), UNKNOWN)


def fails_next(driver: Driver) -> str:
    """What stops working on this host while a live pool's backend does not answer."""
    parts = ["VM starts, volume attaches and migrations with this pool's volumes fail"]
    if driver.disconnect_reaches_backend:
        parts.append(f"every VM stop on this host fails ({driver.adaptor} asks its backend for any disk)")
    if driver.ha_heartbeat_tool and (driver.heartbeat_asks_backend or driver.disconnect_reaches_backend):
        parts.append(f"the HA heartbeat ({driver.ha_heartbeat_tool}) can fail and reboot the host "
                     "after its tries (reboot.host.and.alert.management.on.heartbeat.timeout)")
    return "; ".join(parts)


def adaptor_pool_type(adaptor: str) -> str:
    """The pool type an adaptor class serves, for failures that name only the adaptor."""
    for name, driver in DRIVERS.items():
        if driver.adaptor == adaptor and not driver.libvirt_backed:
            return name
    return ""
