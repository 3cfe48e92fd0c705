"""cloudstack-guard(8), generated from the argparse definition, renders cleanly and names
every command and option the program takes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guard import cli
from guard.cli import build_parser
from guard.kinds import FINDING_KINDS
from tests.support.paths import REPO


def render(tmp_path: Path) -> str:
    page = tmp_path / "cloudstack-guard.8"
    page.write_text(subprocess.run([sys.executable, str(REPO / "packaging" / "manpage.py")],
                                   capture_output=True, text=True, timeout=60, check=True,
                                   env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}).stdout)
    if shutil.which("groff") is None:
        pytest.skip("groff not installed: cannot render the man page")
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(page)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "GROFF_NO_SGR": "1"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return re.sub(".\x08", "", result.stdout)


def test_every_command_and_option_is_in_the_manual(tmp_path):
    text = render(tmp_path)
    assert "2023-11-14" in text, "the date must come from SOURCE_DATE_EPOCH"
    for action in build_parser()._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert option in text
        for name, sub in (getattr(action, "choices", None) or {}).items():
            assert f"cloudstack-guard {name}" in text
            for sub_action in sub._actions:
                for option in sub_action.option_strings:
                    if option not in ("-h", "--help"):
                        assert option in text, (name, option)
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "FINDINGS", "EXIT STATUS", "FILES"):
        assert section in text
    for kind in FINDING_KINDS:
        assert kind in text, kind


def test_every_kind_of_finding_the_code_can_emit_is_in_the_manual():
    """The table the manual is written from holds exactly the kinds guard/ emits."""
    emitted = set()
    for path in (REPO / "guard").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        emitted |= set(re.findall(r'Finding\(\s*(?:kind=)?"([a-z-]+)"', text))
        emitted |= set(re.findall(r'\(\("(stop-failure)", ', text))
    assert emitted == set(FINDING_KINDS), emitted ^ set(FINDING_KINDS)


def test_the_probe_help_names_every_scheme_a_backend_takes():
    from guard.probing import supported_schemes

    assert supported_schemes() == cli.PROBE_SCHEMES


def test_the_cli_loads_no_command_s_heavy_stack_before_it_is_asked_for():
    """`analyze` on gigabytes and `check` every minute pay only for what they use: the
    parser alone loads no asyncio (probes), psutil and http.client (check's sources),
    libvirt or structlog (the daemon)."""
    heavy = ("asyncio", "psutil", "libvirt", "structlog", "http.client", "tomllib")
    code = ("import sys, guard.cli; guard.cli.build_parser(); "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True, cwd=REPO).stdout.strip()
    assert loaded == ""


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path):
    """`cloudstack-guard analyze agent.log | head`: once the reader has gone, the command
    ends with 141 (as a process killed by SIGPIPE reports itself) and no traceback."""
    log = tmp_path / "agent.log"
    log.write_text("".join(
        f"2026-01-0{1 + i % 9} 10:00:00,000 INFO  [cloud.agent.Agent] (main:null) (logid:{i:08x}) "
        "Agent started\n" for i in range(200)))
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run([sys.executable, "-m", "guard.cli", "analyze", "--json", str(log)],
                              stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO)
    finally:
        os.close(writer)
    assert done.stderr == ""
    assert done.returncode == 141


def test_a_file_name_in_another_encoding_is_shown_escaped_not_a_crash(tmp_path):
    """os.fsdecode keeps an undecodable byte as a lone surrogate; a strict stdout
    (PYTHONIOENCODING=utf-8) could not print it, and the plugin would answer with a
    traceback instead of its one line."""
    odd = os.fsdecode(bytes(tmp_path) + b"/agent.log.\xff")
    os.mkdir(odd)
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    done = subprocess.run([sys.executable, "-m", "guard.cli", "analyze", odd], capture_output=True,
                          timeout=60, cwd=REPO, env=env)
    assert done.returncode == 3 and done.stderr == b""
    assert done.stdout.decode("utf-8").startswith("CLOUDSTACK-GUARD UNKNOWN - ")
    assert b"agent.log.\\udcff: cannot read (Is a directory)" in done.stdout


def test_a_broken_pipe_that_is_not_stdout_s_is_an_internal_error(monkeypatch, capsys):
    """A probe's socket, say: the plugin still answers UNKNOWN with its one line."""
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_check", broken)
    assert cli.main(["check", "--json"]) == 3
    out = capsys.readouterr()
    assert '"status": "UNKNOWN"' in out.out and "internal error: BrokenPipeError" in out.out
    assert "Traceback" in out.err
