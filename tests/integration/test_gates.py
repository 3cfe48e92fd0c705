"""The in-flight gate against a real libvirt domain job on a real (TCG) guest.

CloudStack's agent starts guests as transient domains; restarting it while libvirt runs a
job on one (a migration, a save, a dump) is what the in-flight gate must prevent. Here
a 64 MiB guest with no disk and no network runs in the private libvirtd, and the job is a
memory-only core dump into a FIFO that the test holds open but does not read: QEMU's dump
thread blocks on the full pipe, so the job lasts exactly as long as the test wants, with
no timing guesswork. (A save or a migration-to-file would be the obvious choice, but
libvirt lifts the migration speed limit for files, migrateSetMaxSpeed notwithstanding, and
QEMU writes a paused guest's state with its big lock held, so a stalled save also stalls
every query, jobInfo included. The dump thread runs without that lock and query-dump keeps
answering.) Draining the FIFO lets the dump finish; closing it makes the dump fail, as when
a consumer goes away. Either way the guest runs on, without a job, and the gate must open.
"""

from __future__ import annotations

import os
import select
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from guard.config import RemediationConfig
from guard.gates import gather_in_flight
from guard.history import History
from guard.model import Evidence, Finding, Severity
from guard.policy import Decision, InFlight, decide
from tests.support.libvirtd import PrivateLibvirtd
from tests.support.real_parts import real_part_unavailable

GUEST = "i-2-4242-VM"
GUEST_MIB = 64
NOW = 1_700_000_000.0
POOL = "11111111-2222-3333-4444-555555555555"
# Everything but the in-flight gate passes with these, so any refusal is that gate's.
STALE = Finding("stale-pool", Severity.CRITICAL, (Evidence("probe", "refused"),), "restart",
                pool_uuid=POOL, pool_type="Linstor", restart_helps=True)
CONFIG = RemediationConfig(max_restarts=2, window=3600, cooldown=600, stagger_slot=30)
GATHER_TIMEOUT_S = 3.0
HOLD_S = 2.0


def _decide(in_flight: InFlight) -> Decision:
    return decide([STALE], "remediate", CONFIG, History(), NOW, in_flight, None)


def _guest_xml(emulator: str) -> str:
    domain = ET.Element("domain", type="qemu")  # TCG: no /dev/kvm needed
    ET.SubElement(domain, "name").text = GUEST
    ET.SubElement(domain, "memory", unit="MiB").text = str(GUEST_MIB)
    ET.SubElement(domain, "vcpu").text = "1"
    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    devices = ET.SubElement(domain, "devices")
    ET.SubElement(devices, "emulator").text = emulator
    ET.SubElement(devices, "controller", type="usb", model="none")
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(domain, encoding="unicode")


def _remove_guest(conn: libvirt.virConnect) -> None:
    try:
        domain = conn.lookupByName(GUEST)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return
        raise
    persistent = domain.isPersistent()  # a transient one is gone once destroyed
    if domain.isActive():
        domain.destroy()
    if persistent:
        domain.undefine()


@pytest.fixture
def guest(libvirtd: PrivateLibvirtd, libvirt_conn: libvirt.virConnect) -> Iterator[libvirt.virDomain]:
    """A running transient TCG guest, destroyed afterwards whatever the test did."""
    emulator = shutil.which("qemu-system-x86_64")
    if emulator is None:
        real_part_unavailable("QEMU", "qemu-system-x86_64 not in PATH (Debian package qemu-system-x86)")
    _remove_guest(libvirt_conn)  # left by an interrupted run
    try:
        domain = libvirt_conn.createXML(_guest_xml(emulator), 0)
    except libvirt.libvirtError as exc:
        real_part_unavailable("a TCG guest", f"{exc}\n{libvirtd.guest_log(GUEST)}")
    try:
        yield domain
    finally:
        _remove_guest(libvirt_conn)


