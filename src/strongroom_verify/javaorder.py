"""Key orders of Java collections, which some exchanges' hashes depend on."""

from __future__ import annotations

from collections.abc import Iterable

_JAVA8_HASHMAP_INITIAL_CAPACITY = 16
_MAX_KEYS = 1 << 20


def java_sorted(keys: Iterable[str]) -> list[str]:
    """A `TreeMap<String, …>`'s order: by UTF-16 code units, as `String.compareTo` does."""
    return sorted(keys, key=lambda key: key.encode("utf-16-be"))


def java_string_hash(text: str) -> int:
    """`String.hashCode()`, as an unsigned 32-bit value."""
    units = text.encode("utf-16-be")
    value = 0
    for position in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[position : position + 2], "big")) & 0xFFFFFFFF
    return value


def java8_hashmap_order(keys: Iterable[str]) -> list[str]:
    """The iteration order of a Java 8 `HashMap<String, …>` built by put() in the given order
    from the default capacity: by bucket (`(h ^ h >>> 16) & (capacity - 1)`), then by insertion
    within a bucket. For BTC, ETH, USDT, USDC that is exactly this order."""
    ordered = list(dict.fromkeys(keys))
    if len(ordered) > _MAX_KEYS:
        raise ValueError("too many keys")
    capacity = _JAVA8_HASHMAP_INITIAL_CAPACITY
    while len(ordered) > capacity * 3 // 4:  # HashMap resizes once size exceeds 0.75 capacity
        capacity *= 2

    def bucket(key: str) -> int:
        value = java_string_hash(key)
        return (value ^ (value >> 16)) & (capacity - 1)

    return sorted(ordered, key=bucket)  # sorted() is stable: insertion order within a bucket
