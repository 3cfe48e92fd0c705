"""Which entry of a java.util.HashMap<String, _> comes first, computed from its keys.

LinstorStorageAdaptor.disconnectPhysicalDiskByPath asks the first value of its static
pool map (`values().stream().findFirst()`), so which LINSTOR pool every VM stop reaches
is decided by Java's HashMap layout: String.hashCode, spread by `h ^ (h >>> 16)`, a
bucket index masked by a capacity that doubles past 0.75 full and never shrinks, and
insertion order inside a bucket. Checked against a Java 17 JVM (tests/unit/test_javamap.py).
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_CAPACITY = 16
MAX_CAPACITY_CHECKED = 1 << 10


def java_string_hash(text: str) -> int:
    """java.lang.String.hashCode as an unsigned 32-bit value (UTF-16 code units)."""
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h


def bucket(key: str, capacity: int) -> int:
    h = java_string_hash(key)
    return (h ^ (h >> 16)) & (capacity - 1)


def capacity_for(most_ever: int) -> int:
    capacity = DEFAULT_CAPACITY
    while most_ever > capacity * 3 // 4:
        capacity *= 2
    return capacity


def hashmap_order(keys: Sequence[str], most_ever: int) -> list[str]:
    """Iteration order of a HashMap holding `keys` (in insertion order) that once held
    `most_ever` entries."""
    capacity = capacity_for(max(most_ever, len(keys)))
    position = {key: index for index, key in enumerate(keys)}
    return sorted(keys, key=lambda k: (bucket(k, capacity), position[k]))


def surely_before(first: str, other: str, most_at_least: int) -> bool:
    """`first` iterates before `other` whatever the insertion order and however many
    entries the map once held beyond `most_at_least`: a strictly lower bucket at every
    capacity the map can have grown to."""
    capacity = capacity_for(most_at_least)
    while capacity <= MAX_CAPACITY_CHECKED:
        if bucket(first, capacity) >= bucket(other, capacity):
            return False
        capacity *= 2
    return True
