"""`pants lambda-prune [--dry-run] [--keep N] <targets>`: remove the local images of chromadb_lambda
targets (and of their base images) that no current content key uses.

Every content key leaves an image behind on the engine (a base change: hundreds of MB). The
repositories pruned are those of the given targets and of their bases; the keys kept are those of
EVERY chromadb_lambda target of the repo (as the working tree is now), so a narrow selection never
removes what another target uses. In a pruned repository, an image is stale when a `ck-` tag names
it and no current key's ref points at it; its tags in that repository go (then Docker deletes it),
except for the `--keep` most recently tagged stale images of each repository. Nothing outside those
repositories is touched, and nothing is forced (`docker image rm` without `--force`: an image a
container uses stays, and is reported), except the import check's provers (scripts/prover.py): a
removed image's prover, an idle container of it kept only to check handlers, is removed first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.console import Console
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.process import FallibleProcessResult, Process, ProcessResult
from pants.engine.addresses import Address
from pants.engine.rules import Get, MultiGet, collect_rules, goal_rule, rule
from pants.engine.target import AllTargets, Targets
from pants.option.option_types import BoolOption, IntOption
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text, pluralize, softwrap

from chromadb_lambda.goals.package import ChromadbLambdaPackageFieldSet
from chromadb_lambda.scripts.prover import LABEL as PROVER_LABEL
from chromadb_lambda.util_rules.content_keys import KEY_TAG_PREFIX, LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.engine import (
    DockerEnvironment,
    EngineImages,
    EngineImagesRequest,
    EngineRun,
    docker_process,
    run_scoped_process,
)
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest


class LambdaPruneSubsystem(GoalSubsystem):
    name = "lambda-prune"
    help = help_text(
        """
        Remove the local images of `chromadb_lambda` targets and of their base images that no
        current content key uses: the `ck-` images earlier commits left on the Docker engine.

        Only the repositories of the given targets and of their bases are pruned; the keys of every
        `chromadb_lambda` target of the repo are kept.

        Example: `pants lambda-prune --dry-run ::`
        """
    )

    dry_run = BoolOption(default=False, help="List what would be removed; remove nothing.")
    keep = IntOption(
        default=1,
        help=help_text(
            """
            How many unused images to keep per repository, the most recently tagged first. The
            default keeps one: the image of the commit you were on before (switching back to that
            branch then builds nothing). `0` removes every unused image.
            """
        ),
    )


class LambdaPruneGoal(Goal):
    subsystem_cls = LambdaPruneSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@dataclass(frozen=True)
class StaleImage:
    repository: str
    image_id: str
    # Its refs in `repository`: the ones removed.
    refs: tuple[str, ...]
    # When the engine last tagged it (ISO 8601, sorts as text), else its creation time.
    tagged_at: str = ""


@dataclass(frozen=True)
class PrunePlan:
    remove: tuple[StaleImage, ...]
    kept: tuple[StaleImage, ...]


def stale_images(
    repositories: Iterable[str], engine_refs: Mapping[str, str], current_refs: Iterable[str]
) -> tuple[StaleImage, ...]:
    """The images of `repositories` that a `ck-` tag names and no current ref points at."""
    current = set(current_refs)
    current_ids = {engine_refs[ref] for ref in current if ref in engine_refs}
    stale = []
    for repository in sorted(set(repositories)):
        refs = {ref: image_id for ref, image_id in engine_refs.items() if ref.rpartition(":")[0] == repository}
        keyed_ids = {
            image_id
            for ref, image_id in refs.items()
            if ref.rpartition(":")[2].startswith(KEY_TAG_PREFIX) and ref not in current
        }
        for image_id in sorted(keyed_ids):
            if image_id in current_ids:
                # The same content as a current key (only a stale tag on it): left alone.
                continue
            stale.append(StaleImage(repository, image_id, tuple(sorted(r for r, i in refs.items() if i == image_id))))
    return tuple(stale)


def prune_plan(stale: Iterable[StaleImage], tagged_at: Mapping[str, str], keep: int) -> PrunePlan:
    """Keeps the `keep` most recently tagged stale images of each repository; the rest go."""
    by_repository: dict[str, list[StaleImage]] = {}
    for image in stale:
        dated = StaleImage(image.repository, image.image_id, image.refs, tagged_at.get(image.image_id, ""))
        by_repository.setdefault(image.repository, []).append(dated)
    remove: list[StaleImage] = []
    kept: list[StaleImage] = []
    for repository in sorted(by_repository):
        newest_first = sorted(by_repository[repository], key=lambda i: (i.tagged_at, i.image_id), reverse=True)
        kept += newest_first[: max(keep, 0)]
        remove += newest_first[max(keep, 0) :]
    return PrunePlan(tuple(remove), tuple(kept))


def parse_tag_times(output: str) -> dict[str, str]:
    """`docker image inspect` output, one JSON list per line: [id, LastTagTime, Created]."""
    times = {}
    for line in output.splitlines():
        if line.strip():
            image_id, last_tagged, created = json.loads(line)
            # An image never tagged on this engine (loaded) has the zero time: use its creation.
            times[image_id] = last_tagged if last_tagged and not last_tagged.startswith("0001-") else created
    return times


def plan_lines(plan: PrunePlan, dry_run: bool, keep: int) -> list[str]:
    verb = "Would remove" if dry_run else "Removing"
    lines = [f"{verb} {ref} (image {image.image_id[:19]})" for image in plan.remove for ref in image.refs]
    lines += [
        f"Keeping {ref} (image {image.image_id[:19]}): one of the {keep} most recently tagged unused images "
        "of its repository (`--lambda-prune-keep`)"
        for image in plan.kept
        for ref in image.refs
    ]
    return lines


def provers_of(output: str, image_ids: Iterable[str]) -> list[str]:
    """The containers of `docker ps --format '{{.ID}} {{.Label "<PROVER_LABEL>"}}'` that are provers of
    the given images."""
    wanted = set(image_ids)
    lines = (line.split() for line in output.splitlines())
    return [fields[0] for fields in lines if len(fields) == 2 and fields[1] in wanted]


@dataclass(frozen=True)
class PruneCandidatesRequest:
    selected: frozenset[Address]


@dataclass(frozen=True)
class PruneCandidates:
    """The selected targets' repositories (and their bases'), the images there no current key uses,
    and when each was last tagged."""

    repositories: frozenset[str]
    stale: tuple[StaleImage, ...]
    tagged_at: FrozenDict[str, str]
    run: EngineRun


@rule(desc="Finding images no chromadb_lambda key uses")
async def prune_candidates(
    request: PruneCandidatesRequest, all_targets: AllTargets, docker: DockerBinary, docker_env: DockerEnvironment
) -> PruneCandidates:
    every = [ChromadbLambdaPackageFieldSet.create(t) for t in all_targets if ChromadbLambdaPackageFieldSet.is_applicable(t)]
    keys = await MultiGet(Get(LambdaImageKey, LambdaImageKeyRequest(fs.address)) for fs in every)
    names = await MultiGet(Get(ImageNames, LambdaImageNamesRequest(fs.address)) for fs in every)
    engine = await Get(EngineImages, EngineImagesRequest())
    current_refs: set[str] = set()
    repositories: set[str] = set()
    for field_set, key, name in zip(every, keys, names):
        current_refs.update((name.key_ref, key.base.ref))
        if field_set.address in request.selected:
            repositories.update((name.repository, key.base.ref.rpartition(":")[0]))
    stale = stale_images(repositories, engine.refs, current_refs) if repositories else ()
    tagged_at: dict[str, str] = {}
    if stale:
        inspect = (
            "image", "inspect", "--format", "[{{json .Id}}, {{json .Metadata.LastTagTime}}, {{json .Created}}]",
            *sorted({i.image_id for i in stale}),
        )
        description = f"Reading when {pluralize(len(stale), 'unused image')} were tagged"
        inspected = await Get(
            ProcessResult, Process, run_scoped_process(docker_process(docker, inspect, docker_env.env, description), engine.run)
        )
        tagged_at = parse_tag_times(inspected.stdout.decode())
    return PruneCandidates(frozenset(repositories), stale, FrozenDict(tagged_at), engine.run)


@goal_rule
async def lambda_prune(
    console: Console, subsystem: LambdaPruneSubsystem, targets: Targets, docker: DockerBinary, docker_env: DockerEnvironment
) -> LambdaPruneGoal:
    found = await Get(PruneCandidates, PruneCandidatesRequest(frozenset(t.address for t in targets)))
    repositories, stale, tagged_at, run = found.repositories, list(found.stale), dict(found.tagged_at), found.run
    if not repositories:
        console.print_stderr("No chromadb_lambda targets given: nothing to prune (e.g. `pants lambda-prune ::`).")
        return LambdaPruneGoal(exit_code=0)
    plan = prune_plan(stale, tagged_at, subsystem.keep)
    for line in plan_lines(plan, subsystem.dry_run, subsystem.keep):
        console.print_stdout(line)
    if subsystem.dry_run or not plan.remove:
        console.print_stderr(
            f"{pluralize(len(plan.remove), 'unused image')} to remove, {len(plan.kept)} kept, in "
            f"{pluralize(len(repositories), 'repository')}" + (" (dry run: nothing removed)." if subsystem.dry_run else ".")
        )
        return LambdaPruneGoal(exit_code=0)

    # The import check's provers of these images (idle containers of a base) would keep them.
    listed = await Get(
        ProcessResult,
        Process,
        run_scoped_process(
            docker_process(
                docker,
                ("ps", "--all", "--no-trunc", "--filter", f"label={PROVER_LABEL}", "--format",
                 f'{{{{.ID}}}} {{{{.Label "{PROVER_LABEL}"}}}}'),
                docker_env.env,
                "Finding the import check's provers",
            ),
            run,
        ),
    )
    provers = provers_of(listed.stdout.decode(), (image.image_id for image in plan.remove))
    if provers:
        await Get(
            ProcessResult,
            Process,
            run_scoped_process(
                docker_process(
                    docker, ("rm", "--force", *provers), docker_env.env,
                    f"Removing {pluralize(len(provers), 'import check prover')} of the images to remove",
                ),
                run,
            ),
        )
    results = await MultiGet(
        Get(
            FallibleProcessResult,
            Process,
            run_scoped_process(
                docker_process(docker, ("image", "rm", *image.refs), docker_env.env, f"Removing {image.refs[0]}"),
                run,
            ),
        )
        for image in plan.remove
    )
    failed = [(image, result) for image, result in zip(plan.remove, results) if result.exit_code != 0]
    for image, result in failed:
        console.print_stderr(
            softwrap(
                f"""
                Could not remove {', '.join(image.refs)} (image {image.image_id[:19]}):
                {result.stderr.decode().strip()}
                """
            )
        )
    console.print_stderr(
        f"Removed {pluralize(len(plan.remove) - len(failed), 'unused image')}, kept {len(plan.kept)}, in "
        f"{pluralize(len(repositories), 'repository')}."
    )
    return LambdaPruneGoal(exit_code=1 if failed else 0)


def rules():
    return collect_rules()
