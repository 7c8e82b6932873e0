"""Upstream fixes of Pants bugs that cost this backend time, applied only where the running Pants has them.

Pants before 2.25 gives every `Collection` the same hash (pantsbuild/pants#18250, fixed by
pantsbuild/pants#21725): `__hash__ = Tuple.__hash__` binds the hash of `typing.Tuple` itself, not
tuple's. The engine interns every `Get` input in one dict for the life of pantsd, so each
`CreateDigest`, `Addresses`, ... interned walks every Collection interned before it, calling `__eq__`
on each: the cost of a `Get(Digest, CreateDigest(...))` grows with the number of Lambdas and with the
age of pantsd. The first no-op after a fresh build of 200 Lambdas spent about 0.5 s of its ~2 s there
(docs/benchmarks.md).
"""
from __future__ import annotations

import typing

from pants.engine.collection import Collection

# What every Collection hashed to with the bug: kept for one whose items cannot be hashed, which the
# fix would otherwise turn from hashable into a TypeError.
_UNHASHABLE_ITEMS_HASH = hash(typing.Tuple)


def collection_hash_is_constant() -> bool:
    """True when this Pants hashes Collections of different items alike (pantsbuild/pants#18250)."""
    return hash(Collection((1,))) == hash(Collection((2,)))


def collection_hash(self: Collection) -> int:
    """A Collection's hash as Pants 2.25 computes it (the tuple of its items'), or, when an item cannot
    be hashed, the constant it had before (equal Collections still hash alike: their items compare
    equal, so they are unhashable alike)."""
    try:
        return tuple.__hash__(self)
    except TypeError:
        return _UNHASHABLE_ITEMS_HASH


def fix_collection_hash() -> bool:
    """Give Collection (and every subclass that inherits its hash) the fixed hash when this Pants has
    the bug; a no-op otherwise and when already fixed. True when it changed the hash."""
    if not collection_hash_is_constant():
        return False
    Collection.__hash__ = collection_hash  # type: ignore[assignment]
    return True
