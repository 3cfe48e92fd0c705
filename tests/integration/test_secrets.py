"""Secrets never reach what the guard writes (issue: reliability, security as tests): the
management API key and secret, the LINSTOR token, StorPool's token and PowerFlex's
password are in this host's config, on pools that answer and pools that refuse, and none
of them appears in `check --json`, `analyze`, the daemon's log or its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

from tests.support.daemon import RunningDaemon
from tests.support.host import API_KEY, API_SECRET
from tests.support.paths import REPO
from tests.support.peers.decoys import free_port

LINSTOR_TOKEN = "lin-token-93be41"
STORPOOL_TOKEN = "sp-token-5521907"
POWERFLEX_PASSWORD = "pf-pass-c0ffee"


def configure_secrets(host, tmp_path) -> list[str]:
    (host.root / "auth.json").write_text(json.dumps({"token": LINSTOR_TOKEN}))
    conf = tmp_path / "storpool.conf"
    conf.write_text(f"SP_API_HTTP_HOST=127.0.0.1\nSP_API_HTTP_PORT={free_port()}\n"
                    f"SP_AUTH_TOKEN={STORPOOL_TOKEN}\nSP_OURID=3\n")
    pf = tmp_path / "powerflex.ini"
    pf.write_text(f"[powerflex]\nusername = admin\npassword = {POWERFLEX_PASSWORD}\n")
    pf.chmod(0o600)
    textfile = tmp_path / "metrics" / "cloudstack_guard.prom"
    textfile.parent.mkdir()
    host.write_config(host.config.read_text() + f'[storpool]\nconf = "{conf}"\n'
                      f'[powerflex]\ncredentials = "{pf}"\n'
                      f'[metrics]\ntextfile = "{textfile}"\nlisten = "127.0.0.1:0"\n')
    host.add_linstor_pool()
    host.mgmt.add_pool("sp", pool_type="StorPool", pool_id="ssd;5f0e8c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b")
    host.mgmt.add_pool("pf", pool_type="PowerFlex", ipaddress="127.0.0.1", path="pool1")
    host.mgmt.add_pool("ceph", pool_type="RBD", ipaddress="127.0.0.1", path="rbd")
    return [API_KEY, API_SECRET, LINSTOR_TOKEN, STORPOOL_TOKEN, POWERFLEX_PASSWORD]


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} in {where}"


def test_no_secret_in_check_analyze_the_daemons_log_or_its_metrics(host, tmp_path):
    secrets = configure_secrets(host, tmp_path)
    run = host.check()
    assert run.returncode in (1, 2), run.stdout
    assert {p["backend"] for p in run.doc["probes"]} >= {"linstor", "storpool", "powerflex", "rbd"}
    assert_clean(run.stdout + run.stderr, secrets, "check --json")
    text = host.check_text()
    assert_clean(text.stdout + text.stderr, secrets, "check")
    host.append_log("2026-12-01 10:00:00,000 INFO  [kvm.storage.LibvirtStorageAdaptor] (a:null) "
                    "(logid:1) Attempting to create storage pool x (RBD) in libvirt\n")
    analyzed = subprocess.run([sys.executable, "-m", "guard.cli", "analyze", "--json", str(host.log)],
                              cwd=REPO, capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert analyzed.returncode in (0, 1, 2), analyzed.stderr
    assert_clean(analyzed.stdout + analyzed.stderr, secrets, "analyze")

    daemon = RunningDaemon(host.config, tmp_path)
    try:
        port = daemon.wait_event("metrics-listening")["port"]
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        daemon.wait_for(lambda: daemon.events("finding"), what="a finding")
        time.sleep(1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            served = answer.read().decode()
    finally:
        daemon.stop()
    textfile = (tmp_path / "metrics" / "cloudstack_guard.prom").read_text()
    assert "powerflex" in served and "storpool" in served, "the probes of those backends are in the metrics"
    assert_clean(served, secrets, "/metrics")
    assert_clean(textfile, secrets, "the metrics textfile")
    assert_clean(json.dumps(daemon.logs), secrets, "the daemon's log")
