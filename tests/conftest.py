"""Shared fixtures.

Fixtures backed by real parts skip with their reason on a machine that lacks them, but
fail under GUARD_REQUIRE_REAL_PARTS=1: CI must never go green by skipping them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.host import GuardHost
from tests.support.libvirtd import LibvirtdError, PrivateLibvirtd, tracked_connection
from tests.support.real_parts import real_part_unavailable
from tests.support.unprivileged import world_readable_dir


@pytest.fixture
def world_tmp() -> Iterator[Path]:
    """Like tmp_path, but every user can traverse it: for files an unprivileged child reads."""
    with world_readable_dir() as path:
        yield path


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLibvirtd]:
    """A private libvirtd shared by the session; tests may stop it, libvirt_conn restarts it."""
    try:
        daemon = PrivateLibvirtd(tmp_path_factory.mktemp("libvirtd"))
        daemon.start()
    except (LibvirtdError, OSError, subprocess.SubprocessError) as exc:
        real_part_unavailable("libvirtd", str(exc))
    yield daemon
    daemon.stop()


@pytest.fixture
def libvirt_conn(libvirtd: PrivateLibvirtd) -> Iterator[libvirt.virConnect]:
    """A connection to the private libvirtd; pools the test adds are removed afterwards."""
    with tracked_connection(libvirtd) as conn:
        yield conn


@pytest.fixture
def host(tmp_path: Path, libvirtd: PrivateLibvirtd) -> Iterator[GuardHost]:
    """A whole KVM host on loopback for the guard: see tests/support/host.py."""
    if not libvirtd.running:
        libvirtd.start()
    with GuardHost(tmp_path, libvirtd.uri) as guard_host:
        yield guard_host
