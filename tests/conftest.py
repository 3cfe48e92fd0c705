"""Shared fixtures.

Fixtures backed by real parts skip with their reason on a machine that lacks them, but
fail under GUARD_REQUIRE_REAL_PARTS=1: CI must never go green by skipping them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import libvirt
import pytest

from tests.harness.host import GuardHost
from tests.harness.libvirtd import LibvirtdError, PrivateLibvirtd, tracked_connection
from tests.harness.unprivileged import world_readable_dir


def real_part_unavailable(what: str, reason: str) -> NoReturn:
    message = f"{what} unavailable: {reason}"
    if os.environ.get("GUARD_REQUIRE_REAL_PARTS") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


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
    """A whole KVM host on loopback for the guard: see tests/harness/host.py."""
    if not libvirtd.running:
        libvirtd.start()
    with GuardHost(tmp_path, libvirtd.uri) as guard_host:
        yield guard_host
