"""The agent source on real processes and sockets: the incarnation, its children and its
connection to the management server, also as an unprivileged user who cannot see root's sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from guard.sources.agent import find_agent
from guard.sources.agentconf import agent_properties
from tests.support.polling import wait_for
from tests.support.unprivileged import python_as_nobody


def spawn(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)


def test_agent_found_with_connection_and_children(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = ("import socket, subprocess, sys, time\n"
            f"s = socket.create_connection(('127.0.0.1', {port}))\n"
            "child = subprocess.Popen(['sleep', '60'])\n"
            "time.sleep(60)\n")
    proc = spawn([sys.executable, "-c", code, "com.cloud.agent.AgentShell"])
    try:
        conf = agent_properties("x", {"host": "127.0.0.1", "port": str(port)})
        assert wait_for(lambda: (find_agent(conf)[0] or None) is not None and find_agent(conf)[0].children)
        agent, status = find_agent(conf)
        assert status.ok and agent.incarnation.pid == proc.pid
        assert agent.connected is True and f"127.0.0.1:{port}" in agent.connection
        assert [c.name for c in agent.children] == ["sleep"]
        elsewhere = agent_properties("x", {"host": "127.0.0.2", "port": str(port)})
        agent, _ = find_agent(elsewhere)
        assert agent.connected is False and "127.0.0.2" in agent.connection
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)
        listener.close()


def test_jsvc_parent_and_child_are_one_incarnation():
    """jsvc leaves a parent and a child that both carry the main class."""
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
            "'com.cloud.agent.AgentShell'])\n"
            "time.sleep(60)\n")
    proc = spawn([sys.executable, "-c", code, "com.cloud.agent.AgentShell"])
    try:
        assert wait_for(lambda: find_agent(None)[0] is not None)
        time.sleep(0.3)
        agent, status = find_agent(None)
        assert agent.incarnation.pid == proc.pid and agent.children == ()
        assert agent.connected is None
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)


def test_no_agent():
    agent, status = find_agent(None)
    assert agent is None and status.ok and "no com.cloud.agent.AgentShell" in status.detail


def test_agent_sockets_hidden_from_unprivileged_user_is_unknown_not_disconnected(world_tmp):
    """A monitoring user without root cannot read root's sockets: that is not a disconnect."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = f"import socket, time\ns = socket.create_connection(('127.0.0.1', {port}))\ntime.sleep(60)\n"
    proc = spawn([sys.executable, "-c", code, "com.cloud.agent.AgentShell"])
    try:
        (world_tmp / "agent.properties").write_text(f"host=127.0.0.1\nport={port}\n")
        (world_tmp / "agent.properties").chmod(0o644)
        probe = ("import json, sys\nfrom guard.sources.agent import find_agent\n"
                 "from guard.sources.agentconf import read_agent_properties\n"
                 "props, _ = read_agent_properties(sys.argv[1])\nagent, _ = find_agent(props)\n"
                 "print(json.dumps([props is not None, agent.incarnation.pid, agent.connected, "
                 "agent.connection]))\n")
        assert wait_for(lambda: find_agent(None)[0] is not None)
        result = python_as_nobody(probe, str(world_tmp / "agent.properties"))
        assert result.returncode == 0, result.stderr
        read_props, pid, connected, how = json.loads(result.stdout)
        assert read_props, "the unprivileged child must read agent.properties to know the port"
        assert pid == proc.pid and connected is None and "root" in how
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)
        listener.close()
