"""Every chromadb_lambda image's `repository:tag`s, checked once per run: no two targets share one.

Two Lambdas in different folders whose targets share a name (`fn`) both get the repository `fn` from
the default `[docker].default_repository = "{name}"`: the last one built would take `fn:latest`,
each docker-info would list it, and `publish` would push the wrong code under it. Every
chromadb_lambda target of the repo is checked, not only those on the command line: packaging one of
the two alone would still move the other's tag. Names are made as for packaging (image_names.py).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.engine.addresses import Address
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import AllUnexpandedTargets, InvalidFieldException
from pants.util.frozendict import FrozenDict
from pants.util.strutil import bullet_list, softwrap

from chromadb_lambda.target_types import ChromadbLambdaImageTagsField, ChromadbLambdaRepositoryField, ChromadbLambdaTarget
from chromadb_lambda.util_rules.image_names import LambdaBuildArgs, LambdaBuildArgsRequest
from chromadb_lambda.util_rules.image_refs import lambda_docker_field_set, lambda_image_refs


class ImageTagCollision(Exception):
    """Two chromadb_lambda targets would get the same `repository:tag`."""


@dataclass(frozen=True)
class AllLambdaImageRefsRequest:
    pass


@dataclass(frozen=True)
class AllLambdaImageRefs:
    """The `repository:tag` refs of every chromadb_lambda target, none shared by two targets."""

    refs: FrozenDict[Address, tuple[str, ...]]


def tag_collisions(refs: Mapping[Address, tuple[str, ...]]) -> dict[tuple[Address, ...], tuple[str, ...]]:
    """The refs that more than one target would get, grouped by the targets that share them."""
    owners: dict[str, list[Address]] = defaultdict(list)
    for address, target_refs in refs.items():
        for ref in dict.fromkeys(target_refs):
            owners[ref].append(address)
    shared: dict[tuple[Address, ...], list[str]] = defaultdict(list)
    for ref, addresses in owners.items():
        if len(addresses) > 1:
            shared[tuple(sorted(addresses))].append(ref)
    return {addresses: tuple(sorted(shared_refs)) for addresses, shared_refs in sorted(shared.items())}


def collision_message(collisions: Mapping[tuple[Address, ...], tuple[str, ...]]) -> str:
    lines = [
        f"{' and '.join(str(a) for a in addresses)} would each be tagged {', '.join(f'`{r}`' for r in refs)}"
        for addresses, refs in collisions.items()
    ]
    example = next(iter(collisions))[-1]
    return softwrap(
        f"""
        Two chromadb_lambda targets would get the same image tag: the last one built would take it,
        and `pants publish` would push the wrong image under it.

        {bullet_list(lines)}

        Give one of them its own repository, e.g. `repository="{example.spec_path.replace('/', '-')}-{{name}}"`
        in the target {example}, or name every repository by its folder with
        `[docker].default_repository = "{{directory}}"` in pants.toml. Nothing was built.
        """
    )


def all_image_refs(
    targets: tuple[tuple[Address, str | None, tuple[str, ...] | None], ...],
    default_repository: str,
    build_args: Mapping[str, str] = FrozenDict(),
) -> dict[Address, tuple[str, ...]]:
    """Each target's refs, from (address, `repository` field, `image_tags` field) as its package
    names them; a target whose fields are invalid is left out (its own package says why).

    Content keys are not computed for this check: `{pants.hash}` stands for the target's address, so
    a tag made of it is never shared (two targets with one key would name one image anyway).
    """
    names = {}
    for address, repository, tags in targets:
        stand_in_key = hashlib.sha256(str(address).encode()).hexdigest()
        field_set = lambda_docker_field_set(address, repository, tags)
        try:
            names[address] = lambda_image_refs(field_set, default_repository, build_args, stand_in_key)[1]
        except InvalidFieldException:
            continue
    return names


@rule(desc="Checking that no two chromadb_lambda images share a tag")
async def check_lambda_image_refs(
    _: AllLambdaImageRefsRequest, targets: AllUnexpandedTargets, docker_options: DockerOptions
) -> AllLambdaImageRefs:
    build_args = await Get(LambdaBuildArgs, LambdaBuildArgsRequest())
    names = all_image_refs(
        tuple(
            (t.address, t[ChromadbLambdaRepositoryField].value, t[ChromadbLambdaImageTagsField].value)
            for t in targets
            if isinstance(t, ChromadbLambdaTarget)
        ),
        docker_options.default_repository,
        build_args.values,
    )
    collisions = tag_collisions(names)
    if collisions:
        raise ImageTagCollision(collision_message(collisions))
    return AllLambdaImageRefs(FrozenDict(names))


def rules():
    return collect_rules()
