"""`pants experimental-deploy` of `chromadb_lambda` targets: publish, then point the target's Lambda
functions at the published image by digest.

Pants' deploy goal (pants/core/goals/deploy.py) runs, for every target given, the publish processes
of its `publish_dependencies` first (here: the target itself, through this plugin's publish rule, so
the deploy manifest in `dist/` records this content key's digest), then, only if every publish
succeeded, the `DeployProcess` of each target, one after another. A target's process is
`scripts/deploy_functions.py`, which deploys the target's functions concurrently and reports each by
name (see docs/deploy.md).

The goal asks every target's `DeployProcess` (this rule) before it publishes anything, so this rule
runs the preflight (util_rules/function_check.py): a target with a function of another architecture
gets no publish dependency and a process that prints the refusal and fails, so its image is not
pushed and the deploy manifest keeps its entry; the other targets publish and deploy as usual.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from pants.core.goals.deploy import DeployFieldSet, DeployProcess
from pants.core.util_rules.distdir import DistDir
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.process import InteractiveProcess
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import Target, WrappedTarget, WrappedTargetRequest
from pants.engine.unions import UnionRule
from pants.option.option_types import BoolOption, EnumOption, IntOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text, softwrap

from chromadb_lambda.scripts import script_source
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import (
    ChromadbLambdaArchitectureField,
    ChromadbLambdaBaseImageField,
    ChromadbLambdaFunctionAliasField,
    ChromadbLambdaFunctionsField,
    ChromadbLambdaHandlerField,
    ChromadbLambdaSkipPushField,
)
from chromadb_lambda.util_rules import function_check
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.function_check import (
    DEPLOY_SCRIPT,
    LAMBDA_ENV_VARS,
    FunctionCheck,
    FunctionConfigurations,
    FunctionConfigurationsRequest,
    preflight_verdict,
    refusal_process,
)
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.push import PublishSession, PublishSessionRequest
from chromadb_lambda.util_rules.registries import PushTarget


class LambdaDeploySubsystem(Subsystem):
    options_scope = "lambda-deploy"
    help = help_text(
        """
        Options of `pants experimental-deploy` for `chromadb_lambda` targets: what points the
        targets' Lambda functions (their `functions` field) at the images `pants publish` pushes,
        and the check of those functions that `pants publish` runs before it pushes.
        """
    )

    dry_run = BoolOption(
        default=False,
        help=help_text(
            """
            Print the plan and change nothing: for each function, whether it would be updated (from
            which image to which), skipped (it already runs the image) or refused (and why). Nothing
            is published either; an image not published yet is named by its content key tag.

            Example: `pants --lambda-deploy-dry-run experimental-deploy lambdas::`.
            """
        ),
    )
    max_concurrency = IntOption(
        default=8,
        help="How many functions of one target are deployed at once (threads of the deploy process).",
    )
    function_check = EnumOption(
        default=FunctionCheck.warn,
        help=help_text(
            """
            The preflight of `pants publish` and `pants experimental-deploy` for targets with a
            `functions` field: before anything is pushed, read each function's configuration
            (`lambda:GetFunctionConfiguration`, the AWS credential chain of `pants`) and refuse a
            target whose `architecture` field is not the function's.

            A function that cannot be read (access denied, no such function, no credentials):
            `warn` publishes and logs a warning that names the reason (for an identity that may
            push to ECR and nothing else); `strict` refuses to publish the target; `off` reads no
            function before the push (then `experimental-deploy` refuses a mismatched function only
            in its deploy step, after the push). `experimental-deploy` reports a function it cannot
            read by name in its deploy step, as before, whatever this option says.

            Example: `pants --lambda-deploy-function-check=strict publish lambdas::`.
            """
        ),
    )


class DeployConfigurationError(Exception):
    """A target that cannot be deployed as configured; the message names the field that fixes it."""


@dataclass(frozen=True)
class ChromadbLambdaDeployFieldSet(DeployFieldSet):
    required_fields = (ChromadbLambdaHandlerField, ChromadbLambdaBaseImageField, ChromadbLambdaFunctionsField)

    functions: ChromadbLambdaFunctionsField
    function_alias: ChromadbLambdaFunctionAliasField
    architecture: ChromadbLambdaArchitectureField
    skip_push: ChromadbLambdaSkipPushField

    @classmethod
    def opt_out(cls, tgt: Target) -> bool:
        # A Lambda image no function runs (yet): `experimental-deploy lambdas::` leaves it alone.
        return not tgt[ChromadbLambdaFunctionsField].value


def deploy_registries(field_set: ChromadbLambdaDeployFieldSet, targets: tuple[PushTarget, ...]) -> tuple[str, ...]:
    """The registries a deploy may take the image from: the ECR registries the target publishes to.

    Lambda runs images from Amazon ECR only (a registry of `[lambda-image].ecr_registries` counts:
    an emulator or a proxy of ECR).
    """
    address = field_set.address
    if field_set.skip_push.value:
        raise DeployConfigurationError(
            softwrap(
                f"""
                {address} has `skip_push=True`, so `pants publish` never pushes its image and no
                function can run it: remove `skip_push`, or the `functions` field, from {address}.
                """
            )
        )
    registries = tuple(t.address for t in targets if t.ecr is not None and not t.skip_push)
    if not registries:
        pushed = ", ".join(t.address for t in targets) or "no registry"
        raise DeployConfigurationError(
            softwrap(
                f"""
                {address} publishes to {pushed}, and AWS Lambda runs images from Amazon ECR only: add
                an ECR registry to its `registries` field (or mark one `default` in
                `[docker].registries`); a registry that fronts ECR goes in `[lambda-image].ecr_registries`.
                """
            )
        )
    return registries


def deploy_spec(
    field_set: ChromadbLambdaDeployFieldSet, key: LambdaImageKey, registries: tuple[str, ...], manifest: str,
    deploy: LambdaDeploySubsystem,
) -> dict[str, Any]:
    return {
        "address": str(field_set.address),
        "functions": list(field_set.functions.value or ()),
        "alias": field_set.function_alias.value,
        "architecture": field_set.architecture.value,
        "content_key": key.key,
        "key_tag": key.tag,
        "registries": list(registries),
        "manifest": manifest,
        "dry_run": deploy.dry_run,
        "max_workers": deploy.max_concurrency,
    }


def deploy_process(spec: dict[str, Any], aws_env: EnvironmentVars) -> InteractiveProcess:
    # In the workspace: it reads the deploy manifest the publish of this run just merged in dist/.
    # Credentials reach it through the environment only; the spec on its argv holds none.
    return InteractiveProcess(
        argv=(sys.executable, "-c", script_source(DEPLOY_SCRIPT).decode(), json.dumps(spec, sort_keys=True)),
        env={**aws_env, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        run_in_workspace=True,
    )


@rule(desc="Planning the deploy of a chromadb_lambda image")
async def deploy_chromadb_lambda(
    field_set: ChromadbLambdaDeployFieldSet,
    subsystem: ChromadbLambdaSubsystem,
    deploy: LambdaDeploySubsystem,
    distdir: DistDir,
) -> DeployProcess:
    wrapped, key, names, aws_env = await MultiGet(
        Get(
            WrappedTarget,
            WrappedTargetRequest(field_set.address, description_of_origin="the chromadb_lambda deploy rule"),
        ),
        Get(LambdaImageKey, LambdaImageKeyRequest(field_set.address)),
        Get(ImageNames, LambdaImageNamesRequest(field_set.address)),
        Get(EnvironmentVars, EnvironmentVarsRequest(LAMBDA_ENV_VARS)),
    )
    registries = deploy_registries(field_set, names.registries)
    address = str(field_set.address)
    functions = tuple(field_set.functions.value or ())
    if not deploy.dry_run and deploy.function_check != FunctionCheck.off:
        # Before the goal publishes anything (see the module docstring). A dry run publishes nothing
        # and its deploy step reads every function anyway.
        session = await Get(PublishSession, PublishSessionRequest())
        configurations = await Get(
            FunctionConfigurations, FunctionConfigurationsRequest(field_set.address, functions, session)
        )
        verdict = preflight_verdict(
            address, field_set.architecture.value or "", configurations, deploy.function_check, "experimental-deploy"
        )
        if verdict.refusal:
            return DeployProcess(
                name=address,
                process=refusal_process(verdict.refusal),
                publish_dependencies=(),
                description=", ".join(functions) + " (refused before the push: see above)",
            )
    manifest = os.path.join(distdir.relpath, subsystem.deploy_manifest)
    spec = deploy_spec(field_set, key, registries, manifest, deploy)
    return DeployProcess(
        name=address,
        process=deploy_process(spec, aws_env),
        # A dry run publishes nothing; a deploy publishes first, and the goal deploys only if every
        # publish succeeded.
        publish_dependencies=() if deploy.dry_run else (wrapped.target,),
        # Pants prints `✓ <target> deployed to <description>`.
        description=", ".join(spec["functions"]) + (" (dry run: nothing changed)" if deploy.dry_run else ""),
    )


def rules():
    return [*collect_rules(), *function_check.rules(), UnionRule(DeployFieldSet, ChromadbLambdaDeployFieldSet)]
