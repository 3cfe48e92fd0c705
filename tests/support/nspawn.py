"""A real systemd for tests: boot the host's own /usr under systemd-nspawn.

Outside (the test process):

    result = run_scenario(
        SCENARIO,                                   # Python source or a Path, runs inside
        units={"svc.service": UNIT_TEXT},           # bound at /etc/systemd/system/<name>
        start=["svc.service"],                      # pulled in at boot (systemd.wants=)
        out_dir=tmp_path / "out",                   # the container's /out
        journal_units=["svc.service"],              # copied to out/journal/<unit>.json
    )
    result.check()                                  # raises with the console tail
    assert result.result("scenario")["ok"]

`boot()` is the lower layer: it takes any driver unit (a oneshot that runs the scenario,
writes to /out and powers off, or exits, see `driver_unit()`) and returns a `BootResult`.

Inside the container (the scenario, or anything run with /work/main bound), the same module
gives small helpers that only use the standard library: `systemctl()`, `unit_property()`,
`main_pid()`, `wait_for_main_pid_change()`, `wait_for_property()`, `journal()`,
`wait_for_journal()`, `write_result()`.

How the container is made (../shared/DESIGN.md from the repo root, "Testing with real parts"):
`systemd-nspawn -D / --volatile=yes` gives a tmpfs root with the host's /usr read-only and
an empty /etc and /root; `--private-network` gives the container its own loopback only, so
servers the scenario needs run inside as units on 127.0.0.1. `--console=read-only`
(not `pipe`: in pipe mode there is no /dev/console and systemd's own output is lost) puts
systemd's status lines and the driver's output on nspawn's stdout. A `disable *` preset
stops the first boot from enabling every installed unit. Files are staged in a directory
next to out_dir and bind-mounted read-only one by one; the repository, the venv and
anything else the units need must be bound with `binds_ro` / `binds_rw`.

The checkout is bound at a fixed path inside, CHECKOUT (and a venv outside it at
VENV_INSIDE), never at its host path: a clone under /root, /home or /tmp would be hidden
from any unit with ProtectHome= or PrivateTmp=, such as the guard's own. `inside()` maps a
host path under either to where a unit sees it; `PYTHON` is this interpreter, inside.

Outside helpers that need no container: `systemd_analyze_verify()` and
`systemd_analyze_security()` (both work here without a running systemd).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from tests.support.paths import REPO

CHECKOUT = Path("/opt/cloudstack-guard")  # REPO, as seen inside the container
VENV_INSIDE = Path("/opt/cloudstack-guard-venv")  # a venv outside REPO, as seen inside
NSPAWN = "systemd-nspawn"
OUT = Path("/out")  # out_dir, as seen inside the container
STAGE_IN_CONTAINER = "/harness"  # where generated scripts (driver, scenario) are bound
PRESET_PATH = "/etc/systemd/system-preset/00-test.preset"
PRESET = "disable *\n"
MANAGER_CONF_PATH = "/etc/systemd/system.conf.d/00-test.conf"
# A unit stuck in stop must not hold the poweroff for the default 90 s.
MANAGER_CONF = "[Manager]\nDefaultTimeoutStopSec=10s\n"
TOKEN_VAR = "GUARD_NSPAWN_TOKEN"

Content = Union[str, bytes, Path]
"""File content; a Path is bind-mounted as it is (no copy), str/bytes are staged."""
Bind = Union[str, Path, tuple[Union[str, Path], str]]
"""A host path bound at the same path inside, or (host_path, container_path)."""

_counter = itertools.count(1)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --------------------------------------------------------------------------- outside


def unavailable_reason() -> Optional[str]:
    """Why this machine cannot boot a container, or None. Does not try a boot."""
    if os.geteuid() != 0:
        return f"systemd-nspawn needs root (running as uid {os.geteuid()})"
    if shutil.which(NSPAWN) is None:
        return "systemd-nspawn is not installed (Debian package systemd-container)"
    if not Path("/usr/lib/systemd/systemd").exists() and not Path("/lib/systemd/systemd").exists():
        return "systemd is not installed"
    return None


@dataclass
class BootResult:
    returncode: Optional[int]
    """nspawn's exit status: the driver's exit status when the driver unit uses
    SuccessAction=/FailureAction=exit (as `driver_unit()` writes it), 0 after a poweroff."""
    console: str
    """systemd's console (status lines, driver output) and nspawn's own messages."""
    out_dir: Path
    duration: float
    timed_out: bool = False
    argv: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.console.splitlines()[-lines:])

    def check(self) -> BootResult:
        """Raise AssertionError with the console tail unless the driver succeeded."""
        if not self.ok:
            why = f"timed out after {self.duration:.1f} s" if self.timed_out else f"rc={self.returncode}"
            raise AssertionError(f"nspawn boot failed ({why}); console tail:\n{self.tail()}")
        return self

    def result(self, name: str) -> Any:
        """The JSON document the scenario wrote with write_result(name, ...)."""
        path = self.out_dir / f"{name}.json"
        if not path.exists():
            raise AssertionError(f"{path} was not written; console tail:\n{self.tail()}")
        return json.loads(path.read_text())

    def journal(self, unit: str) -> list[dict[str, Any]]:
        """Journal entries of a unit copied out by the run_scenario driver (journal_units)."""
        return _parse_journal_json((self.out_dir / "journal" / f"{unit}.json").read_text())


def _bind_arg(option: str, bind: Bind) -> str:
    if isinstance(bind, tuple):
        host, inside = Path(bind[0]), str(bind[1])
    else:
        host = Path(bind)
        inside = str(host)
    host = host.resolve()
    if not host.exists():
        raise FileNotFoundError(f"bind source does not exist: {host}")
    if not inside.startswith("/"):
        raise ValueError(f"container path must be absolute: {inside}")
    return f"{option}={_escape(str(host))}:{_escape(inside)}"


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:")


def _stage(stage_dir: Path, container_path: str, content: Content) -> Path:
    if isinstance(content, Path):
        return content
    host = stage_dir / container_path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    host.write_bytes(data)
    # Scripts executable; unit files not (systemd warns about executable unit files).
    host.chmod(0o755 if data.startswith(b"#!") else 0o644)
    return host


def boot(
    units: Mapping[str, Content],
    driver: str,
    *,
    out_dir: Path,
    start: Iterable[str] = (),
    binds_ro: Iterable[Bind] = (),
    binds_rw: Iterable[Bind] = (),
    extra_files: Optional[Mapping[str, Content]] = None,
    timeout: float = 60.0,
    kernel_args: Sequence[str] = (),
    machine: Optional[str] = None,
) -> BootResult:
    """Boot systemd in a throwaway container and wait until it ends or `timeout` passes.

    units: unit file name -> content, bound at /etc/systemd/system/<name>; a name with a
        slash is a drop-in, e.g. "x.service.d/10-test.conf".
    driver: the unit started at boot that runs the test and ends the container, by
        `systemctl poweroff` or with SuccessAction=/FailureAction=exit (see driver_unit()).
    start: other units started at boot (systemd.wants= on the command line; nothing is
        enabled through [Install], the preset disables everything).
    binds_ro / binds_rw: host paths (same path inside) or (host, container) pairs.
    extra_files: container path -> content, bound read-only (scripts starting with #!
        are made executable).
    out_dir: created if missing, bound read-write at /out.
    On timeout the container's init is killed (which ends every process in it) along with
    nspawn's process group; the result has timed_out=True and the console so far.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_dir = out_dir.parent / f"{out_dir.name}.stage"
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir()
    if driver not in units:
        raise ValueError(f"driver {driver!r} is not one of the units {sorted(units)}")

    files: dict[str, Content] = {PRESET_PATH: PRESET, MANAGER_CONF_PATH: MANAGER_CONF}
    for name, content in units.items():
        files[f"/etc/systemd/system/{name}"] = content
    files.update(extra_files or {})

    machine = machine or f"gt{os.getpid()}-{next(_counter)}"
    token = uuid.uuid4().hex
    argv = [
        NSPAWN,
        "--quiet",
        "--directory=/",
        "--volatile=yes",
        "--register=no",
        "--private-network",
        "--keep-unit",
        "--console=read-only",
        f"--machine={machine}",
        f"--setenv={TOKEN_VAR}={token}",
        _bind_arg("--bind", (out_dir, str(OUT))),
    ]
    for container_path, content in files.items():
        argv.append(_bind_arg("--bind-ro", (_stage(stage_dir, container_path, content), container_path)))
    argv += [_bind_arg("--bind-ro", b) for b in binds_ro]
    argv += [_bind_arg("--bind", b) for b in binds_rw]
    argv += ["--boot", "systemd.firstboot=off", "systemd.status_unit_format=name"]
    argv += [f"systemd.wants={u}" for u in [*start, driver]]
    argv += list(kernel_args)

    # TERM=dumb: no colours on the console; COLUMNS: no ellipsized unit names.
    env = {**os.environ, "TERM": "dumb", "COLUMNS": "200", "SYSTEMD_COLORS": "0"}
    began = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc, token)
        raw, _ = proc.communicate()
        # nspawn killed with SIGKILL leaves its (empty) propagation directory behind.
        with contextlib.suppress(OSError):
            Path("/run/systemd/nspawn/propagate", machine).rmdir()
    except BaseException:
        _kill(proc, token)
        proc.communicate()
        raise
    duration = time.monotonic() - began
    console = _ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "")
    return BootResult(
        returncode=None if timed_out else proc.returncode,
        console=console,
        out_dir=out_dir,
        duration=duration,
        timed_out=timed_out,
        argv=argv,
    )


