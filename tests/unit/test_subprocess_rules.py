"""Rules over guard/'s own source: the daemon runs as root on every host, so no command
runs through a shell, and none can hang it (every subprocess call has a timeout)."""

from __future__ import annotations

import ast

from tests.support.paths import REPO

GUARD = REPO / "guard"
CALLS = {"run", "call", "check_call", "check_output", "Popen", "getoutput", "getstatusoutput"}
FORBIDDEN = {("os", "system"), ("os", "popen"), ("subprocess", "Popen"), ("subprocess", "getoutput"),
             ("subprocess", "getstatusoutput")}
"""Popen has no timeout of its own, and the others run a shell."""


def violations(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        where = f"{name}:{node.lineno} {owner}.{node.func.attr}"
        if (owner, node.func.attr) in FORBIDDEN:
            found.append(f"{where}: not allowed in guard/, use subprocess.run(..., timeout=...)")
            continue
        if owner != "subprocess" or node.func.attr not in CALLS:
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        if "timeout" not in keywords:
            found.append(f"{where}: no timeout")
        shell = keywords.get("shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
            found.append(f"{where}: shell=")
    return found


def test_no_subprocess_in_guard_without_a_timeout_or_with_a_shell():
    found = [v for path in sorted(GUARD.rglob("*.py"))
             for v in violations(path.read_text(encoding="utf-8"), str(path.relative_to(GUARD.parent)))]
    assert found == []
    assert any("subprocess.run(" in p.read_text(encoding="utf-8") for p in GUARD.rglob("*.py")), \
        "the scan found no subprocess call at all: it is looking in the wrong place"


def test_the_rule_catches_what_it_is_for():
    bad = ("import os, subprocess\n"
           "subprocess.run(['systemctl', 'restart', 'x'])\n"
           "subprocess.check_output('ls', shell=True, timeout=5)\n"
           "subprocess.Popen(['sleep', '9'])\n"
           "os.system('reboot')\n")
    found = violations(bad, "bad.py")
    assert [f.split(" ", 1)[0] for f in found] == ["bad.py:2", "bad.py:3", "bad.py:4", "bad.py:5"]
    assert violations("import subprocess\nsubprocess.run(['true'], timeout=3, check=False)\n", "ok.py") == []
