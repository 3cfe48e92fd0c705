"""A real, private libvirtd for tests.

The guard reads libvirt storage pools and must survive libvirtd going away, so tests need
a genuine daemon they can stop and start at will, without ever seeing or changing the
host's own pools. libvirtd runs as root in its own mount namespace: its state directories
are bind-mounted over a temporary tree, /run is a private tmpfs (so it cannot reach the
host's D-Bus, systemd or another libvirtd), and its only socket lives in the temporary
tree. Nothing on the host is written except the libvirt-qemu user and groups, which the
QEMU driver refuses to start without.

It can also run guests (Debian `qemu-system-x86`, TCG, no /dev/kvm needed): its qemu.conf
keeps them inside the same fences. QEMU runs as root, so capability probes stay valid
where /dev/kvm exists but is root-only (as libvirt-qemu every API call would re-probe QEMU
for about 4 s), and it can write to pytest's 0700 temporary dirs; its stdout and stderr go
to a file instead of virtlogd, so no second daemon is needed; no cgroups are used, so no
machine/ cgroups are created on the host; no security driver (AppArmor on Ubuntu CI)
applies. The first guest start in a fresh tree probes QEMU's capabilities (~4 s); later
starts take ~0.3 s.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt

# Directories a privileged libvirtd writes to, and the name of their private replacement.
_STATE_DIRS = (
    ("/etc/libvirt", "etc"),
    ("/var/lib/libvirt", "lib"),
    ("/var/log/libvirt", "log"),
    ("/var/cache/libvirt", "cache"),
)
_RUN_DIR = "/run/libvirt"

# Runs inside the new namespace. Operations and paths arrive as positional arguments so no
# path is ever parsed as shell code. `mount -n` keeps util-linux from creating
# /run/mount/utab on the host before the private /run is in place.
_MOUNT_SCRIPT = """set -eu
while [ "$#" -gt 0 ]; do
  case "$1" in
    tmpfs) mount -n -t tmpfs -o mode=0755 tmpfs "$2"; shift 2 ;;
    overlay) mount -n -t overlay overlay -o "lowerdir=$2,upperdir=$3,workdir=$4" "$2"; shift 4 ;;
    mkdir) mkdir -p "$2"; shift 2 ;;
    bind) mount -n --bind "$2" "$3"; shift 3 ;;
    --) shift; break ;;
    *) echo "libvirtd harness: unknown mount operation $1" >&2; exit 2 ;;
  esac
