"""A stand-in for the PowerFlex SDC's `drv_cfg`, because no real SDC (the scini kernel
module, registered with a running MDM) can run here.

`StandInDrvCfg(home)` lays out `home` as an SDC home, `<home>/bin/drv_cfg`, the path
ScaleIOUtil builds from agent.properties `powerflex.sdc.home.dir`. The script runs under
this interpreter and answers `--query_mdms` in the format ScaleIOUtil.java documents
("Retrieved 2 mdm(s)" then "MDM-ID <system id> SDC ID <sdc id> INSTALLATION ID <id> IPs
[0]-<ip> [1]-<ip>", 16 hex digits per id, as goscaleio's drv_cfg.go parses it too), or
fails, hangs, floods or prints garbage as `<home>/drv_cfg.json` says at each run, so a
test switches behaviour between probes. Each run appends its arguments and pid to
`<home>/drv_cfg.calls`: tests check which options the guard used (never --rescan, which
changes the SDC's state) and that a hung run was killed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

MDM_1 = ("3ef46cbf2aaf5d0f", "6b18479c00000003", "68ab55462cbb3ae4", ("10.0.0.11", "10.0.0.12"))
MDM_2 = ("2e706b2740ec200f", "301b852c00000003", "33f8662e7a5c1e6c", ("10.0.1.11",))

_SCRIPT = '''#!{python}
"""Stand-in drv_cfg written by tests/support/peers/drv_cfg.py."""
import json, os, sys, time
HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(HOME, "drv_cfg.calls"), "a") as calls:
    calls.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid()}}) + "\\n")
with open(os.path.join(HOME, "drv_cfg.json")) as control:
    mode = json.load(control)
if mode["kind"] == "hang":
    time.sleep(mode["seconds"])
    sys.exit(0)
if mode["kind"] == "fail":
    sys.stderr.write(mode["message"] + "\\n")
    sys.exit(mode["exit_code"])
if mode["kind"] == "flood":
    sys.stdout.write("MDM-ID " * (mode["bytes"] // 7))
    sys.exit(0)
if mode["kind"] == "garbage":
    sys.stdout.write(mode["text"])
    sys.exit(0)
if sys.argv[1:] != ["--query_mdms"]:
    sys.stderr.write("stand-in drv_cfg answers only --query_mdms\\n")
    sys.exit(2)
print("Retrieved %d mdm(s)" % len(mode["mdms"]))
for mdm_id, sdc_id, installation, ips in mode["mdms"]:
    listed = " ".join("[%d]-%s" % (i, ip) for i, ip in enumerate(ips))
    print("MDM-ID %s SDC ID %s INSTALLATION ID %s IPs %s" % (mdm_id, sdc_id, installation, listed))
'''


class Call(NamedTuple):
    argv: list[str]
    pid: int


class StandInDrvCfg:
    """<home>/bin/drv_cfg answering as the control file says; registered with MDM_1 at first."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "bin" / "drv_cfg"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(_SCRIPT.format(python=sys.executable), encoding="utf-8")
        self.path.chmod(0o755)
        self.registered(MDM_1)

    def _control(self, **mode: object) -> None:
        partial = self.home / "drv_cfg.json.new"
        partial.write_text(json.dumps(mode), encoding="utf-8")
        os.replace(partial, self.home / "drv_cfg.json")

    def registered(self, *mdms: tuple[str, str, str, tuple[str, ...]]) -> None:
        """Answer --query_mdms with these MDMs; none: "Retrieved 0 mdm(s)"."""
        self._control(kind="mdms", mdms=[list(m) for m in mdms])

    def failing(self, message: str, exit_code: int = 1) -> None:
        self._control(kind="fail", message=message, exit_code=exit_code)

    def hanging(self, seconds: float = 60.0) -> None:
        self._control(kind="hang", seconds=seconds)

    def flooding(self, size: int) -> None:
        self._control(kind="flood", bytes=size)

    def garbage(self, text: str) -> None:
        self._control(kind="garbage", text=text)

    def calls(self) -> list[Call]:
        try:
            lines = (self.home / "drv_cfg.calls").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [Call(**json.loads(line)) for line in lines]
