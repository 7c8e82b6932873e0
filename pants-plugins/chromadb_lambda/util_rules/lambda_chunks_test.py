"""Chunks of Lambdas: grouped by base, stable when a member changes or a target is added."""
from __future__ import annotations

from pants.engine.addresses import Address

from chromadb_lambda.util_rules.lambda_chunks import lambda_chunks

BASE_A = Address("base", target_name="a")
BASE_B = Address("base", target_name="b")


def lambdas(n: int, base: Address = BASE_A, prefix: str = "fn") -> list[tuple[Address, Address]]:
    return [(Address(f"lambdas/{prefix}{i:03d}", target_name=f"{prefix}{i:03d}"), base) for i in range(n)]


def test_every_member_in_exactly_one_chunk_sorted() -> None:
    members = lambdas(200)
    chunks = lambda_chunks(reversed(members), size_target=24)
    flat = [a for chunk in chunks for a in chunk]
    assert flat == sorted(a for a, _ in members)
    assert all(list(chunk) == sorted(chunk) for chunk in chunks)
    # About 200 / 24 chunks, none absurdly large (partition_sequentially cuts by address hashes).
    assert 3 <= len(chunks) <= 30


def test_chunks_do_not_mix_bases() -> None:
    chunks = lambda_chunks([*lambdas(3, BASE_B, "b"), *lambdas(3, BASE_A, "a")], size_target=24)
    assert chunks == (
        tuple(Address(f"lambdas/a{i:03d}", target_name=f"a{i:03d}") for i in range(3)),
        tuple(Address(f"lambdas/b{i:03d}", target_name=f"b{i:03d}") for i in range(3)),
    )


def test_membership_depends_on_addresses_only() -> None:
    # A Lambda whose content changes keeps its address: the chunks are the same value.
    members = lambdas(100)
    assert lambda_chunks(members, size_target=8) == lambda_chunks(list(reversed(members)), size_target=8)


def test_an_added_target_changes_at_most_two_chunks() -> None:
    members = lambdas(200)
    before = set(lambda_chunks(members, size_target=16))
    added = (Address("lambdas/fn100x", target_name="fn100x"), BASE_A)
    after = set(lambda_chunks([*members, added], size_target=16))
    assert len(before - after) <= 2
    assert len(after - before) <= 2
    assert any(added[0] in chunk for chunk in after - before)