def _container_inits(token: str) -> list[int]:
    """PIDs (host view) of the container's init: PID 1 of its namespace, with our token."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if len(nspid) > 1 and nspid[-1] == "1":
            found.append(int(entry.name))
    return found


def _kill(proc: subprocess.Popen, token: str) -> None:
    """Kill the container, then nspawn. Killing nspawn alone leaves the container's
    systemd running, reparented (it is not in nspawn's process group)."""
    for pid in _container_inits(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # PID 1 of a namespace: the kernel kills the rest
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def driver_unit(exec_path: str, *, after: Iterable[str] = (), description: str = "nspawn test driver") -> str:
    """A oneshot driver unit: runs exec_path once after `after` are up, shows its output on
    the console, then ends the container with the script's exit status as nspawn's."""
    after_line = f"After={' '.join(after)}\n" if after else ""
    return (
        "[Unit]\n"
        f"Description={description}\n"
        f"{after_line}"
        "SuccessAction=exit\n"
        "FailureAction=exit\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={exec_path}\n"
        "TimeoutStartSec=infinity\n"
        "StandardOutput=journal+console\n"
        "StandardError=journal+console\n"
    )


def _venv() -> Optional[Path]:
    """This interpreter's venv when it is one (sys.prefix differs from the base)."""
    prefix = Path(sys.prefix).resolve()
    return prefix if prefix != Path(sys.base_prefix).resolve() else None


def _mapping() -> list[tuple[Path, Path]]:
    """(host prefix, container prefix) pairs that `inside()` and python_binds() share."""
    pairs = [(REPO, CHECKOUT)]
    venv = _venv()
    if venv is not None and REPO not in venv.parents:
        pairs.append((venv, VENV_INSIDE))
    return pairs


def inside(path: Union[str, Path]) -> str:
    """Where a host path under the checkout or the venv is seen inside the container; any
    other path is bound (if at all) at the same path. The last component is not resolved:
    the venv's bin/python is a symlink that must keep its name."""
    path = Path(path).absolute()
    path = path.parent.resolve() / path.name
    for host, container in _mapping():
        if path == host or host in path.parents:
            return str(container / path.relative_to(host))
    return str(path)


PYTHON = inside(sys.executable)
"""sys.executable inside the container: the venv's python, found by its path (not
resolved), so the venv's site-packages come along."""


def python_binds() -> list[Bind]:
    """What must be bound read-only for PYTHON and this repository to work inside: the
    checkout and the venv at their fixed places, and the base interpreter at its own
    path when it lives outside /usr (a pyenv build cannot be moved)."""
    binds: list[Bind] = [(host, str(container)) for host, container in _mapping()]
    base = Path(sys.base_prefix).resolve()
    if not (base == Path("/usr") or Path("/usr") in base.parents):
        binds.append(base)
    return binds


def python_driver(
    scenario: Union[str, Path],
    *,
    journal_units: Iterable[str] = (),
    after: Iterable[str] = (),
    env: Optional[Mapping[str, str]] = None,
    python: str = PYTHON,
    name: str = "test-driver.service",
) -> tuple[dict[str, Content], dict[str, Content]]:
    """(units, extra_files) for a driver that runs a Python scenario (source text, or a file:
    run in place when inside the checkout, else copied) inside the container with this
    interpreter, cwd and PYTHONPATH at the checkout, then copies
    `journalctl -u UNIT -o json` of each journal unit to /out/journal/UNIT.json and the
    whole boot's journal to /out/journal.txt. Its exit status is the scenario's."""
    script_path = f"{STAGE_IN_CONTAINER}/scenario.py"
    files: dict[str, Content] = {}
    if isinstance(scenario, Path) and REPO in scenario.resolve().parents:
        script_path = inside(scenario.resolve())  # run in place: the checkout is bound
    else:
        files[script_path] = scenario.read_text() if isinstance(scenario, Path) else scenario
    driver_path = f"{STAGE_IN_CONTAINER}/driver.sh"
    exports = {"PYTHONPATH": str(CHECKOUT), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    lines = ["#!/bin/sh", f"cd {shlex.quote(str(CHECKOUT))}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    lines += [
        f"{shlex.quote(python)} -u {shlex.quote(script_path)}",
        "rc=$?",
        f'echo "$rc" >{OUT}/scenario.rc',
        "journalctl --sync 2>/dev/null",
        f"mkdir -p {OUT}/journal",
    ]
    for unit in journal_units:
        lines.append(
            f"journalctl -u {shlex.quote(unit)} -o json --no-pager >{OUT}/journal/{shlex.quote(unit)}.json"
        )
    lines += [f"journalctl -b -o short-precise --no-pager >{OUT}/journal.txt", "exit $rc", ""]
    units: dict[str, Content] = {name: driver_unit(driver_path, after=after, description="python scenario")}
    files[driver_path] = "\n".join(lines)
    return units, files


def run_scenario(
    scenario: Union[str, Path],
    *,
    out_dir: Path,
    units: Optional[Mapping[str, Content]] = None,
    start: Iterable[str] = (),
    journal_units: Iterable[str] = (),
    binds_ro: Iterable[Bind] = (),
    binds_rw: Iterable[Bind] = (),
    extra_files: Optional[Mapping[str, Content]] = None,
    env: Optional[Mapping[str, str]] = None,
    timeout: float = 60.0,
) -> BootResult:
    """Boot with `units`, start `start` at boot, and run the Python `scenario` after them
    (see python_driver()). The checkout and the venv are bound read-only."""
    start = list(start)
    driver_units, driver_files = python_driver(scenario, journal_units=journal_units, after=start, env=env)
    (driver_name,) = driver_units
    return boot(
        {**(units or {}), **driver_units},
        driver_name,
        out_dir=out_dir,
        start=start,
        binds_ro=[*python_binds(), *binds_ro],
        binds_rw=binds_rw,
        extra_files={**(extra_files or {}), **driver_files},
        timeout=timeout,
    )


def systemd_analyze_verify(
    unit_path: Union[str, Path], *, strict: bool = True, man: bool = False
) -> tuple[bool, str]:
    """`systemd-analyze verify` on a unit file (works here with no systemd running).
    ok is the exit status 0 and, when strict, no output at all: verify exits 0 on
    warnings such as an unknown key. man=False skips checking Documentation=man: pages.
    ExecStart= binaries are checked on the host's filesystem and dependencies
    (Requires=/Wants=) must exist among the host's units. (--root=DIR does not help for a
    lone file: it then wants a whole unit tree, sysinit.target included, under DIR.)"""
    returncode, output = _analyze("verify", f"--man={'yes' if man else 'no'}", unit_path)
    ok = returncode == 0 and (not strict or not output)
    return ok, output


def _analyze(*args: Union[str, Path]) -> tuple[int, str]:
    proc = subprocess.run(
        ["systemd-analyze", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


_EXPOSURE = re.compile(r"Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)")


def systemd_analyze_security(unit_path: Union[str, Path]) -> tuple[float, str]:
    """`systemd-analyze security --offline=yes` on a unit file (no systemd running needed):
    (overall exposure, 0.0 safest .. 10.0, and the full table)."""
    returncode, output = _analyze("security", "--offline=yes", "--no-pager", unit_path)
    match = _EXPOSURE.search(output)
    if match is None:
        raise RuntimeError(f"systemd-analyze security gave no score (rc={returncode}):\n{output}")
    return float(match.group(1)), output


# ---------------------------------------------------------------------------- inside


def in_container() -> bool:
    return os.environ.get("container") == "systemd-nspawn"  # noqa: SIM112 or Path("/run/host/container-manager").exists()


def systemctl(*args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `systemctl ARGS...` (argument list, hard timeout)."""
    proc = subprocess.run(["systemctl", "--no-pager", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"systemctl {' '.join(args)} failed rc={proc.returncode}: {proc.stderr.strip()}")
    return proc


def unit_properties(unit: str, *props: str) -> dict[str, str]:
    out = systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {p: values.get(p, "") for p in props}


def unit_property(unit: str, prop: str) -> str:
    """`systemctl show -p PROP --value UNIT`."""
    return systemctl("show", unit, f"--property={prop}", "--value").stdout.strip()


def main_pid(unit: str) -> int:
    return int(unit_property(unit, "MainPID") or 0)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll until predicate() is truthy and return its value; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def wait_for_property(unit: str, prop: str, value: str, timeout: float = 10.0) -> str:
    return wait_for(
        lambda: unit_property(unit, prop) == value and value, timeout, what=f"{unit} {prop}={value}"
    )


def wait_for_main_pid_change(unit: str, old: int, timeout: float = 10.0, active: bool = True) -> int:
    """Wait until the unit has a MainPID other than `old` (and 0), and, when `active`,
    is ActiveState=active again; return the new MainPID."""

    def changed() -> int:
        props = unit_properties(unit, "MainPID", "ActiveState")
        pid = int(props["MainPID"] or 0)
        if pid in (0, old) or (active and props["ActiveState"] != "active"):
            return 0
        return pid

    return wait_for(changed, timeout, what=f"a new MainPID of {unit} (old {old})")


def _parse_journal_json(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        for key, value in entry.items():
            if isinstance(value, list) and all(isinstance(b, int) for b in value):
                entry[key] = bytes(value).decode("utf-8", "replace")  # non-UTF-8 fields
        entries.append(entry)
    return entries


def journal(unit: str, *extra: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """`journalctl -u UNIT -o json --no-pager` as a list of entries (MESSAGE as str)."""
    proc = subprocess.run(
        ["journalctl", "-u", unit, "-o", "json", "--no-pager", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"journalctl -u {unit} failed rc={proc.returncode}: {proc.stderr.strip()}")
    return _parse_journal_json(proc.stdout)


def messages(unit: str) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in journal(unit)]


def wait_for_journal(unit: str, text: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for a journal entry of `unit` whose MESSAGE contains `text`; return it."""

    def find() -> Optional[dict[str, Any]]:
        return next((e for e in journal(unit) if text in str(e.get("MESSAGE", ""))), None)

    return wait_for(find, timeout, interval=0.1, what=f"{text!r} in the journal of {unit}")


def write_result(name: str, data: Any) -> Path:
    """Write /out/<name>.json (read outside with BootResult.result(name))."""
    path = OUT / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path