class HeldDump:
    """A memory-only core dump of the guest into a FIFO that nobody reads until told to."""

    def __init__(self, uri: str, path: Path) -> None:
        os.mkfifo(path)
        # The reading end first, without blocking: libvirtd opens the writing end while it
        # holds the domain's lock, and would wait there (and every call on the domain with
        # it, jobInfo included) until a reader came.
        self.reader: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.error: libvirt.libvirtError | None = None
        self.thread = threading.Thread(target=self._dump, args=(uri, str(path)), daemon=True)
        self.thread.start()

    def _dump(self, uri: str, path: str) -> None:
        # A connection of its own: with libvirt 9.0's client, a call made by another
        # thread on the connection that carries this long call was seen to wait forever.
        conn = libvirt.open(uri)
        try:
            conn.lookupByName(GUEST).coreDumpWithFormat(
                path, libvirt.VIR_DOMAIN_CORE_DUMP_FORMAT_RAW, libvirt.VIR_DUMP_MEMORY_ONLY)
        except libvirt.libvirtError as exc:
            self.error = exc
        finally:
            conn.close()

    def wait_started(self, domain: libvirt.virDomain, timeout: float = 15.0) -> int:
        """The job type once libvirt reports the job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job_type = domain.jobInfo()[0]
            if job_type != libvirt.VIR_DOMAIN_JOB_NONE:
                return job_type
            if not self.thread.is_alive():
                pytest.fail(f"the dump ended before its job was seen: {self.error}")
            time.sleep(0.02)
        pytest.fail(f"no domain job within {timeout:g}s of starting the dump")

    def drain(self, timeout: float = 20.0) -> int:
        """Read the dump to its end, letting the job finish; returns the bytes read."""
        assert self.reader is not None
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.reader], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                return total
            total += len(chunk)
        pytest.fail(f"dump not finished within {timeout:g}s ({total} bytes read)")

    def close(self) -> None:
        """Go away as a consumer: the dump's writer gets EPIPE and the job fails."""
        if self.reader is not None:
            os.close(self.reader)
            self.reader = None

    def end(self, timeout: float = 15.0) -> None:
        self.close()
        self.thread.join(timeout)


def test_running_guest_without_a_job_passes_the_gate(libvirtd: PrivateLibvirtd, guest: libvirt.virDomain):
    conn = libvirt.openReadOnly(libvirtd.uri)
    try:
        active = [d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
    finally:
        conn.close()
    assert active == [GUEST]  # the guard looks at a running guest, and finds no job on it
    assert guest.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE

    in_flight = gather_in_flight(None, libvirtd.uri, GATHER_TIMEOUT_S)

    assert in_flight == InFlight()
    decision = _decide(in_flight)
    assert decision.act, decision.readings


@pytest.mark.parametrize("ending", ["dump-completes", "consumer-goes-away"])
def test_domain_job_refuses_the_restart_until_it_ends(
    libvirtd: PrivateLibvirtd, guest: libvirt.virDomain, tmp_path: Path, ending: str
):
    dump = HeldDump(libvirtd.uri, tmp_path / f"{GUEST}.core")
    try:
        running = (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED)
        assert dump.wait_started(guest) in running
        held_since = time.monotonic()
        while True:
            in_flight = gather_in_flight(None, libvirtd.uri, GATHER_TIMEOUT_S)
            assert in_flight == InFlight((), (GUEST,)), in_flight
            decision = _decide(in_flight)
            assert not decision.act
            assert [r.gate for r in decision.readings if not r.passed] == ["in-flight"]
            assert f"libvirt job on {GUEST}" in decision.refused_by.reading
            if time.monotonic() - held_since >= HOLD_S:
                break
            time.sleep(0.5)
        assert dump.thread.is_alive()  # one job, held all along

        if ending == "dump-completes":
            assert dump.drain() > GUEST_MIB << 20  # all of the guest's RAM went through
            dump.end()
            assert dump.error is None
        else:
            dump.end()
            assert dump.error is not None
        assert not dump.thread.is_alive()
    finally:
        dump.end()

    assert guest.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # the dump paused it, and resumed it
    assert guest.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
    in_flight = gather_in_flight(None, libvirtd.uri, GATHER_TIMEOUT_S)
    assert in_flight == InFlight()
    decision = _decide(in_flight)
    assert decision.act, decision.readings
