"""Lines as the agent writes them: the LINSTOR stop failure in agent.log (a VM stop
whose disk cleanup reached a refused controller), and StorPoolStorageAdaptor.SP_LOG's
lines in storpool-agent.log."""

from __future__ import annotations

import time


def sp_line(at: float, message: str) -> str:
    """SP_LOG's own stamp: SimpleDateFormat `yyyy-MM-dd HH:mm:ss,ms`, so the digits after
    the comma are the minute and second again."""
    local = time.localtime(at)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f",{local.tm_min}{local.tm_sec} {message}\n"


def create(at: float, uuid: str) -> str:
    return sp_line(at, f"StorPoolStorageAdaptor.createStoragePool: uuid={uuid}, host=10.1.1.1:0, "
                       "path=/dev/storpool, userInfo=null, type=StorPool")


LINSTOR_STOP_FAILURE = """\
{ts} WARN  [cloud.agent.Agent] (agentRequest-Handler-3:null) (logid:5e1f2a3b) Caught:
javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused (Connection refused)
\tat org.glassfish.jersey.client.internal.HttpUrlConnector.apply(HttpUrlConnector.java:260)
\tat org.glassfish.jersey.client.ClientRuntime.invoke(ClientRuntime.java:254)
\tat com.linbit.linstor.api.DevelopersApi.viewResources(DevelopersApi.java:1200)
\tat com.cloud.hypervisor.kvm.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath(LinstorStorageAdaptor.java:420)
\tat com.cloud.hypervisor.kvm.storage.KVMStoragePoolManager.disconnectPhysicalDiskByPath(KVMStoragePoolManager.java:170)
\tat com.cloud.hypervisor.kvm.resource.LibvirtComputingResource.cleanupDisk(LibvirtComputingResource.java:3150)
\tat com.cloud.hypervisor.kvm.resource.wrapper.LibvirtStopCommandWrapper.execute(LibvirtStopCommandWrapper.java:120)
\tat com.cloud.agent.Agent.processRequest(Agent.java:660)
"""
