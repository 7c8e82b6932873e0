"""`pants publish` of `chromadb_lambda` images: concurrent pushes, ECR auth, a deploy manifest.

Pants' publish goal runs each target's `InteractiveProcess` one after another. Here the pushes are
ordinary processes run by this rule, which the goal requests for every target at once, so they run
concurrently; the interactive process only reports the outcome, merges the deploy manifest in
`dist/` (see docs/publishing.md), and exits non-zero if a push failed, which is how the goal lists
what was not published. The goal runs these processes one after another; the report still locks
the manifest, for two `pants publish` runs at once.

Before any push (of the base too), a target with a `functions` field goes through the preflight
(util_rules/function_check.py, `[lambda-deploy].function_check`): a function of another architecture
makes the target's process print the refusal and fail, with nothing pushed and the manifest untouched.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from pants.backend.docker.package_types import BuiltDockerImage
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.core.goals.package import BuiltPackage, EnvironmentAwarePackageRequest
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.core.util_rules.distdir import DistDir
from pants.engine.fs import Digest, DigestContents
from pants.engine.process import InteractiveProcess
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllUnexpandedTargets, WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from chromadb_lambda.goals.deploy import LambdaDeploySubsystem
from chromadb_lambda.goals.package import ChromadbLambdaPackageFieldSet
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import (
    ChromadbLambdaArchitectureField,
    ChromadbLambdaBaseImageField,
    ChromadbLambdaFunctionsField,
    ChromadbLambdaHandlerField,
    ChromadbLambdaImageTagsField,
    ChromadbLambdaRegistriesField,
    ChromadbLambdaRepositoryField,
    ChromadbLambdaSkipPushField,
)
from chromadb_lambda.util_rules.assembled_push import (
    AssembledPush,
    AssembledPushRequest,
    assembled_spec,
    base_push_targets,
)
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.util_rules.function_check import (
    FunctionCheck,
    FunctionConfigurations,
    FunctionConfigurationsRequest,
    preflight_verdict,
    refusal_process,
)
from chromadb_lambda.util_rules.image_names import BaseImageNamesRequest, ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.push import (
    BaseImagePush,
    BaseImagePushRequest,
    PublishSession,
    PublishSessionRequest,
    push_spec,
    run_push,
)
from chromadb_lambda.util_rules.registries import PushTarget
from chromadb_lambda.util_rules.registry_process import report_script

logger = logging.getLogger(__name__)


class PublishChromadbLambdaRequest(PublishRequest):
    pass


@dataclass(frozen=True)
class ChromadbLambdaPublishFieldSet(PublishFieldSet):
    publish_request_type = PublishChromadbLambdaRequest
    required_fields = (ChromadbLambdaHandlerField, ChromadbLambdaBaseImageField)

    registries: ChromadbLambdaRegistriesField
    skip_push: ChromadbLambdaSkipPushField
    repository: ChromadbLambdaRepositoryField
    image_tags: ChromadbLambdaImageTagsField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData(
            {"publisher": "chromadb_lambda", "registries": self.registries.value or (), **super().get_output_data()}
        )


def not_pushed(
    field_set: ChromadbLambdaPublishFieldSet, image: BuiltDockerImage, targets: tuple[PushTarget, ...]
) -> list[PublishPackages]:
    """What is not pushed, and why: no registry, `skip_push` on the target or on a registry."""
    if not targets:
        description = "(no registry: give the target `registries`, or mark one `default` in `[docker].registries`)"
        return [PublishPackages(names=image.tags, description=description)]
    if field_set.skip_push.value:
        names = tuple(ref for t in targets for ref in t.refs)
        return [PublishPackages(names=names, description=f"(by `skip_push` on {field_set.address})")]
    return [
        PublishPackages(names=t.refs, description=f"(by `skip_push` on registry {t.alias or t.address})")
        for t in targets
        if t.skip_push
    ]


def push_description(outcome: dict[str, Any], targets: tuple[PushTarget, ...]) -> str:
    return ", ".join(
        f"{r['address']} ({'already published' if r['status'] == 'already published' else r['digest'][:19]})"
        for r in outcome["registries"]
    ) or ", ".join(t.address for t in targets)


def report_process(
    manifest: str, session: PublishSession, address: str, outcome: dict[str, Any], existing: list[str]
) -> InteractiveProcess:
    """Reports the outcome, merges the deploy manifest (dropping entries of addresses not in
    `existing`), and exits non-zero if a push failed."""
    return InteractiveProcess(
        argv=(
            sys.executable, "-c", report_script().decode(), "report", manifest, session.id, address,
            json.dumps(outcome), "--existing", *existing,
        ),
        run_in_workspace=True,
    )


def built_here(files: DigestContents, image: BuiltDockerImage) -> bool:
    """Whether the package (its docker-info file) made the image in this run."""
    info = next((f for f in files if f.path == image.relpath), None)
    return bool(info and json.loads(info.content).get("built"))


@rule(desc="Publishing a chromadb_lambda image", level=LogLevel.DEBUG)
async def publish_chromadb_lambda(
    request: PublishChromadbLambdaRequest,
    docker: DockerBinary,
    docker_env: DockerEnvironment,
    subsystem: ChromadbLambdaSubsystem,
    deploy: LambdaDeploySubsystem,
    distdir: DistDir,
) -> PublishProcesses:
    session = await Get(PublishSession, PublishSessionRequest())
    field_set = request.field_set
    # Not `request.packages`: with pantsd, a new run may first replay this rule with last run's
    # request, whose package is last run's image, while every Get here sees the current sources.
    # Asking for the package again (memoized: the one this run built) keeps the image and its
    # content key from the same state, so a replay can only push what this run pushes.
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(field_set.address, description_of_origin="the chromadb_lambda publish rule"),
    )
    package, key, names = await MultiGet(
        Get(BuiltPackage, EnvironmentAwarePackageRequest(ChromadbLambdaPackageFieldSet.create(wrapped.target))),
        Get(LambdaImageKey, LambdaImageKeyRequest(field_set.address)),
        Get(ImageNames, LambdaImageNamesRequest(field_set.address)),
    )
    image = next(a for a in package.artifacts if isinstance(a, BuiltDockerImage))
    skipped = not_pushed(field_set, image, names.registries)
    targets = tuple(t for t in names.registries if not t.skip_push)
    if not targets or field_set.skip_push.value:
        return PublishProcesses(skipped)

    functions = tuple(wrapped.target[ChromadbLambdaFunctionsField].value or ())
    if functions and deploy.function_check != FunctionCheck.off:
        # The preflight, before any push. Under `experimental-deploy` its deploy rule asked the same
        # read of this run (memoized: one read); a refusal there means this rule is not asked at all.
        configurations = await Get(
            FunctionConfigurations, FunctionConfigurationsRequest(field_set.address, functions, session)
        )
        verdict = preflight_verdict(
            str(field_set.address), wrapped.target[ChromadbLambdaArchitectureField].value or "", configurations,
            deploy.function_check, "publish",
        )
        for warning in verdict.warnings:
            logger.warning(warning)
        if verdict.refusal:
            refused = PublishPackages(
                names=tuple(ref for t in targets for ref in t.refs),
                process=refusal_process(verdict.refusal),
                description="(refused before the push: see above)",
            )
            return PublishProcesses([refused, *skipped])

    if subsystem.publish_base_images:
        # First, so that its layers are uploaded once and the Lambda push finds them there.
        await Get(BaseImagePush, BaseImagePushRequest(key.closure.base_address, session))
    spec = push_spec(image.image_id, key.key, key.tag, targets, docker, subsystem, session)
    # An assembled image goes over the registry API, its base's layers mounted from the base's
    # content key tag, which the engine pushes first (once per registry set: the rule is memoized).
    base_names, package_files = await MultiGet(
        Get(ImageNames, BaseImageNamesRequest(key.closure.base_address)),
        Get(DigestContents, Digest, package.digest),
    )
    assembled = await Get(
        AssembledPush,
        AssembledPushRequest(key.closure, image.image_id, base_names.key_ref, built_here(package_files, image)),
    )
    if assembled.files is not None:
        await Get(
            BaseImagePush,
            BaseImagePushRequest(key.closure.base_address, session, base_push_targets(targets, base_names)),
        )
        spec["assembled"] = assembled_spec(assembled, base_names)
    outcome = await run_push(
        spec, targets, docker, docker_env,
        f"Pushing {names.repository} ({key.tag}) to {', '.join(t.address for t in targets)}",
        assembled.files or (),
    )
    # Every chromadb_lambda target of the repo, selected by this run or not: the report drops the
    # manifest entries of any other address (a Lambda deleted or renamed since it was published).
    all_targets = await Get(AllUnexpandedTargets)
    existing = sorted(str(t.address) for t in all_targets if ChromadbLambdaPublishFieldSet.is_applicable(t))
    report = report_process(
        os.path.join(distdir.relpath, subsystem.deploy_manifest), session, str(field_set.address), outcome, existing
    )
    pushed = PublishPackages(
        names=tuple(ref for t in targets for ref in t.refs), process=report, description=push_description(outcome, targets)
    )
    return PublishProcesses([pushed, *skipped])


def rules():
    return [*collect_rules(), *ChromadbLambdaPublishFieldSet.rules()]
