"""Chunks of `chromadb_lambda` targets that the assembler builds and checks together.

Every `chromadb_lambda` of the repo (`AllTargets`, so a narrow `pants package lambdas/x:x` sees the
same chunks as `pants package ::`), grouped by base image, sorted by address and cut with Pants'
`partition_sequentially`: where a chunk ends depends only on the addresses, so a Lambda whose
content changes never moves another Lambda to another chunk, and a new target changes at most the
chunk it falls in (and, rarely, its neighbour).

A member's package asks for its chunk's images (chunk_images.py): one `docker load` for every
member the engine lacks, and one container for the import check of the chunk.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from pants.engine.addresses import Address, Addresses
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets, UnparsedAddressInputs
from pants.util.collections import partition_sequentially
from pants.util.frozendict import FrozenDict

from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaHandlerField,
    base_image_address_input,
)

# Members per chunk, on average: big enough that one `docker load` and one container serve many
# images, small enough that a handler edit re-checks few (the check's cache is per chunk).
CHUNK_SIZE_TARGET = 24


def lambda_chunks(
    members: Iterable[tuple[Address, Address]], size_target: int = CHUNK_SIZE_TARGET
) -> tuple[tuple[Address, ...], ...]:
    """(Lambda address, base address) pairs -> chunks of Lambda addresses that share a base, each
    sorted; chunks ordered by base, then by their first address."""
    by_base: dict[Address, list[Address]] = defaultdict(list)
    for address, base in members:
        by_base[base].append(address)
    chunks = []
    for base in sorted(by_base):
        addresses = sorted(set(by_base[base]))
        for chunk in partition_sequentially(addresses, key=str, size_target=size_target):
            chunks.append(tuple(sorted(chunk)))
    return tuple(chunks)


@dataclass(frozen=True)
class LambdaChunksRequest:
    pass


@dataclass(frozen=True)
class LambdaChunks:
    chunks: tuple[tuple[Address, ...], ...]
    chunk_of: FrozenDict[Address, tuple[Address, ...]]


@rule(desc="Chunking the chromadb_lambda targets")
async def all_lambda_chunks(_: LambdaChunksRequest, targets: AllTargets) -> LambdaChunks:
    lambdas = [t for t in targets if t.has_field(ChromadbLambdaHandlerField) and t.has_field(ChromadbLambdaBaseImageField)]
    bases = await MultiGet(
        Get(Addresses, UnparsedAddressInputs, base_image_address_input(t[ChromadbLambdaBaseImageField], t.address))
        for t in lambdas
    )
    # A base that does not resolve to one address is reported by the member's own package (closure.py).
    chunks = lambda_chunks(
        (t.address, base[0] if len(base) == 1 else t.address) for t, base in zip(lambdas, bases)
    )
    return LambdaChunks(chunks, FrozenDict((address, chunk) for chunk in chunks for address in chunk))


@dataclass(frozen=True)
class LambdaChunkRequest:
    address: Address


@dataclass(frozen=True)
class LambdaChunk:
    members: tuple[Address, ...]


@rule
async def lambda_chunk(request: LambdaChunkRequest) -> LambdaChunk:
    chunks = await Get(LambdaChunks, LambdaChunksRequest())
    return LambdaChunk(chunks.chunk_of.get(request.address, (request.address,)))


def rules():
    return collect_rules()
