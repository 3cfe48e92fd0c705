"""The systemd-nspawn harness boots a real systemd and real units behave under it.

Each test boots its own container (about 1 s) and asserts on what the scenario, run inside
by the driver unit, wrote to /out. Skipped (with the reason) only where nspawn cannot run
at all, e.g. not root; failed instead under GUARD_REQUIRE_REAL_PARTS=1.
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.support import nspawn
from tests.support.libvirtd import PrivateLibvirtd, define_dir_pool, undefine_pool
from tests.support.real_parts import real_part_unavailable


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    reason = nspawn.unavailable_reason()
    if reason is not None:
        real_part_unavailable("systemd-nspawn", reason)
    return tmp_path / "out"


def script(body: str) -> str:
    return textwrap.dedent(body).lstrip()


NOTIFY_LIB = """
import os, socket

def notify(message):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), addr)
"""

# Type=notify: logs a line, takes 0.5 s to get ready, then READY=1 with a STATUS.
NOTIFY_SERVICE = script(
    """
    #!/usr/bin/python3
    import sys, time
    sys.path.insert(0, "/harness")
    from notifylib import notify
    import os
    print(f"notify-svc starting pid={os.getpid()}", flush=True)
    time.sleep(0.5)
    notify(f"READY=1\\nSTATUS=serving as {os.getpid()}")
    while True:
        time.sleep(3600)
    """
)


def test_notify_service_restart_gives_new_main_pid_and_journal(out_dir: Path) -> None:
    units = {
        "notify-svc.service": script(
            """
            [Unit]
            Description=harness Type=notify service
            [Service]
            Type=notify
            ExecStart=/harness/notify_svc.py
            """
        )
    }
    scenario = script(
        """
        import time
        from tests.support import nspawn as h

        unit = "notify-svc.service"
        before = h.unit_properties(unit, "ActiveState", "SubState", "Type", "StatusText", "MainPID")
        old = int(before["MainPID"])
        began = time.monotonic()
        h.systemctl("restart", unit)  # Type=notify: returns once the new process sent READY=1
        restart_s = time.monotonic() - began
        new = h.wait_for_main_pid_change(unit, old, timeout=10)
        after = h.unit_properties(unit, "ActiveState", "StatusText")
        lines = {e["MESSAGE"]: int(e["_PID"]) for e in h.journal(unit) if "notify-svc starting" in e["MESSAGE"]}
        h.write_result("scenario", {"before": before, "old": old, "new": new, "after": after,
                                    "restart_s": restart_s, "lines": lines})
        """
    )
    result = nspawn.run_scenario(
        scenario,
        units=units,
        start=["notify-svc.service"],
        extra_files={"/harness/notify_svc.py": NOTIFY_SERVICE, "/harness/notifylib.py": NOTIFY_LIB},
        journal_units=["notify-svc.service"],
        out_dir=out_dir,
        timeout=30,
    ).check()
    doc = result.result("scenario")
    old, new = doc["old"], doc["new"]
    assert doc["before"]["ActiveState"] == "active" and doc["before"]["SubState"] == "running"
    assert doc["before"]["Type"] == "notify"
    assert doc["before"]["StatusText"] == f"serving as {old}"  # STATUS= reached systemd
    assert old > 0 and new > 0 and new != old
    assert doc["after"] == {"ActiveState": "active", "StatusText": f"serving as {new}"}
    assert doc["restart_s"] >= 0.5, "restart of a Type=notify unit must wait for READY=1"
    assert doc["lines"] == {f"notify-svc starting pid={old}": old, f"notify-svc starting pid={new}": new}
    # The driver copied the unit's journal out as JSON, too.
    copied = [e["MESSAGE"] for e in result.journal("notify-svc.service")]
    assert f"notify-svc starting pid={new}" in copied
    assert any(a.startswith(f"--machine=gt{os.getpid()}-") for a in result.argv)  # unique per boot
    print(f"boot+scenario {result.duration:.2f} s")


def test_restart_always_service_comes_back_after_sigkill(out_dir: Path) -> None:
    units = {
        "simple-svc.service": script(
            """
            [Unit]
            Description=harness Type=simple Restart=always service
            [Service]
            Type=simple
            ExecStart=/harness/simple_svc.sh
            Restart=always
            RestartSec=200ms
            """
        )
    }
    scenario = script(
        """
        import os, signal
        from tests.support import nspawn as h

        unit = "simple-svc.service"
        h.wait_for_property(unit, "ActiveState", "active", timeout=10)
        old = h.main_pid(unit)
        os.kill(old, signal.SIGKILL)
        new = h.wait_for_main_pid_change(unit, old, timeout=10)
        h.write_result("scenario", {
            "old": old, "new": new,
            "restarts": h.unit_property(unit, "NRestarts"),
            "messages": h.messages(unit),
        })
        """
    )
    result = nspawn.run_scenario(
        scenario,
        units=units,
        start=["simple-svc.service"],
        extra_files={"/harness/simple_svc.sh": '#!/bin/sh\necho "simple-svc up $$"\nexec sleep infinity\n'},
        out_dir=out_dir,
        timeout=30,
    ).check()
    doc = result.result("scenario")
    assert doc["old"] > 0 and doc["new"] not in (0, doc["old"])
    assert doc["restarts"] == "1"
    assert any("code=killed, status=9/KILL" in m for m in doc["messages"]), doc["messages"]
    assert f"simple-svc up {doc['new']}" in doc["messages"]


# The first instance stops sending WATCHDOG=1 after READY; later ones keep pinging.
WATCHDOG_SERVICE = script(
    """
    #!/usr/bin/python3
    import os, sys, time
    sys.path.insert(0, "/harness")
    from notifylib import notify
    marker = "/run/wd-svc.first-done"
    first = not os.path.exists(marker)
    open(marker, "w").close()
    print(f"wd-svc pid={os.getpid()} first={first} WATCHDOG_USEC={os.environ.get('WATCHDOG_USEC')}", flush=True)
    notify("READY=1")
    while True:
        if not first:
            notify("WATCHDOG=1")
        time.sleep(0.25)
    """
)


def test_watchdog_kills_and_restarts_a_silent_service(out_dir: Path) -> None:
    units = {
        "wd-svc.service": script(
            """
            [Unit]
            Description=harness watchdog service
            [Service]
            Type=notify
            ExecStart=/harness/wd_svc.py
            WatchdogSec=2
            Restart=on-failure
            RestartSec=100ms
            """
        )
    }
    scenario = script(
        """
        import time
        from tests.support import nspawn as h

        unit = "wd-svc.service"
        old = h.main_pid(unit)
        began = time.monotonic()
        new = h.wait_for_main_pid_change(unit, old, timeout=10)
        replaced_after_s = time.monotonic() - began
        time.sleep(3)  # longer than WatchdogSec: the pinging instance must survive it
        h.write_result("scenario", {
            "old": old, "new": new, "replaced_after_s": replaced_after_s,
            "pid_after_3s": h.main_pid(unit),
            "restarts": h.unit_property(unit, "NRestarts"),
            "watchdog_usec": h.unit_property(unit, "WatchdogUSec"),
            "messages": h.messages(unit),
        })
        """
    )
    result = nspawn.run_scenario(
        scenario,
        units=units,
        start=["wd-svc.service"],
        extra_files={"/harness/wd_svc.py": WATCHDOG_SERVICE, "/harness/notifylib.py": NOTIFY_LIB},
        out_dir=out_dir,
        timeout=30,
    ).check()
    doc = result.result("scenario")
    old, new = doc["old"], doc["new"]
    assert old > 0 and new not in (0, old)
    assert 1.0 < doc["replaced_after_s"] < 4.0, doc["replaced_after_s"]
    assert doc["pid_after_3s"] == new and doc["restarts"] == "1"
    assert doc["watchdog_usec"] == "2s"
    messages = doc["messages"]
    assert any("Watchdog timeout" in m for m in messages), messages
    assert f"wd-svc pid={old} first=True WATCHDOG_USEC=2000000" in messages
    assert f"wd-svc pid={new} first=False WATCHDOG_USEC=2000000" in messages


def test_private_loopback_and_binds(out_dir: Path, tmp_path: Path) -> None:
    # A listener on the host's 127.0.0.1 must not be reachable from the container.
    host_listener = socket.socket()
    host_listener.bind(("127.0.0.1", 0))
    host_listener.listen()
    host_port = host_listener.getsockname()[1]
    shared = tmp_path / "shared-rw"
    shared.mkdir()
    readonly = tmp_path / "shared-ro"
    readonly.mkdir()
    (readonly / "hello.txt").write_text("from the host\n")
    server = script(
        """
        #!/usr/bin/python3
        import socketserver, sys
        sys.path.insert(0, "/harness")
        from notifylib import notify

        class Pong(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"pong " + self.rfile.readline())

        with socketserver.TCPServer(("127.0.0.1", 18080), Pong) as srv:
            notify("READY=1")
            srv.serve_forever()
        """
    )
    units = {
        "pong.service": "[Service]\nType=notify\nExecStart=/harness/pong.py\n",
    }
    scenario = script(
        """
        import os, socket
        from pathlib import Path
        from tests.support import nspawn as h

        with socket.create_connection(("127.0.0.1", 18080), timeout=5) as s:
            s.sendall(b"ping\\n")
            reply = s.recv(100).decode()
        try:
            socket.create_connection(("127.0.0.1", int(os.environ["HOST_PORT"])), timeout=2).close()
            host_port = "connected"
        except OSError as exc:
            host_port = type(exc).__name__
        Path(os.environ["SHARED"], "from-container.txt").write_text("written inside\\n")
        ro = Path(os.environ["READONLY"])
        try:
            (ro / "nope.txt").write_text("x")
            ro_write = "written"
        except OSError as exc:
            ro_write = exc.strerror
        h.write_result("scenario", {
            "reply": reply, "host_port": host_port, "ro_read": (ro / "hello.txt").read_text(),
            "ro_write": ro_write, "hostname": socket.gethostname(),
            "etc_empty_of_host_files": not Path("/etc/libvirt").exists(),
        })
        """
    )
    try:
        result = nspawn.run_scenario(
            scenario,
            units=units,
            start=["pong.service"],
            extra_files={"/harness/pong.py": server, "/harness/notifylib.py": NOTIFY_LIB},
            binds_rw=[shared],
            binds_ro=[readonly],
            env={"HOST_PORT": str(host_port), "SHARED": str(shared), "READONLY": str(readonly)},
            out_dir=out_dir,
            timeout=30,
        ).check()
    finally:
        host_listener.close()
    doc = result.result("scenario")
    assert doc["reply"] == "pong ping\n"
    assert doc["host_port"] == "ConnectionRefusedError"
    assert (shared / "from-container.txt").read_text() == "written inside\n"
    assert doc["ro_read"] == "from the host\n"
    assert doc["ro_write"] == "Read-only file system"
    assert not (readonly / "nope.txt").exists()
    assert doc["hostname"].startswith("gt")
    assert doc["etc_empty_of_host_files"]


def test_private_libvirtd_reached_through_bound_socket_dir(out_dir: Path, libvirtd: PrivateLibvirtd) -> None:
    import libvirt

    name = str(uuid.uuid4())  # CloudStack names pools by uuid
    conn = libvirt.open(libvirtd.uri)
    try:
        target = out_dir.parent / "pool"
        target.mkdir()
        define_dir_pool(conn, name, target)
        scenario = script(
            """
            import os, libvirt
            from tests.support import nspawn as h
            conn = libvirt.open(os.environ["URI"])
            h.write_result("scenario", {"pools": [p.name() for p in conn.listAllStoragePools(0)]})
            """
        )
        result = nspawn.run_scenario(
            scenario, binds_rw=[libvirtd.run_dir], env={"URI": libvirtd.uri}, out_dir=out_dir, timeout=30
        ).check()
    finally:
        undefine_pool(conn, name)
        conn.close()
    assert name in result.result("scenario")["pools"]


def test_failing_scenario_gives_its_exit_status_and_traceback(out_dir: Path) -> None:
    scenario = out_dir.parent / "failing_scenario.py"  # a file outside the checkout: staged
    scenario.write_text("print('about to fail', flush=True)\nassert 1 == 2, 'scenario assertion'\n")
    result = nspawn.run_scenario(scenario, out_dir=out_dir, timeout=30)
    assert result.returncode == 1 and not result.timed_out
    assert (out_dir / "scenario.rc").read_text() == "1\n"
    assert "AssertionError: scenario assertion" in result.console
    assert "about to fail" in (out_dir / "journal.txt").read_text()
    with pytest.raises(AssertionError, match="rc=1"):
        result.check()


def test_hung_driver_is_killed_at_the_timeout_with_nothing_left_behind(out_dir: Path) -> None:
    marker = f"{time.time_ns() % 100000}.5"  # unique argument to sleep
    units = {"hang.service": nspawn.driver_unit("/harness/hang.sh")}
    began = time.monotonic()
    result = nspawn.boot(
        units,
        "hang.service",
        extra_files={"/harness/hang.sh": f"#!/bin/sh\necho hanging\nexec sleep {marker}\n"},
        out_dir=out_dir,
        timeout=3,
    )
    elapsed = time.monotonic() - began
    assert result.timed_out and result.returncode is None and not result.ok
    assert 3 <= elapsed < 8
    assert "hanging" in result.console  # the tail shows how far it got
    time.sleep(0.3)
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"sleep\0{marker}".encode() in (entry / "cmdline").read_bytes():
                    left.append(entry.name)
            except OSError:
                pass
    assert left == [], f"container processes survived the timeout: {left}"
    with pytest.raises(AssertionError, match="timed out"):
        result.check()


GOOD_UNIT = """\
[Unit]
Description=good unit
After=network.target

