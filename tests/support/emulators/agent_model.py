"""Ground truth: what a CloudStack KVM agent really holds, and what that does to the host.

A small state machine written from the facts in the reference notes on the agent
(../shared/reference/cloudstack-agent.md beside the checkout; each rule below names the
CloudStack source file the fact was read in). It is driven by what CloudStack and the
host do (pools created, put into maintenance, deleted; the host disconnected; the agent
restarted; a controller stopped; a heartbeat tool failing) and answers the questions the
guard exists to answer: which stale entries exist, whether the next VM stop fails and
why, whether the HA monitor is about to reboot the host, and whether an agent restart
would clear it.

The guard never sees this state: the model-based tests turn it into the snapshots the
guard's sources would have read (tests/unit/test_decision_model.py), and the agent simulator
answers VM stops from the same `next_stop` rule, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from guard.drivers import has_release
from guard.javamap import hashmap_order

Version = tuple[int, ...]

LINSTOR = "Linstor"
STORPOOL = "StorPool"
NFS = "NetworkFilesystem"
POWERFLEX = "PowerFlex"
RBD = "RBD"
ISCSI = "Iscsi"
LIBVIRT_TYPES = {NFS, RBD, "Gluster", "CLVM", "Filesystem", "SharedMountPoint"}

# LinstorStorageAdaptor / StorPoolStorageAdaptor / ScaleIOStorageAdaptor keep static maps
# of their pools; libvirt-backed pools live in libvirt and the manager's _storagePools.
ADAPTOR = {LINSTOR: "LinstorStorageAdaptor", STORPOOL: "StorPoolStorageAdaptor",
           POWERFLEX: "ScaleIOStorageAdaptor", ISCSI: "IscsiAdmStorageAdaptor"}

ADD_FALSE_DROPS_FROM: Version = (4, 21)
"""KVMStoragePoolManager (main, apache/cloudstack#9903): ModifyStoragePoolCommand(add=false)
calls deleteStoragePool(type, uuid, details): the manager's map entry goes, the adaptor's
deleteStoragePool(uuid, details) runs, whose StorageAdaptor default is a no-op; only
ScaleIOStorageAdaptor overrides it. Up to 4.20 LibvirtModifyStoragePoolCommandWrapper
ignores the flag."""

LINSTOR_DELETE_SENT = ((4, 19, 3), (4, 20, 1))
"""LinstorPrimaryDataStoreLifeCycleImpl.deleteDataStore sends DeleteStoragePoolCommand to
the hosts it can reach from these server releases on (apache/cloudstack#10561)."""

RECONNECT_DELETES_FROM: Version = (4, 21)
"""StoragePoolMonitor (apache/cloudstack#10381): on connect the server sends
DeleteStoragePoolCommand for pools linked to the host but no longer expected,
Maintenance pools included."""

HA_DELETE_ALL_TYPES_BEFORE: Version = (4, 21)
"""KVMStoragePoolManager.deleteStoragePool: up to 4.20 it removes every type's pool from
the KVM HA monitor; from 4.21 only NFS pools."""

LINSTOR_HA_FROM: Version = (4, 19, 1)
"""LinstorStoragePool.isPoolSupportHA (apache/cloudstack#8407)."""


@dataclass
class StoragePool:
    """A primary pool as the management server has it."""

    uuid: str
    type: str
    backend: str
    state: str = "Up"
    exists: bool = True
    in_scope: bool = True


class AgentCaches:
    """One incarnation's caches and the agent-side rules of the commands that change
    them; they die with the JVM. The agent simulator (agent_sim.py) keeps its state in
    one of these, so the e2e tests and the model-based tests share one agent."""

    def __init__(self, version: Version, incarnation: int = 1) -> None:
        self.version = version
        self.incarnation = incarnation
        self.manager: set[str] = set()
        """KVMStoragePoolManager._storagePools."""
        self.adaptor: dict[str, list[str]] = {}
        """Each own-map adaptor's static pool map, in insertion order."""
        self.adaptor_most: dict[str, int] = {}
        self.ha: set[str] = set()
        """KVMHAMonitor's pools."""

    def supports_ha(self, pool_type: str) -> bool:
        """LibvirtStoragePool.isPoolSupportHA is NFS only; StorPoolStoragePool from 4.19.0."""
        if pool_type == LINSTOR:
            return self.version >= LINSTOR_HA_FROM
        return pool_type in (NFS, STORPOOL)

    def add(self, uuid: str, pool_type: str) -> None:
        """ModifyStoragePoolCommand(add=true) -> KVMStoragePoolManager.createStoragePool."""
        self.manager.add(uuid)
        if pool_type not in LIBVIRT_TYPES:
            entries = self.adaptor.setdefault(pool_type, [])
            if uuid not in entries:
                entries.append(uuid)
            self.adaptor_most[pool_type] = max(self.adaptor_most.get(pool_type, 0), len(entries))
        if self.supports_ha(pool_type):
            self.ha.add(uuid)

    def delete_command(self, uuid: str, pool_type: str) -> None:
        """DeleteStoragePoolCommand -> LibvirtDeleteStoragePoolCommandWrapper ->
        KVMStoragePoolManager.deleteStoragePool(type, uuid) -> the adaptor's."""
        self.manager.discard(uuid)
        if uuid in self.adaptor.get(pool_type, []):
            self.adaptor[pool_type].remove(uuid)
        if pool_type == NFS or self.version < HA_DELETE_ALL_TYPES_BEFORE:
            self.ha.discard(uuid)

    def add_false(self, uuid: str, pool_type: str) -> None:
        """ModifyStoragePoolCommand(add=false), sent when the pool enters maintenance."""
        if self.version < ADD_FALSE_DROPS_FROM:
            self.add(uuid, pool_type)  # LibvirtModifyStoragePoolCommandWrapper ignores the flag
            return
        self.manager.discard(uuid)
        if pool_type == POWERFLEX and uuid in self.adaptor.get(POWERFLEX, []):
            self.adaptor[POWERFLEX].remove(uuid)
        if pool_type == NFS:
            self.ha.discard(uuid)

    def first(self, pool_type: str) -> Optional[str]:
        """The pool the adaptor's disconnectPhysicalDiskByPath asks: LINSTOR takes the
        first value of its HashMap (`values().stream().findFirst()`)."""
        entries = self.adaptor.get(pool_type, [])
        if not entries:
            return None
        return hashmap_order(entries, self.adaptor_most.get(pool_type, len(entries)))[0]

    def held(self) -> set[str]:
        return self.manager | self.ha | {u for entries in self.adaptor.values() for u in entries}


@dataclass(frozen=True)
class StopOutcome:
    fails: bool
    pool: str = ""
    backend_state: str = ""


class AgentModel:
    """The host, its agent and the cloud around it."""

    def __init__(self, agent_version: Version = (4, 19, 1, 2), server_version: Version = (4, 19, 1, 2)) -> None:
        self.agent_version = agent_version
        self.server_version = server_version
        self.pools: dict[str, StoragePool] = {}
        self.backends: dict[str, str] = {}
        self.libvirt: set[str] = set()
        self.connected = True
        self.drbd_failing = False
        self.storpool_client_down = False
        self.agent = AgentCaches(agent_version)

    # ----------------------------------------------------------------- what the agent does

    def _add(self, uuid: str) -> None:
        pool = self.pools[uuid]
        self.agent.add(uuid, pool.type)
        if pool.type in LIBVIRT_TYPES:
            self.libvirt.add(uuid)

    def _delete_command(self, uuid: str) -> None:
        pool = self.pools[uuid]
        self.agent.delete_command(uuid, pool.type)
        if pool.type in LIBVIRT_TYPES:
            self.libvirt.discard(uuid)

    def _add_false(self, uuid: str) -> None:
        self.agent.add_false(uuid, self.pools[uuid].type)

    def _sends_on_connect(self, pool: StoragePool) -> bool:
        """StoragePoolMonitor.processConnect: shared pools Up in scope; not Maintenance."""
        return pool.exists and pool.in_scope and pool.state == "Up"

    def _connect(self) -> None:
        for pool in self.pools.values():
            if self._sends_on_connect(pool):
                self._add(pool.uuid)
            elif pool.exists and pool.in_scope and self.server_version >= RECONNECT_DELETES_FROM:
                self._delete_command(pool.uuid)

    # ----------------------------------------------------------------- events

    def create_pool(self, uuid: str, pool_type: str, backend: str) -> None:
        self.backends.setdefault(backend, "up")
        self.pools[uuid] = StoragePool(uuid, pool_type, backend)
        if self.connected:
            self._add(uuid)

    def maintenance(self, uuid: str, on: bool) -> None:
        """StoragePoolAutomationImpl.maintain / cancelMaintain: add=false / add=true to Up hosts."""
        pool = self.pools[uuid]
        pool.state = "Maintenance" if on else "Up"
        if self.connected:
            if on:
                self._add_false(uuid)
            else:
                self._add(uuid)

    def delete_pool(self, uuid: str) -> None:
        """Only a pool in maintenance can be deleted. Whether the hosts are told depends on
        the type's PrimaryDataStoreLifeCycle.deleteDataStore."""
        pool = self.pools[uuid]
        pool.exists = False
        if not self.connected:
            return
        if pool.type in LIBVIRT_TYPES or (
                pool.type == LINSTOR and has_release(self.server_version, LINSTOR_DELETE_SENT)):
            self._delete_command(uuid)

    def leave_scope(self, uuid: str) -> None:
        """A scope change away from this host's cluster: nothing is sent to it."""
        self.pools[uuid].in_scope = False

    def disconnect(self) -> None:
        self.connected = False

    def reconnect(self) -> None:
        if not self.connected:
            self.connected = True
            self._connect()

    def restart_agent(self) -> None:
        """A new JVM: empty caches, refilled by what the server sends on connect."""
        self.agent = AgentCaches(self.agent_version, self.agent.incarnation + 1)
        if self.connected:
            self._connect()

    def set_backend(self, backend: str, state: str) -> None:
        """up, down (refused) or hung (timeout)."""
        self.backends[backend] = state

    # ----------------------------------------------------------------- what follows

    def expected(self) -> set[str]:
        """What a freshly restarted agent would hold once connected."""
        return {p.uuid for p in self.pools.values() if self._sends_on_connect(p)}

    def held(self) -> set[str]:
        return self.agent.held()

    def stale(self) -> set[str]:
        """Entries the running agent holds that a restart would not bring back."""
        return {u for u in self.held() if u not in self.expected()}

    def next_stop(self) -> StopOutcome:
        """LibvirtComputingResource.cleanupDisk -> disconnectPhysicalDiskByPath over every
        adaptor; only LINSTOR reaches its backend for any path, and a refused or hung
        controller escapes as an unchecked ProcessingException."""
        first = self.agent.first(LINSTOR)
        if first is None:
            return StopOutcome(False)
        state = self.backends[self.pools[first].backend]
        return StopOutcome(state != "up", first, state)

    def heartbeat_failing(self, uuid: str) -> bool:
        """KVMHAMonitor: NFS pools only while libvirt still has them (kvmheartbeat.sh writes
        to the mount); LINSTOR checks local DRBD (drbdsetup events2), not the controller;
        StorPool asks its API and this host's client (storpool -j service list)."""
        if uuid not in self.agent.ha:
            return False
        pool = self.pools[uuid]
        if pool.type == NFS:
            return uuid in self.libvirt and self.backends[pool.backend] != "up"
        if pool.type == LINSTOR:
            return self.drbd_failing
        if pool.type == STORPOOL:
            return self.storpool_client_down or self.backends[pool.backend] != "up"
        return False

    def reboot_risk(self) -> set[str]:
        """HA pools whose heartbeat fails: after the last try the host is rebooted."""
        return {u for u in self.agent.ha if self.heartbeat_failing(u)}

    def stale_harm(self) -> set[str]:
        """Stale entries that hurt now: the pool every VM stop asks, with its controller
        gone, or a heartbeat that will reboot the host."""
        harm = self.reboot_risk() & self.stale()
        stop = self.next_stop()
        if stop.fails and stop.pool in self.stale():
            harm.add(stop.pool)
        return harm

    def stale_risky(self) -> set[str]:
        """Stale entries that can hurt: LINSTOR's map (asked on every stop once its
        controller goes) and the HA monitor's (a failing heartbeat reboots the host).
        Others (a libvirt pool's manager entry, PowerFlex, iSCSI) never reach a backend."""
        agent = self.agent
        return self.stale() & (set(agent.adaptor.get(LINSTOR, [])) | agent.ha)

    def live_outage(self, pool_type: str) -> bool:
        """A pool of this type the host uses now has its backend down, or its heartbeat
        failing: VM stops through it, or the HA monitor's reboot, go on whatever a
        restart clears."""
        return any(self.pools[u].type == pool_type and (
            self.backends[self.pools[u].backend] != "up" or self.heartbeat_failing(u))
            for u in self.expected())

    def restart_helps(self) -> bool:
        """A restart clears a stale entry that can hurt, of an adaptor with no live pool in
        an outage that would go on failing the same way afterwards."""
        return any(not self.live_outage(self.pools[u].type) for u in self.stale_risky())
