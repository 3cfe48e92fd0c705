"""Where things are, for tests at any depth: the checkout, and ../shared beside it (the
LINSTOR REST spec and the real agent-log samples, which are never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
DATA = REPO / "tests" / "data"
