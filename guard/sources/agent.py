"""The running cloudstack-agent JVM: which incarnation it is, what it is doing, and
whether it is connected to its management server.

Old packages start the agent through jsvc, which leaves a parent and a child that both
carry the main class on their command lines; the topmost is the incarnation, and the
whole tree's sockets and children count.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import subprocess
from typing import Optional

import psutil

from guard.deadline import run_bounded
from guard.hostname import for_lookup
from guard.model import UNIT_NOT_FOUND, AgentProcess, ChildProcess, Incarnation, SourceStatus
from guard.sources.agentconf import AgentProperties
from guard.sources.sockdiag import Remote, established

MAIN_CLASS = "com.cloud.agent.AgentShell"
RESOLVE_TIMEOUT_S = 1.0
SYSTEMCTL_TIMEOUT_S = 2.0


def _is_agent(proc: psutil.Process) -> bool:
    try:
        return any(MAIN_CLASS in arg for arg in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def _agent_processes() -> list[psutil.Process]:
    """Every process whose command line names the agent's main class. The command lines
    are read straight from /proc, one small read each: a hypervisor runs hundreds of
    processes (a qemu per VM), and psutil's process_iter would read each one's stat and
    status too, a third of a check's time, to keep the one or two that matter."""
    needle = MAIN_CLASS.encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        names = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                if needle not in handle.read():
                    continue
            proc = psutil.Process(int(name))
        except (OSError, psutil.NoSuchProcess):
            continue
        if _is_agent(proc):
            found.append(proc)
    return found


def _addresses(hosts: tuple[str, ...]) -> set[str]:
    """The management hosts as IP addresses; a name that does not resolve quickly is
    left out rather than allowed to stall the check."""
    found = set()
    for host in hosts:
        try:
            found.add(str(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        try:
            lookup = functools.partial(socket.getaddrinfo, for_lookup(host), None)
            infos = run_bounded(lookup, RESOLVE_TIMEOUT_S)
        except (OSError, TimeoutError):
            continue
        found.update(str(ipaddress.ip_address(info[4][0])) for info in infos)
    return found


def _normal(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def _established(tree: list[psutil.Process]) -> tuple[list[Remote], bool]:
    """The remote ends of the tree's established TCP connections, and whether some of
    its sockets could not be seen. sock_diag first (guard/sources/sockdiag.py says why),
    psutil's reading of /proc/net where netlink is not allowed."""
    found = established(p.pid for p in tree)
    if found is not None:
        return found
    remotes, hidden = [], False
    for proc in tree:
        try:
            conns = (proc.net_connections(kind="tcp") if hasattr(proc, "net_connections")
                     else proc.connections(kind="tcp"))
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            hidden = True
            continue
        remotes += [Remote(_normal(c.raddr.ip), c.raddr.port) for c in conns
                    if c.status == psutil.CONN_ESTABLISHED and c.raddr]
    return remotes, hidden


def _connection(tree: list[psutil.Process], props: Optional[AgentProperties]) -> tuple[Optional[bool], str]:
    port = props.port if props else 8250
    wanted = _addresses(props.hosts) if props else set()
    established_to, hidden = _established(tree)
    for remote in established_to:
        if remote.port == port and (not wanted or remote.ip in wanted):
            return True, f"connected to management server {remote.ip}:{port}"
    if hidden:
        return None, "cannot see the agent's sockets (run the guard as root)"
    if props is None:
        return None, "agent.properties unreadable: cannot tell which management server to expect"
    hosts = ",".join(props.hosts) or "(none)"
    return False, f"no established TCP connection to the management server ({hosts} port {port})"


def unit_state(unit: str) -> tuple[Optional[int], str]:
    """(MainPID, "ActiveState/SubState") of the agent's unit when systemd runs this host,
    or "not-found" when systemd has no such unit (the agent is not installed).

    MainPID names the agent systemd would restart, whatever else carries the class name
    (a second copy started by hand, a test); the state tells a stopped agent from one in
    its RestartSec gap."""
    if not unit or not os.path.isdir("/run/systemd/system"):
        return None, ""
    try:
        result = subprocess.run(
            ["systemctl", "show", "--property=MainPID,LoadState,ActiveState,SubState", unit],
            capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None, ""
    if result.returncode != 0:
        return None, ""
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    if values.get("LoadState") == "not-found":
        return None, UNIT_NOT_FOUND
    pid = values.get("MainPID", "")
    state = f"{values.get('ActiveState', '')}/{values.get('SubState', '')}".strip("/")
    return (int(pid) if pid.isdigit() and int(pid) > 0 else None), state


def start_ticks(pid: int) -> int:
    """The process's start in clock ticks after boot (field 22 of /proc/PID/stat), 0 when
    unreadable. psutil's create_time adds it to a boot time derived from the wall clock,
    so it moves when the clock is stepped; the identity of an incarnation must not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _describe(top: psutil.Process, props: Optional[AgentProperties]) -> AgentProcess:
    tree = [top] + top.children(recursive=True)
    agent_pids = {p.pid for p in tree if _is_agent(p)}
    children = []
    for child in tree[1:]:
        if child.pid in agent_pids:
            continue
        try:
            children.append(ChildProcess(child.pid, child.name(), " ".join(child.cmdline())))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    connected, how = _connection(tree, props)
    return AgentProcess(
        incarnation=Incarnation(top.pid, top.create_time(), start_ticks(top.pid)),
        cmdline=" ".join(top.cmdline())[:500],
        children=tuple(children),
        connected=connected,
        connection=how,
    )


def inspect_agent(
    incarnation: Incarnation, props: Optional[AgentProperties]
) -> Optional[AgentProcess]:
    """The known agent again, cheaply (no scan of every process); None once it is gone
    or its pid belongs to another process now."""
    try:
        proc = psutil.Process(incarnation.pid)
        same = (start_ticks(proc.pid) == incarnation.start_ticks if incarnation.start_ticks
                else proc.create_time() == incarnation.start_time)
        if not same or not _is_agent(proc):
            return None
        return _describe(proc, props)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def find_agent(
    props: Optional[AgentProperties], unit: str = ""
) -> tuple[Optional[AgentProcess], SourceStatus]:
    try:
        candidates = _agent_processes()
        pids = {p.pid for p in candidates}
        tops = [p for p in candidates if p.ppid() not in pids]
        if not tops:
            return None, SourceStatus("agent-process", True, f"no {MAIN_CLASS} process")
        main_pid, _ = unit_state(unit)
        by_unit = [p for p in tops if p.pid == main_pid]
        top = by_unit[0] if by_unit else min(tops, key=lambda p: p.create_time())
        note = "" if by_unit or len(tops) == 1 else (
            f"; {len(tops)} {MAIN_CLASS} processes, judging the oldest")
        agent = _describe(top, props)
    except psutil.NoSuchProcess:
        return None, SourceStatus("agent-process", True, "the agent exited while being read")
    except psutil.AccessDenied as exc:
        return None, SourceStatus("agent-process", False, f"access denied reading pid {exc.pid}")
    return agent, status_of(agent, note)


def status_of(agent: AgentProcess, note: str = "") -> SourceStatus:
    return SourceStatus("agent-process", True, f"pid {agent.incarnation.pid}; {agent.connection}{note}")
