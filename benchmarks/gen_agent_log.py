"""Writes a synthetic cloudstack-agent log of a chosen size for the throughput benchmark.

The mix imitates a busy KVM host at DEBUG level: mostly libvirt-connection, command and
ping chatter (some with kilobyte-long JSON), script runs and WARN noise that match
nothing, multi-line libvirt XML ended by a blank line, a few stack traces (one of them the
LINSTOR stop failure), pool lifecycle lines and the odd agent restart. Every value is
invented; the line shapes follow the agent's log4j layout. `--pool-share 0.4` makes
about four lines in ten the pool lookups LibvirtStorageAdaptor logs on every use of a
pool ("Trying to fetch storage pool ... from libvirt", "Successfully refreshed pool
..."), as on a busy host with many volumes.

    python benchmarks/gen_agent_log.py /tmp/agent.log --size 50M [--pool-share 0.4]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid

HANDLERS = [f"agentRequest-Handler-{i}" for i in range(1, 6)]
POOL_TYPES = ("NetworkFilesystem", "RBD", "Filesystem", "SharedMountPoint", "CLVM")

KVM = "com.cloud.hypervisor.kvm"
JUC = "java.base/java.util.concurrent"


def trace(first: str, frames: tuple[str, ...]) -> str:
    return first + "\n" + "".join(f"\tat {frame}\n" for frame in frames)


LINSTOR_STOP_TRACE = trace(
    "javax.ws.rs.ProcessingException: java.net.ConnectException: Connection refused "
    "(Connection refused)", (
        "org.glassfish.jersey.client.internal.HttpUrlConnector.apply(HttpUrlConnector.java:260)",
        "org.glassfish.jersey.client.ClientRuntime.invoke(ClientRuntime.java:254)",
        "org.glassfish.jersey.client.JerseyInvocation.lambda$invoke$0(JerseyInvocation.java:729)",
        "org.glassfish.jersey.internal.Errors.process(Errors.java:292)",
        "org.glassfish.jersey.process.internal.RequestScope.runInScope(RequestScope.java:390)",
        "org.glassfish.jersey.client.JerseyInvocation.invoke(JerseyInvocation.java:728)",
        "com.linbit.linstor.api.ApiClient.invokeAPI(ApiClient.java:812)",
        "com.linbit.linstor.api.DevelopersApi.viewResources(DevelopersApi.java:11234)",
        f"{KVM}.storage.LinstorStorageAdaptor.disconnectPhysicalDiskByPath("
        "LinstorStorageAdaptor.java:390)",
        f"{KVM}.storage.KVMStoragePoolManager.disconnectPhysicalDiskByPath("
        "KVMStoragePoolManager.java:170)",
        f"{KVM}.resource.LibvirtComputingResource.cleanupDisk(LibvirtComputingResource.java:3304)",
        f"{KVM}.resource.wrapper.LibvirtStopCommandWrapper.execute("
        "LibvirtStopCommandWrapper.java:120)",
        f"{KVM}.resource.wrapper.LibvirtStopCommandWrapper.execute(LibvirtStopCommandWrapper.java:52)",
        f"{KVM}.resource.wrapper.LibvirtRequestWrapper.execute(LibvirtRequestWrapper.java:78)",
        f"{KVM}.resource.LibvirtComputingResource.executeRequest("
        "LibvirtComputingResource.java:1906)",
        "com.cloud.agent.Agent.processRequest(Agent.java:677)",
        "com.cloud.agent.Agent$AgentRequestHandler.doTask(Agent.java:1104)",
        "com.cloud.utils.nio.Task.call(Task.java:83)",
        "com.cloud.utils.nio.Task.call(Task.java:29)",
        f"{JUC}.FutureTask.run(FutureTask.java:264)",
        f"{JUC}.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1128)",
        f"{JUC}.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:628)",
        "java.base/java.lang.Thread.run(Thread.java:829)",
    ))

LIBVIRT_TRACE = trace(
    "org.libvirt.LibvirtException: Domain not found: no domain with matching name 'i-2-{vm}-VM'", (
        "org.libvirt.ErrorHandler.processError(Unknown Source)",
        "org.libvirt.ErrorHandler.processError(Unknown Source)",
        "org.libvirt.Connect.domainLookupByName(Unknown Source)",
        f"{KVM}.resource.LibvirtComputingResource.getVmState(LibvirtComputingResource.java:4050)",
        f"{KVM}.resource.wrapper.LibvirtGetVmStatsCommandWrapper.execute("
        "LibvirtGetVmStatsCommandWrapper.java:55)",
        "com.cloud.agent.Agent.processRequest(Agent.java:677)",
        "java.base/java.lang.Thread.run(Thread.java:829)",
    ))

DOMAIN_XML = """<domain type='kvm'>
<name>i-2-{vm}-VM</name>
<uuid>{uuid}</uuid>
<description>Ubuntu 22.04 LTS</description>
<memory>2097152</memory>
<currentMemory>2097152</currentMemory>
<vcpu>2</vcpu>
<os>
<type arch='x86_64' machine='pc'>hvm</type>
<boot dev='hd'/>
</os>
<devices>
<disk device='disk' type='file'>
<driver name='qemu' type='qcow2' cache='none'/>
<source file='/mnt/{pool}/{uuid}'/>
<target dev='vda' bus='virtio'/>
</disk>
<interface type='bridge'>
<source bridge='cloudbr0'/>
<mac address='02:00:5e:{a:02x}:{b:02x}:{c:02x}'/>
<model type='virtio'/>
</interface>
</devices>
</domain>
"""


class Writer:
    def __init__(self, out, seed: int, pool_share: float = 0.0) -> None:
        self.out = out
        self.pool_share = pool_share
        self.lines = self.pool_lines = 0
        self.rnd = random.Random(seed)
        self.t = time.mktime((2025, 3, 1, 0, 0, 0, 0, 0, -1))
        self.written = 0
        self.pools = [str(uuid.UUID(int=self.rnd.getrandbits(128))) for _ in range(6)]
        self.linstor_pool = str(uuid.UUID(int=self.rnd.getrandbits(128)))

    def stamp(self) -> str:
        self.t += self.rnd.random() * 0.05
        ms = int((self.t % 1) * 1000)
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.t)) + f",{ms:03d}"

    def write(self, text: str) -> None:
        self.out.write(text)
        self.written += len(text)
        self.lines += text.count("\n")

    def line(self, level: str, category: str, message: str, thread: str = "",
             logid: str = "") -> None:
        thread = thread or self.rnd.choice(HANDLERS)
        logid = logid if logid else f"{self.rnd.getrandbits(32):08x}"
        self.write(f"{self.stamp()} {level:<5} [{category}] ({thread}:null) (logid:{logid}) "
                   f"{message}\n")

    def vm_report(self, count: int) -> str:
        vms = ",".join(
            f'"i-2-{self.rnd.randint(100, 999)}-VM":'
            f'{{"state":"PowerOn","host":"kvm-{self.rnd.randint(1, 9)}"}}'
            for _ in range(count))
        return vms

    def pool_lookup(self) -> None:
        pool = self.rnd.choice(self.pools)
        self.line("INFO", "kvm.storage.LibvirtStorageAdaptor",
                  f"Trying to fetch storage pool {pool} from libvirt")
        self.line("DEBUG", "kvm.storage.LibvirtStorageAdaptor",
                  f"Successfully refreshed pool {pool} Capacity: (1.79 TB) 1968269393920 "
                  f"Used: (401.03 GB) 430613340160 Available: (1.39 TB) 1537656053760")
        self.pool_lines += 2

    def one(self) -> None:
        if self.pool_lines < self.pool_share * self.lines:
            self.pool_lookup()
            return
        r = self.rnd.random()
        seq = f"{self.rnd.randint(1, 60)}-{self.rnd.getrandbits(60)}"
        if r < 0.38:
            self.line("DEBUG", "kvm.resource.LibvirtConnection",
                      "Looking for libvirtd connection at: qemu:///system")
        elif r < 0.48:
            cmd = self.rnd.choice(("GetVmStatsCommand", "GetHostStatsCommand",
                                   "GetStorageStatsCommand", "NetworkUsageCommand"))
            self.line("DEBUG", "cloud.agent.Agent", f"Processing command: com.cloud.agent.api.{cmd}")
        elif r < 0.55:
            vms = ",".join(f'"i-2-{self.rnd.randint(100, 999)}-VM"' for _ in range(self.rnd.randint(2, 30)))
            self.line("DEBUG", "cloud.agent.Agent",
                      f"Request:Seq {seq}:  {{ Cmd , MgmtId: 90520738888109, via: 7, Ver: v1, "
                      f'Flags: 100111, [{{"com.cloud.agent.api.GetVmStatsCommand":{{"vmNames":[{vms}],'
                      f'"hostGuid":"{self.pools[0]}-LibvirtComputingResource","hostName":"kvm-3",'
                      f'"wait":"0","bypassHostMaintenance":"false"}}}}] }}')
        elif r < 0.62:
            self.line("DEBUG", "cloud.agent.Agent",
                      f"Seq {seq}:  {{ Ans: , MgmtId: 90520738888109, via: 7, Ver: v1, Flags: 110, "
                      f'[{{"com.cloud.agent.api.GetHostStatsAnswer":{{"hostStats":{{"cpuUtilization":'
                      f'{self.rnd.random() * 100:.2f},"networkReadKBs":{self.rnd.random() * 1e6:.1f},'
                      f'"totalMemoryKBs":263921248,"freeMemoryKBs":{self.rnd.randint(1, 2 ** 27)},'
                      f'"entityType":"host"}},"result":"true","wait":"0"}}}}] }}')
        elif r < 0.67:
            self.line("DEBUG", "cloud.agent.Agent",
                      f"Sending ping: Seq 0-{self.rnd.randint(1, 9999)}:  {{ Cmd , MgmtId: -1, via: 0, "
                      f'Ver: v1, Flags: 11, [{{"com.cloud.agent.api.PingRoutingWithNwGroupsCommand":'
                      f'{{"newGroupStates":{{}},"_hostVmStateReport":'
                      f'{{{self.vm_report(self.rnd.randint(3, 40))}}},'
                      f'"_gatewayAccessible":"true","_vnetAccessible":"true","hostType":"Routing",'
                      f'"hostId":"7","wait":"0"}}}}] }}', thread="UgentTask-1", logid="-")
        elif r < 0.74:
            self.line("DEBUG", "kvm.resource.LibvirtComputingResource", self.rnd.choice((
                "Executing: /usr/share/cloudstack-common/scripts/vm/network/security_group.py "
                "get_rule_logs_for_vms ",
                "Executing while with timeout : 1800000",
                "Execution is successful.",
            )), thread="UgentTask-5", logid="-")
        elif r < 0.80:
            self.pool_lookup()
        elif r < 0.83:
            pid = self.rnd.randint(1000, 999999)
            self.line("WARN", "utils.script.Script",
                      f"Execution of process [{pid}] for command [/bin/bash -c dpkg -l nbdkit ] failed.")
            self.line("WARN", "utils.script.Script",
                      f"Process [{pid}] for command [/bin/bash -c dpkg -l nbdkit ] "
                      "encountered the error: [1].")
        elif r < 0.86:
            self.line("INFO", "kvm.resource.LibvirtComputingResource",
                      f"Trying to get VM with name (i-2-{self.rnd.randint(100, 999)}-VM).")
        elif r < 0.875:
            xml = DOMAIN_XML.format(
                vm=self.rnd.randint(100, 999), uuid=uuid.UUID(int=self.rnd.getrandbits(128)),
                pool=self.rnd.choice(self.pools), a=self.rnd.randint(0, 255),
                b=self.rnd.randint(0, 255), c=self.rnd.randint(0, 255))
            first, rest = xml.split("\n", 1)
            self.line("DEBUG", "kvm.resource.LibvirtComputingResource", first)
            self.write(rest + "\n")
        elif r < 0.878:
            self.line("WARN", "cloud.agent.Agent", "Caught: ")
            self.write(LIBVIRT_TRACE.format(vm=self.rnd.randint(100, 999)))
        elif r < 0.879:
            thread, logid = self.rnd.choice(HANDLERS), f"{self.rnd.getrandbits(32):08x}"
            self.line("DEBUG", "kvm.storage.LinstorStorageAdaptor",
                      "Linstor: disconnectPhysicalDiskByPath /dev/drbd/by-res/cs-x/0", thread, logid)
            self.line("DEBUG", "kvm.storage.LinstorStorageAdaptor",
                      f"Linstor: Using storage pool: {self.linstor_pool}", thread, logid)
            self.line("WARN", "cloud.agent.Agent", "Caught: ", thread, logid)
            self.write(LINSTOR_STOP_TRACE)
        elif r < 0.884:
            pool = self.rnd.choice(self.pools)
            self.line("INFO", "kvm.storage.LibvirtStorageAdaptor",
                      f"Attempting to create storage pool {pool} ({self.rnd.choice(POOL_TYPES)}) in libvirt")
            self.line("INFO", "kvm.storage.LibvirtStorageAdaptor",
                      f"Found existing defined storage pool {pool}, using it.")
        elif r < 0.885:
            self.line("DEBUG", "kvm.storage.LinstorStorageAdaptor",
                      f"Linstor createStoragePool: name: '{self.linstor_pool}', host: "
                      f"'http://10.1.1.{self.rnd.randint(2, 250)}:3370', path: , userinfo: null")
        elif r < 0.886:
            self.line("WARN", "kvm.resource.KVMHAMonitor",
                      f"Write heartbeat for pool [{self.linstor_pool}] failed: "
                      "drbdsetup not found; try: 1 of 5.",
                      thread="Thread-24")
        elif r < 0.8862:
            self.line("INFO", "cloud.agent.Agent", "Stopping the agent: Reason = sig.kill",
                      thread="Thread-1", logid="-")
            self.line("INFO", "cloud.agent.AgentShell", "Agent started", thread="main", logid="-")
            self.line("INFO", "cloud.agent.AgentShell", "Implementation Version is 4.19.1.2",
                      thread="main", logid="-")
            self.line("INFO", "cloud.agent.Agent", "Connected to the host: 10.1.1.10",
                      thread="Agent-Handler-1", logid="-")
        else:
            self.line("DEBUG", "cloud.agent.Agent",
                      f"Seq {seq}:  {{ Ans: , MgmtId: 90520738888109, via: 7, Ver: v1, Flags: 110, "
                      '[{"com.cloud.agent.api.Answer":{"result":"true","wait":"0"}}] }')


def write_log(path: str, size: int, seed: int = 20250301, pool_share: float = 0.0) -> int:
    """Write about `size` bytes (whole records) to `path`; returns the bytes written."""
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        writer = Writer(out, seed, pool_share)
        while writer.written < size:
            writer.one()
        return writer.written


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--size", default="50M", help="e.g. 50M, 200M, 1G")
    parser.add_argument("--seed", type=int, default=20250301)
    parser.add_argument("--pool-share", type=float, default=0.0,
                        help="share of lines that are pool lookups (0.4: four in ten)")
    args = parser.parse_args(argv)
    written = write_log(args.path, parse_size(args.size), args.seed, args.pool_share)
    print(f"wrote {written} bytes to {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
