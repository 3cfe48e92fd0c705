"""The running daemon's metrics: the /metrics listener and the textfile it rewrites while
pool events arrive, never seen half-written by a reader."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from tests.support.daemon import RunningDaemon
from tests.support.libvirtd import define_dir_pool
from tests.support.prom import families


def test_daemon_rewrites_the_textfile_and_no_reader_sees_half(host, tmp_path, libvirt_conn):
    """Pool events make the daemon evaluate (and rewrite the textfile) many times a second
    while a reader reads it in a tight loop: every read is a whole, parseable file."""
    uuid = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    host.mgmt.add_pool("local", pool_type="Filesystem", scope="CLUSTER", pool_id=uuid)
    pool = define_dir_pool(libvirt_conn, uuid, tmp_path / "pool")
    textfile = tmp_path / "textfile" / "cloudstack_guard.prom"
    textfile.parent.mkdir()
    host.write_config(host.config.read_text() + f'[metrics]\ntextfile = "{textfile}"\n')
    daemon = RunningDaemon(host.config, tmp_path)
    stop = threading.Event()
    reads: list[int] = []

    broken: list[str] = []

    def read_tight() -> None:
        while not stop.is_set():
            text = textfile.read_text() if textfile.exists() else ""
            if not text:
                continue
            try:
                families(text)
            except ValueError as exc:
                broken.append(f"unparseable: {exc}")
            if not text.endswith("\n") or "cloudstack_guard_evaluations_total" not in text:
                broken.append(f"partial file of {len(text)} bytes")
            reads.append(len(text))

    try:
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        reader = threading.Thread(target=read_tight)
        reader.start()
        for _ in range(25):
            pool.destroy()
            daemon.wait_event("finding", kind="pool-inactive", timeout=5)
            pool.create()
            daemon.wait_for(lambda: daemon.events("finding-cleared", kind="pool-inactive"), 5)
            daemon.logs.clear()
        stop.set()
        reader.join(10)
        assert not reader.is_alive() and len(reads) > 100, len(reads)
        assert broken == []
    finally:
        stop.set()
        assert daemon.stop() == 0


def test_daemon_serves_and_writes_metrics(host, tmp_path):
    pool = host.add_linstor_pool()
    textfile = tmp_path / "textfile" / "cloudstack_guard.prom"
    textfile.parent.mkdir()
    host.write_config(host.config.read_text() +
                      f'[metrics]\ntextfile = "{textfile}"\nlisten = "127.0.0.1:0"\n')
    daemon = RunningDaemon(host.config, tmp_path)
    try:
        port = daemon.wait_event("metrics-listening")["port"]
        daemon.wait_for(lambda: daemon.notified("READY=1"), what="READY=1")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            served = families(answer.read().decode())
        assert served["cloudstack_guard_status"].samples[0].value == 0
        assert served["cloudstack_guard_agent_up"].samples[0].value == 1
        host.mgmt.remove_pool(pool)
        host.linstor.stop()

        def critical() -> bool:
            parsed = families(textfile.read_text())
            return any(s.labels == {"kind": "stale-pool", "severity": "CRITICAL"}
                       for s in parsed["cloudstack_guard_findings"].samples)
        daemon.wait_for(critical, what="stale-pool CRITICAL in the textfile")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    finally:
        assert daemon.stop() == 0
    time.sleep(0.1)