done
exec "$@"
"""

# The QEMU driver's configuration; the reasons are in the module docstring.
_QEMU_CONF = """user = "root"
group = "root"
stdio_handler = "file"
cgroup_controllers = [ ]
security_driver = "none"
"""

_SUN_PATH_MAX = 107
_COMMAND_TIMEOUT = 30.0

_live: set[PrivateLibvirtd] = set()


class LibvirtdError(RuntimeError):
    """The private libvirtd could not be started; the message says why and what it logged."""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_qemu_accounts() -> None:
    """Create the accounts Debian's QEMU driver is built to run guests as.

    Debian creates them in libvirt-daemon-system, which hosts running only libvirt-daemon
    lack; without them libvirtd aborts at start. A concurrent creator is tolerated.
    """
    for group in ("kvm", "libvirt-qemu"):
        if not _group_exists(group):
            result = _run(["groupadd", "--system", group])
            if result.returncode != 0 and not _group_exists(group):
                raise LibvirtdError(f"groupadd {group} failed: {result.stderr.strip()}")
    if not _user_exists("libvirt-qemu"):
        result = _run(
            [
                "useradd", "--system", "--gid", "kvm", "--groups", "libvirt-qemu",
                "--no-create-home", "--home-dir", "/var/lib/libvirt",
                "--shell", "/usr/sbin/nologin", "--comment", "Libvirt Qemu", "libvirt-qemu",
            ]
        )
        if result.returncode != 0 and not _user_exists("libvirt-qemu"):
            raise LibvirtdError(f"useradd libvirt-qemu failed: {result.stderr.strip()}")


def _conf_string(value: str) -> str:
    if '"' in value or "\\" in value or "\n" in value:
        raise LibvirtdError(f"path not usable in libvirtd.conf: {value!r}")
    return f'"{value}"'


class PrivateLibvirtd:
    """One libvirtd in its own mount namespace, reachable only through `uri`.

    stop() and start() can be repeated on the same socket so tests can take libvirt away
    from the guard and bring it back; definitions persist across restarts like on a host.
    """

    def __init__(self, tmpdir: str | os.PathLike[str], ready_timeout: float = 15.0) -> None:
        self.root = Path(tmpdir).resolve()
        self.ready_timeout = ready_timeout
        self.run_dir = self.root / "run"
        self.socket_path = self.run_dir / "libvirt-sock"
        self.log_path = self.root / "log" / "libvirtd.log"
        self.stderr_path = self.root / "libvirtd.stderr"
        self.config_path = self.root / "etc" / "libvirtd.conf"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        if len(str(self.socket_path)) > _SUN_PATH_MAX:
            raise LibvirtdError(f"socket path too long for AF_UNIX: {self.socket_path}")

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket_path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def __enter__(self) -> PrivateLibvirtd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """What libvirtd said last, for error messages that must explain a failed start."""
        parts = []
        for path in (self.stderr_path, self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(libvirtd wrote nothing)"

    def _prepare(self) -> list[str]:
        """Lay out the private tree and return the mount operations for _MOUNT_SCRIPT."""
        for _, name in _STATE_DIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "listen_tls = 0\n"
            "listen_tcp = 0\n"
            f"unix_sock_dir = {_conf_string(str(self.run_dir))}\n"
            'unix_sock_rw_perms = "0700"\n'
            'unix_sock_ro_perms = "0700"\n'
            'auth_unix_rw = "none"\n'
            'auth_unix_ro = "none"\n'
            f"log_outputs = {_conf_string('3:file:' + str(self.log_path))}\n"
        )
        (self.root / "etc" / "qemu.conf").write_text(_QEMU_CONF)
        if self.root.is_relative_to("/run"):
            raise LibvirtdError(f"temporary dir {self.root} lies under /run, which is replaced")
        ops = ["tmpfs", "/run", "mkdir", _RUN_DIR, "bind", str(self.run_dir), _RUN_DIR]
        overlaid: set[str] = set()
        for target, name in _STATE_DIRS:
            if not os.path.isdir(target):
                # Making the mount point on the host would leave traces there; an overlay
                # on its parent makes it exist only inside the namespace.
                parent = os.path.dirname(target)
                if parent not in overlaid:
                    if self.root.is_relative_to(parent):
                        raise LibvirtdError(f"temporary dir {self.root} lies under {parent}")
                    upper = self.root / "overlay" / name / "upper"
                    work = self.root / "overlay" / name / "work"
                    upper.mkdir(parents=True, exist_ok=True)
                    work.mkdir(parents=True, exist_ok=True)
                    ops += ["overlay", parent, str(upper), str(work)]
                    overlaid.add(parent)
                ops += ["mkdir", target]
            ops += ["bind", str(self.root / name), target]
        return ops

    def start(self) -> None:
        """Start libvirtd and return once a client can open the URI; no-op if running.

        libvirtd gets SIGKILL when the thread that started it exits (setpriv
        --pdeathsig), so a killed test run leaves no daemon behind: start it from a
        thread that outlives its use, normally the main thread.
        """
        if self.running:
            return
        if os.geteuid() != 0:
            raise LibvirtdError("a private libvirtd needs root (mount namespace, bind mounts)")
        missing = [tool for tool in ("libvirtd", "unshare", "setpriv") if not shutil.which(tool)]
        if missing:
            raise LibvirtdError(f"not found in PATH: {', '.join(missing)}")
        ensure_qemu_accounts()
        ops = self._prepare()
        argv = [
            "setpriv", "--pdeathsig", "KILL", "--",
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", _MOUNT_SCRIPT, "libvirtd-harness", *ops, "--",
            "libvirtd", "--config", str(self.config_path),
            "--pid-file", str(self.run_dir / "libvirtd.pid"),
        ]
        began = time.monotonic()
        with open(self.stderr_path, "ab") as err:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
            )
        _live.add(self)
        self._wait_ready(began)
        self.startup_seconds = time.monotonic() - began

    def _wait_ready(self, began: float) -> None:
        deadline = began + self.ready_timeout
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                self._reap()
                raise LibvirtdError(f"libvirtd exited with {code} at start\n{self.log_tail()}")
            if self.socket_path.exists():
                try:
                    libvirt.open(self.uri).close()
                    return
                except libvirt.libvirtError as exc:
                    last_error = str(exc)
            time.sleep(0.02)
        self.stop()
        raise LibvirtdError(
            f"libvirtd not ready after {self.ready_timeout:.0f}s ({last_error})\n"
            f"{self.log_tail()}"
        )

    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        """Kill libvirtd and wait for it, so clients see their connection closed.

        graceful=False sends SIGKILL straight away, like a crash or the OOM killer.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        self._reap()

    def _reap(self) -> None:
        """Forget the process after sweeping anything left in its process group."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc = None
        _live.discard(self)

    def restart(self) -> None:
        self.stop()
        self.start()

    def guest_log(self, name: str, lines: int = 30) -> str:
        """What QEMU and libvirt wrote about guest `name`, for a failed start."""
        path = self.root / "log" / "qemu" / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {path})"

    def kill_guests(self) -> list[int]:
        """SIGKILL the QEMU processes this daemon started, by the pid files it keeps.

        Guests outlive libvirtd (as on a host), so a test run cut short would leave them
        behind; this is the last resort, tests destroy their own domains. Returns the pids.
        """
        killed = []
        for pid_file in (self.run_dir / "qemu").glob("*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if not os.path.basename(cmdline[0]).startswith(b"qemu-system-"):
                continue  # the guest is gone and its pid reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed


class SocketAlias:
    """A second path to a private libvirtd's socket, for one client (the guard) to use.

    Closing it keeps that client away while the test changes libvirt through the real
    socket: what changed meanwhile reaches the client only by what it reads on return, as
    when libvirtd came back before the client's next retry.
    """

    def __init__(self, daemon: PrivateLibvirtd, path: str | os.PathLike[str]) -> None:
        self.daemon = daemon
        self.path = Path(path)
        if len(str(self.path)) > _SUN_PATH_MAX:
            raise LibvirtdError(f"socket path too long for AF_UNIX: {self.path}")
        self.open()

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path}"

    def open(self) -> None:
        os.symlink(self.daemon.socket_path, self.path)

    def close(self) -> None:
        self.path.unlink()


@atexit.register
def _stop_all() -> None:
    for daemon in list(_live):
        daemon.stop(graceful=False)
        daemon.kill_guests()


def _pool_xml(pool_type: str, uuid: str, target: str | None, source: dict[str, Any]) -> str:
    """Pool XML shaped like CloudStack's LibvirtStoragePoolDef (name == uuid)."""
    pool = ET.Element("pool", type=pool_type)
    ET.SubElement(pool, "name").text = uuid
    ET.SubElement(pool, "uuid").text = uuid
    if source:
        src = ET.SubElement(pool, "source")
        if "host" in source:
            host = ET.SubElement(src, "host", name=source["host"])
            if "port" in source:
                host.set("port", str(source["port"]))
        if "dir" in source:
            ET.SubElement(src, "dir", path=source["dir"])
        if "name" in source:
            ET.SubElement(src, "name").text = source["name"]
    if target is not None:
        ET.SubElement(ET.SubElement(pool, "target"), "path").text = target
    return ET.tostring(pool, encoding="unicode")