[Service]
Type=notify
ExecStart=/usr/bin/python3 -c pass
WatchdogSec=10
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

HARDENING = """\
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
CapabilityBoundingSet=
SystemCallFilter=@system-service
MemoryDenyWriteExecute=yes
LockPersonality=yes
"""


@pytest.mark.parametrize(
    "broken, complaint",
    [
        ("Type=notifyy", "Failed to parse service type"),
        ("ExecStart=/nonexistent/guard", "is not executable"),
        ("Bogus=1", "Unknown key 'Bogus'"),  # verify exits 0 here: strict mode catches it
        ("Requires=no-such-unit.service", "no-such-unit.service not found"),
    ],
)
def test_systemd_analyze_verify(tmp_path: Path, broken: str, complaint: str) -> None:
    if nspawn.shutil.which("systemd-analyze") is None:
        real_part_unavailable("systemd-analyze", "not installed")
    good = tmp_path / "good.service"
    good.write_text(GOOD_UNIT)
    assert nspawn.systemd_analyze_verify(good) == (True, "")
    bad = tmp_path / "bad.service"
    key = broken.split("=")[0]
    lines = [line for line in GOOD_UNIT.splitlines() if not line.startswith(f"{key}=")]
    section = "[Unit]" if key == "Requires" else "[Service]"
    lines.insert(lines.index(section) + 1, broken)
    bad.write_text("\n".join(lines) + "\n")
    ok, output = nspawn.systemd_analyze_verify(bad)
    assert not ok
    assert complaint in output


def test_systemd_analyze_security_scores_hardening(tmp_path: Path) -> None:
    if nspawn.shutil.which("systemd-analyze") is None:
        real_part_unavailable("systemd-analyze", "not installed")
    plain = tmp_path / "plain.service"
    plain.write_text(GOOD_UNIT)
    hardened = tmp_path / "hardened.service"
    hardened.write_text(GOOD_UNIT.replace("Restart=on-failure\n", "Restart=on-failure\n" + HARDENING))
    plain_score, plain_out = nspawn.systemd_analyze_security(plain)
    hard_score, hard_out = nspawn.systemd_analyze_security(hardened)
    assert 0.0 <= hard_score < plain_score <= 10.0
    assert "UNSAFE" in plain_out and "ProtectSystem=" in hard_out
    print(f"exposure: plain {plain_score}, hardened {hard_score}")
