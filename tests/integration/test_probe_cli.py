"""`cloudstack-guard probe TARGET...` as an operator runs it: several targets at once,
one entry per target in argument order, one deadline for all whatever the peers do, and
exit codes a monitoring system can act on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guard import store
from guard.history import History, PoolRecord
from tests.support.emulators.linstor import LinstorEmulator
from tests.support.paths import REPO
from tests.support.peers.decoys import free_port, hanging_listener, web_server

HOST = "127.0.0.1"


@pytest.fixture
def guard_toml(tmp_path: Path) -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n\n[probes]\ntimeout = "5s"\n\n'
                    f'[linstor]\nauth_json = "{tmp_path / "none.json"}"\n')
    path.chmod(0o644)
    return path


def probe(guard_toml: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "guard.cli", "probe", *args, "--config", str(guard_toml)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc, time.monotonic() - started


def test_every_target_gets_its_entry_in_argument_order(guard_toml: Path) -> None:
    refused = f"http://{HOST}:{free_port()}"
    with LinstorEmulator(nodes=[socket.gethostname()]) as emu, web_server() as web:
        wrong = f"http://{HOST}:{web}"
        proc, _ = probe(guard_toml, refused, emu.url, wrong, emu.url, "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert [p["target"] for p in doc["probes"]] == [refused, emu.url, wrong, emu.url]
    assert [p["status"] for p in doc["probes"]] == ["refused", "healthy", "http-error", "healthy"]
    assert all(p["backend"] == "linstor" and p["source"] == "command line" for p in doc["probes"])
    assert doc["status"] == "CRITICAL" and len(doc["findings"]) == 2
    assert refused.split("//")[1] in doc["findings"][0]["evidence"][0]["fact"]


def test_one_deadline_for_all_however_many_hang(guard_toml: Path) -> None:
    """Ten peers that accept and never answer cost one --timeout, not ten: the command
    is back within --timeout + 0.5 s of a run whose only target refuses at once."""
    _, baseline = probe(guard_toml, f"http://{HOST}:{free_port()}", "--timeout", "1")
    with LinstorEmulator(nodes=[socket.gethostname()]) as emu, hanging_listener() as hung:
        hanging = [f"http://{HOST}:{hung}/{n}" for n in range(10)]
        proc, elapsed = probe(guard_toml, emu.url, *hanging, "--timeout", "1", "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2
    assert [p["status"] for p in doc["probes"]] == ["healthy"] + ["timeout"] * 10
    assert elapsed - baseline < 1.0 + 0.5, (elapsed, baseline)


def test_an_unusable_target_is_named_in_one_line_and_nothing_is_probed(guard_toml: Path) -> None:
    with LinstorEmulator(nodes=[socket.gethostname()]) as emu:
        for bad in ("sheepdog://10.0.0.9/x", "http://admin:hunter2@ctl:notaport", "no/such thing"):
            proc, _ = probe(guard_toml, emu.url, bad)
            assert proc.returncode == 3, (bad, proc.stdout)
            lines = proc.stdout.splitlines()
            assert len(lines) == 1 and lines[0].startswith("CLOUDSTACK-GUARD UNKNOWN - "), lines
            assert "hunter2" not in proc.stdout and "admin" not in proc.stdout
        assert [r for r in emu.requests if r.path.startswith("/v1/")] == []
    proc, _ = probe(guard_toml, "http://ctl:3370", "--timeout", "0")
    assert proc.returncode == 3 and "--timeout" in proc.stdout


def test_a_pool_the_guard_has_seen_is_probed_where_the_history_says(guard_toml: Path, tmp_path: Path) -> None:
    with LinstorEmulator(nodes=[socket.gethostname()]) as emu:
        uuid = "5e4a1c2b-3d4e-4f50-8a6b-7c8d9e0f1a2b"
        store.save(str(tmp_path / "state"), History(pools=(PoolRecord(uuid, "Linstor", url=emu.url),)))
        proc, _ = probe(guard_toml, uuid.upper(), "--json")
    assert proc.returncode == 0, proc.stdout
    [entry] = json.loads(proc.stdout)["probes"]
    assert entry["target"] == uuid.upper() and entry["endpoint"] == emu.url
    assert entry["source"] == "history" and entry["status"] == "healthy"


def test_text_mode_says_how_many_are_not_healthy_then_one_line_each(guard_toml: Path) -> None:
    with LinstorEmulator(nodes=[socket.gethostname()]) as emu:
        refused = f"http://{HOST}:{free_port()}"
        proc, _ = probe(guard_toml, emu.url, refused)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 2
    assert lines[0].startswith("CLOUDSTACK-GUARD CRITICAL - 1 of 2 not healthy; ") and refused in lines[0]
    assert len(lines) == 3 and "healthy" in lines[1] and "refused" in lines[2]


def test_secrets_in_any_backends_url_never_reach_the_output(guard_toml: Path) -> None:
    """RBD keys (base64, may hold '/'), PowerFlex passwords, StorPool tokens, userinfo on
    any scheme: probed, refused or unusable, the output never carries them."""
    port = free_port()
    secrets = ["AQDk3/x+Zy==", "pf-Pa55", "sp-7781", "nfs-pw"]
    targets = [f"rbd://admin:{secrets[0]}@{HOST}:{port}/pool",
               f"powerflex://admin:{secrets[1]}@{HOST}:{port}/p1",
               f"SP_API_HTTP={HOST}:{port};SP_AUTH_TOKEN={secrets[2]};SP_TEMPLATE=ssd",
               f"nfs://u:{secrets[3]}@{HOST}:{port}/export"]
    for args in ([*targets, "--json"], targets, [targets[0].replace(f":{port}/", ":notaport/")],
                 [targets[2].replace(f":{port};", ":x;")]):
        proc, _ = probe(guard_toml, *args, "--timeout", "1")
        assert proc.returncode in (2, 3), proc.stdout
        for secret in secrets:
            assert secret not in proc.stdout and secret not in proc.stderr, (secret, proc.stdout)
