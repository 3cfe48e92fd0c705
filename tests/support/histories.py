"""A small history with one of every record, for the store's tests (the atomic-write
test saves it from a second process)."""

from __future__ import annotations

from guard.history import Held, History, IncarnationRecord, PoolRecord

UUID_A = "3d2c1b0a-1111-4222-8333-944445555666"
UUID_B = "4e3d2c1b-2222-4333-8444-a55556666777"


def sample_history() -> History:
    return History(
        pools=(PoolRecord(UUID_A, "Linstor", url="http://c:3370", first_listed=1.0, removed_at=5.0,
                          removed_via="test"),),
        incarnations=(IncarnationRecord(42, 100.5, 101.0, held=(Held(UUID_A, 102.0, "log"),),
                                        dropped=(UUID_B,)),),
    )
