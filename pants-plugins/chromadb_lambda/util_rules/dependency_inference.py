"""Inferred edges: a `chromadb_lambda` depends on its `base_image`.

The edge to the handler's module comes from Pants' own FaaS handler inference (the handler field
subclasses it). With both edges, `pants dependencies` shows them and `--changed-since` with
`[changed].dependents = "transitive"` selects a Lambda when its handler, any module it imports, or any
input of its base image changes.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import FieldSet, InferDependenciesRequest, InferredDependencies
from pants.engine.unions import UnionRule

from chromadb_lambda.target_types import (
    ChromadbLambdaBaseImageField,
    ChromadbLambdaDependenciesField,
    base_image_address_input,
)


@dataclass(frozen=True)
class ChromadbLambdaBaseImageInferenceFieldSet(FieldSet):
    required_fields = (ChromadbLambdaBaseImageField, ChromadbLambdaDependenciesField)

    base_image: ChromadbLambdaBaseImageField
    dependencies: ChromadbLambdaDependenciesField


class InferChromadbLambdaBaseImageDependency(InferDependenciesRequest):
    infer_from = ChromadbLambdaBaseImageInferenceFieldSet


@rule(desc="Inferring the dependency of a chromadb_lambda on its base image")
async def infer_chromadb_lambda_base_image(
    request: InferChromadbLambdaBaseImageDependency,
) -> InferredDependencies:
    addresses = await Get(
        Addresses, UnparsedAddressInputs, base_image_address_input(request.field_set.base_image, request.field_set.address)
    )
    return InferredDependencies(addresses)


def rules():
    return [
        *collect_rules(),
        UnionRule(InferDependenciesRequest, InferChromadbLambdaBaseImageDependency),
    ]
