"""The Collection hash fix, against Pants' own Collection types."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pants.build_graph.address import Address
from pants.engine.addresses import Addresses
from pants.engine.collection import Collection
from pants.engine.fs import CreateDigest, FileContent

from chromadb_lambda import register
from chromadb_lambda.pants_compat import collection_hash_is_constant, fix_collection_hash


def test_this_pants_has_the_bug_until_the_backend_loads() -> None:
    # A fresh interpreter: nothing has loaded the backend (whose rules() applies the fix) yet.
    probe = (
        "from pants.engine.fs import CreateDigest, FileContent\n"
        "print(hash(CreateDigest([FileContent('a', b'1')])) == hash(CreateDigest([FileContent('b', b'2')])))\n"
        f"from {register.__name__} import rules\n"
        "rules()\n"
        "print(hash(CreateDigest([FileContent('a', b'1')])) == hash(CreateDigest([FileContent('b', b'2')])))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["True", "False"], result.stderr


@pytest.fixture(autouse=True)
def fixed() -> None:
    fix_collection_hash()


def test_fixed_hash_follows_the_items() -> None:
    assert not collection_hash_is_constant()
    one = CreateDigest([FileContent("dist/a.json", b"{}")])
    assert hash(one) == hash(CreateDigest([FileContent("dist/a.json", b"{}")]))
    assert hash(one) != hash(CreateDigest([FileContent("dist/a.json", b"{ }")]))
    # A subclass that inherits Collection's hash gets the fix too.
    assert hash(Addresses([Address("a")])) != hash(Addresses([Address("b")]))
    assert fix_collection_hash() is False  # already fixed: nothing to do


def test_unhashable_items_still_hash() -> None:
    # Before the fix any Collection hashed, whatever its items; it still does, and equal ones alike.
    assert hash(Collection([[1, 2]])) == hash(Collection([[1, 2]]))


def test_an_interned_collection_is_compared_with_its_equals_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine interns Get inputs in one dict for the life of pantsd: inserting one more must not
    # compare it with the thousands already there.
    interned = {CreateDigest([FileContent(f"dist/{i}.json", b"{}")]): i for i in range(2000)}
    compared = []
    original_eq = Collection.__eq__

    def counting_eq(self: Collection, other: object) -> bool:
        compared.append(other)
        return original_eq(self, other)

    monkeypatch.setattr(Collection, "__eq__", counting_eq)
    interned[CreateDigest([FileContent("dist/new.json", b"{}")])] = 2000
    assert CreateDigest([FileContent("dist/7.json", b"{}")]) in interned
    assert len(compared) <= 1
