"""The backend table: every pool type's backend is one the table can load, by the name
its module gives it, and a check of a LINSTOR-only host loads no other backend's code."""

from __future__ import annotations

import subprocess
import sys

from guard.backends import NAMES, all_backends, backend_for_url, backend_named
from guard.drivers import DRIVERS

ROOT_DIR = __file__.rsplit("/tests/", 1)[0]


def test_each_row_loads_the_backend_named_so() -> None:
    assert [b.name for b in all_backends()] == list(NAMES)
    assert backend_named("no-such-backend") is None
    assert backend_named("") is None
    assert backend_named(None) is None


def test_every_pool_type_that_is_probed_has_a_row() -> None:
    probed = {d.probe for d in DRIVERS.values() if d.probe}
    assert probed <= set(NAMES), probed - set(NAMES)


def test_urls_still_reach_every_backend_by_scheme() -> None:
    assert backend_for_url("nfs://10.0.0.5/export").name == "nfs"  # type: ignore[union-attr]
    assert backend_for_url("10.0.0.9:3370").name == "linstor"  # type: ignore[union-attr]
    assert backend_for_url("gopher://x/") is None


def test_a_linstor_pool_loads_only_linstor() -> None:
    """What a check on a LINSTOR-only host imports: collect, then the one backend its pool
    names. Run in a fresh interpreter, since this one has loaded every backend."""
    code = ("import sys, guard.collect, guard.checking\n"
            "from guard.backends import backend_named\n"
            "assert backend_named('linstor') is not None\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('guard.backends.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT_DIR, check=True)
    loaded = set(done.stdout.split())
    others = {f"guard.backends.{name}" for name in NAMES if name != "linstor"}
    assert "guard.backends.linstor" in loaded
    assert not loaded & others, sorted(loaded & others)