def define_dir_pool(
    conn: libvirt.virConnect, uuid: str, target_dir: str | os.PathLike[str], start: bool = True
) -> libvirt.virStoragePool:
    """Define (and by default build and start) a dir pool, as the agent does for local storage."""
    pool = conn.storagePoolDefineXML(_pool_xml("dir", uuid, os.fspath(target_dir), {}), 0)
    if start:
        pool.create(libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
    return pool


def define_netfs_pool(
    conn: libvirt.virConnect, uuid: str, host: str, export: str, target: str
) -> libvirt.virStoragePool:
    """Define an NFS pool without starting it: starting would mount the export."""
    xml = _pool_xml("netfs", uuid, target, {"host": host, "dir": export})
    return conn.storagePoolDefineXML(xml, 0)


def define_rbd_pool(
    conn: libvirt.virConnect, uuid: str, monitor: str, rbd_pool: str, port: int = 6789
) -> libvirt.virStoragePool:
    """Define a Ceph RBD pool; raises libvirtError when the rbd storage backend is absent."""
    xml = _pool_xml("rbd", uuid, None, {"host": monitor, "port": port, "name": rbd_pool})
    return conn.storagePoolDefineXML(xml, 0)


def _lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virStoragePool | None:
    try:
        return conn.storagePoolLookupByName(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise


def destroy_pool(conn: libvirt.virConnect, uuid: str) -> bool:
    """Stop a pool; False when it was already inactive or gone, which is not an error."""
    pool = _lookup(conn, uuid)
    if pool is None or not pool.isActive():
        return False
    pool.destroy()
    return True


def undefine_pool(conn: libvirt.virConnect, uuid: str) -> bool:
    """Stop and forget a pool; False when it was already gone."""
    destroy_pool(conn, uuid)
    pool = _lookup(conn, uuid)
    if pool is None:
        return False
    pool.undefine()
    return True


def pool_names(conn: libvirt.virConnect) -> set[str]:
    return {pool.name() for pool in conn.listAllStoragePools(0)}



@contextlib.contextmanager
def tracked_connection(daemon: PrivateLibvirtd) -> Iterator[libvirt.virConnect]:
    """A connection whose pools added meanwhile are removed on exit.

    Cleanup uses a fresh connection after making sure libvirtd runs, because the caller
    may have stopped it (closing the yielded connection) on purpose.
    """
    daemon.start()
    conn = libvirt.open(daemon.uri)
    before = pool_names(conn)
    try:
        yield conn
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
        daemon.start()
        cleanup = libvirt.open(daemon.uri)
        try:
            for name in pool_names(cleanup) - before:
                undefine_pool(cleanup, name)
        finally:
            cleanup.close()
