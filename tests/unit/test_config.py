"""Config errors: each refused with exit 3 and one line naming file, key and fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guard.config import Config, ConfigError, load_config, parse_config, parse_duration
from tests.support.paths import REPO
from tests.support.real_parts import real_part_unavailable


def run_check(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", "check", "--config", str(config), *extra],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def creds(tmp_path: Path, text: str = "[cloudstack]\nendpoint = http://127.0.0.1:9/client/api\n"
          "key = K\nsecret = S\n", mode: int = 0o600) -> Path:
    return write(tmp_path / "cloudstack.ini", text, mode)


CASES = [
    ("unknown key", 'mode = "observe"\n[agent]\nlogg = "/x"\n', "key 'agent.logg' is unknown",
     "use one of: log, properties, storpool_log, unit"),
    ("unknown section", "[agnet]\n", "key 'agnet' is unknown", "use one of"),
    ("wrong type", "[remediation]\nmax_restarts = \"two\"\n", "key 'remediation.max_restarts' must be a "
     "whole number", "write max_restarts = 2"),
    ("bool for int", "[remediation]\nmax_restarts = true\n", "remediation.max_restarts", "whole number"),
    ("bad duration", '[probes]\ntimeout = "3 seconds"\n', "key 'probes.timeout' is not a duration",
     '"30s"'),
    ("number for duration", "[probes]\ntimeout = 3\n", "must be a duration string", '"30s"'),
    ("bad mode", 'mode = "fix-it"\n', "key 'mode' is 'fix-it'", "observe, remediate"),
    ("relative path", '[agent]\nlog = "agent.log"\n', "key 'agent.log' is a relative path",
     "absolute path"),
    ("invalid toml", "mode = \n", "invalid TOML", "fix the syntax"),
    ("section not table", 'agent = "x"\n', "key 'agent' must be a table", "[agent]"),
]


@pytest.mark.parametrize("name,text,problem,fix", CASES, ids=[c[0] for c in CASES])
def test_config_error_exit_3_with_one_line(tmp_path, name, text, problem, fix):
    config = write(tmp_path / "guard.toml", text)
    result = run_check(config)
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("CLOUDSTACK-GUARD UNKNOWN - config: ")
    assert str(config) in lines[0] and problem in lines[0] and fix in lines[0]
    assert result.stderr == ""


def test_missing_explicit_config_file(tmp_path):
    result = run_check(tmp_path / "nope.toml")
    assert result.returncode == 3
    assert "nope.toml: config file not found" in result.stdout


def test_json_config_error(tmp_path):
    config = write(tmp_path / "guard.toml", "[probes]\ninterval = \"often\"\n")
    result = run_check(config, "--json")
    assert result.returncode == 3
    import json
    doc = json.loads(result.stdout)
    assert doc["status"] == "UNKNOWN" and "probes.interval" in doc["error"]


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_writable_config_refused(tmp_path, mode):
    config = write(tmp_path / "guard.toml", 'mode = "observe"\n', mode)
    result = run_check(config)
    assert result.returncode == 3
    assert "group/world-writable" in result.stdout and f"chmod go-w {config}" in result.stdout


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_credentials_readable_by_others_refused(tmp_path, mode):
    cred = creds(tmp_path, mode=mode)
    config = write(tmp_path / "guard.toml", f'[management]\ncredentials = "{cred}"\n')
    result = run_check(config)
    assert result.returncode == 3
    assert f"{cred}: credentials file is group/world-accessible" in result.stdout
    assert f"chmod 600 {cred}" in result.stdout


def test_credentials_problems(tmp_path):
    config = tmp_path / "guard.toml"
    cases = {
        "[other]\nx=1\n": "section [cloudstack] missing",
        "[cloudstack]\nendpoint = http://h/client/api\nkey = K\n": "key 'cloudstack.secret' is missing",
        "[cloudstack]\nendpoint = h/client/api\nkey = K\nsecret = S\n": "not an http(s) URL",
        "not an ini": "cannot parse credentials",
    }
    for text, expected in cases.items():
        cred = creds(tmp_path, text)
        write(config, f'[management]\ncredentials = "{cred}"\n')
        result = run_check(config)
        assert result.returncode == 3, text
        assert expected in result.stdout and str(cred) in result.stdout, result.stdout


def test_missing_credentials_file(tmp_path):
    config = write(tmp_path / "guard.toml", '[management]\ncredentials = "/nonexistent/cs.ini"\n')
    result = run_check(config)
    assert result.returncode == 3
    assert "/nonexistent/cs.ini: credentials file not found" in result.stdout


def test_secrets_never_printed(tmp_path):
    cred = creds(tmp_path, "[cloudstack]\nendpoint = http://127.0.0.1:9/client/api\n"
                 "key = APIKEY-abc123\nsecret = SECRET-xyz789\n")
    config = parse_config(f'[management]\ncredentials = "{cred}"\n', "g.toml")
    shown = repr(config)
    assert "APIKEY-abc123" not in shown and "SECRET-xyz789" not in shown


def test_cert_without_key(tmp_path):
    cert = write(tmp_path / "c.pem", "x")
    with pytest.raises(ConfigError, match="'linstor.cert' and 'linstor.key' go together"):
        parse_config(f'[linstor]\ncert = "{cert}"\n', "g.toml")


def test_shipped_default_config_is_the_defaults():
    shipped = parse_config((REPO / "etc/cloudstack-guard/guard.toml").read_text(), "guard.toml")
    assert shipped == Config(path="guard.toml")


def test_default_path_absent_gives_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr("guard.config.DEFAULT_PATH", str(tmp_path / "absent.toml"))
    assert load_config(None).mode == "observe"


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400),
                                          ("250ms", 0.25), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0s", "s", "10", "10x", "-5s", "1h 30m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("key", ["config", "credentials", "powerflex"])
def test_files_owned_by_another_user_are_refused(tmp_path, key):
    """Whoever owns a file can rewrite it whatever its mode says: the daemon runs as root."""
    if os.geteuid() != 0:
        real_part_unavailable("chown to another user", "needs root (CI runs as root)")
    cred = creds(tmp_path)
    powerflex = write(tmp_path / "powerflex.ini", "[powerflex]\nusername = u\npassword = p\n", 0o600)
    config = write(tmp_path / "guard.toml", f'[management]\ncredentials = "{cred}"\n'
                   f'[powerflex]\ncredentials = "{powerflex}"\n')
    target = {"config": config, "credentials": cred, "powerflex": powerflex}[key]
    os.chown(target, 65534, 65534)
    result = run_check(config)
    assert result.returncode == 3, result.stdout
    assert f"{target}: " in result.stdout and "owned by uid 65534" in result.stdout
    assert f"chown root {target}" in result.stdout
