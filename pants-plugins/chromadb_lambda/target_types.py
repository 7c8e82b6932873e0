"""The `chromadb_lambda` target and its fields."""
from __future__ import annotations

import re
from typing import Iterable, Optional, Tuple

from pants.backend.python.target_types import PythonResolveField
from pants.backend.python.util_rules.faas import PythonFaaSDependencies, PythonFaaSHandlerField
from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address, UnparsedAddressInputs
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    InvalidFieldException,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import help_text, softwrap


class ChromadbLambdaHandlerField(PythonFaaSHandlerField):
    # Subclassing Pants' FaaS handler field reuses its parsing, its inferred dependency on the module
    # that defines the handler, and its file-argument ownership (`pants package path/to/handler.py`).
    help = help_text(
        """
        The Lambda's entry point: `file.py:function`, relative to this BUILD file, or
        `dotted.module:function`. The module's transitive first-party imports become the image's
        build context, and the image's `CMD` is `module.function`.

        Example: `handler="handler.py:handle"`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        problem = handler_value_problem(value)
        if problem:
            raise InvalidFieldException(
                f"The `{cls.alias}` field in target {address} is {value!r}: {problem}"
            )
        return value


def handler_value_problem(value: str) -> str | None:
    """What is wrong with a `handler` value, or None: `file.py:function` below the target's folder,
    or `dotted.module:function`."""
    path, _, func = value.partition(":")
    if not func.isidentifier():
        return f"the part after `:` must be the name of a function, e.g. `{path}:handle`."
    if path.endswith(".py"):
        parts = path.split("/")
        if path.startswith("/") or ".." in parts:
            return softwrap(
                f"""
                a handler file must be in the target's folder or below it. Move the
                `chromadb_lambda` target to the BUILD file beside the handler, or name the handler by
                its module, e.g. `handler="package.module:{func}"`.
                """
            )
        if any(c in path for c in "*?[]{}"):
            return "a handler file name must not contain glob characters (`*?[]{}`): name one file."
        return None
    if not all(part.isidentifier() for part in path.split(".")):
        return f"use `file.py:{func}` (a file relative to the BUILD file) or `dotted.module:{func}`."
    return None


class ChromadbLambdaBaseImageField(StringField):
    alias = "base_image"
    required = True
    value: str
    help = help_text(
        """
        Address of the `docker_image` target this Lambda image builds `FROM`: the image that holds the
        runtime, the third-party requirements and any first-party code shared by many Lambdas.

        Files that the base's own dependencies already provide are left out of this Lambda's context.
        The base is a dependency of this target, so a change to its inputs selects this Lambda in
        `--changed-since`.

        Example: `base_image="//base:lambda-base"`.
        """
    )


def base_image_address_input(field: ChromadbLambdaBaseImageField, address: Address) -> UnparsedAddressInputs:
    """The `base_image` value as an address to resolve, relative to the target that names it."""
    return UnparsedAddressInputs(
        [field.value], owning_address=address, description_of_origin=f"the `{field.alias}` field of {address}"
    )


class ChromadbLambdaDependenciesField(PythonFaaSDependencies):
    help = help_text(
        """
        Addresses of targets the handler needs beyond what Pants infers from its imports: `resources`
        and `files` it reads, or modules it loads dynamically (`importlib.import_module(name)`).

        The handler's module and the `base_image` are inferred; you need not list them.
        """
    )


class ChromadbLambdaRepositoryField(StringField):
    alias = "repository"
    help = help_text(
        """
        The repository name of the image, as for `docker_image`: defaults to
        `[docker].default_repository` (`{name}` unless configured) and may use the placeholders
        `{name}`, `{directory}`, `{parent_directory}`, `{default_repository}` and
        `{build_args.ARG}` (from `[docker].build_args`).

        Example: `repository="receipts/{name}"`.
        """
    )


class ChromadbLambdaImageTagsField(StringSequenceField):
    alias = "image_tags"
    default = ("latest",)
    help = help_text(
        """
        Tags of the built image, as for `docker_image`. Each tag is applied to the repository
        (and, when publishing, to every registry of the `registries` field). Tags may use
        `{build_args.ARG}` (from `[docker].build_args`, e.g. `["{build_args.GIT_COMMIT}"]` with
        `GIT_COMMIT` listed there and set in the environment) and `{pants.hash}`, which for a
        Lambda is its content key.
        """
    )


class ChromadbLambdaRegistriesField(StringSequenceField):
    alias = "registries"
    default = ("<all default registries>",)
    help = help_text(
        """
        Registries to push this image to, as for `docker_image`: addresses, or `@alias` names
        from `[docker].registries`. The default pushes to every registry marked `default` there.
        """
    )


class ChromadbLambdaCacheFromField(StringSequenceField):
    alias = "cache_from"
    default = None
    help = help_text(
        """
        Images BuildKit may reuse layers from when building this image (`docker build
        --cache-from`), instead of `[lambda-image].cache_from`. `{repository}` is replaced by the
        image's repository. The base `docker_image` target takes `lambda_image_cache_from`.

        Example: `cache_from=["registry.example.com:5000/{repository}:main"]`.
        """
    )


class BaseImageCacheFromField(ChromadbLambdaCacheFromField):
    # On Pants' own `docker_image` the plugin's field carries the plugin's scope in its alias: later
    # Pants versions give `docker_image` a `cache_from` field of their own.
    alias = "lambda_image_cache_from"
    help = help_text(
        """
        Images BuildKit may reuse layers from when the chromadb_lambda plugin builds this base image
        (`docker build --cache-from`), instead of `[lambda-image].cache_from`. `{repository}` is
        replaced by the image's repository.

        Example: `lambda_image_cache_from=["registry.example.com:5000/{repository}:main"]`.
        """
    )


class ChromadbLambdaSkipPushField(BoolField):
    alias = "skip_push"
    default = False
    help = "If true, `pants publish` builds this image but does not push it."


LAMBDA_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LAMBDA_FUNCTION_ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]{1,64})$")
# An alias name: 1-128 letters, digits, `-` and `_`, not only digits (that is a version).
LAMBDA_ALIAS_RE = re.compile(r"^(?![0-9]+$)[A-Za-z0-9_-]{1,128}$")


def function_reference_problem(value: str) -> str | None:
    """What is wrong with an entry of `functions`, or None: a function name or an unqualified ARN."""
    if LAMBDA_FUNCTION_NAME_RE.match(value) or LAMBDA_FUNCTION_ARN_RE.match(value):
        return None
    if LAMBDA_FUNCTION_ARN_RE.match(value.rsplit(":", 1)[0]):
        return "name the function without a version or alias, and give the alias in `function_alias`."
    return softwrap(
        """
        give a function name (letters, digits, `-` and `_`, at most 64 characters) or a function ARN
        (`arn:aws:lambda:<region>:<account>:function:<name>`).
        """
    )


class ChromadbLambdaFunctionsField(StringSequenceField):
    alias = "functions"
    default = None
    help = help_text(
        """
        The AWS Lambda functions that run this image, by name or ARN: what `pants
        experimental-deploy` points at the image it publishes (`UpdateFunctionCode` with
        `ImageUri=<repository>@<digest>`). A function named by ARN is deployed in the ARN's region;
        a name, in the region of the AWS credential chain (`AWS_REGION`, the profile's region).

        Example: `functions=["receipt-word-polling", "arn:aws:lambda:eu-west-1:123456789012:function:word-polling"]`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[Iterable[str]], address: Address) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for item in value or ():
            problem = function_reference_problem(item)
            if problem:
                raise InvalidFieldException(f"The `{cls.alias}` field in target {address} has {item!r}: {problem}")
        return value


class ChromadbLambdaFunctionAliasField(StringField):
    alias = "function_alias"
    help = help_text(
        """
        A Lambda alias (AWS's term: a name that points at one version of a function) that `pants
        experimental-deploy` moves to the new code: after each update it publishes a version
        (`PublishVersion`) and points this alias at it (`UpdateAlias`, or `CreateAlias` when the
        function has no such alias yet). Without it, deploys update `$LATEST` only.

        Example: `function_alias="live"`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not LAMBDA_ALIAS_RE.match(value):
            raise InvalidFieldException(
                softwrap(
                    f"""
                    The `{cls.alias}` field in target {address} is {value!r}: an alias name has 1 to 128
                    letters, digits, `-` and `_`, not only digits (that names a version).
                    """
                )
            )
        return value

# AWS Lambda's names of the two architectures, and Docker's (image config, `--platform`).
LAMBDA_ARCHITECTURES = ("x86_64", "arm64")
DOCKER_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}


class ChromadbLambdaArchitectureField(StringField):
    alias = "architecture"
    default = "x86_64"
    valid_choices = LAMBDA_ARCHITECTURES
    value: str
    help = help_text(
        """
        The instruction set the function runs on, in AWS Lambda's terms: `x86_64` or `arm64`. It is
        part of the image's content key; the base image must be of this architecture (`amd64` or
        `arm64` in Docker's terms), and `pants experimental-deploy` refuses a function configured
        with the other one.
        """
    )


class ChromadbLambdaTarget(Target):
    alias = "chromadb_lambda"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        ChromadbLambdaHandlerField,
        ChromadbLambdaBaseImageField,
        ChromadbLambdaDependenciesField,
        ChromadbLambdaRepositoryField,
        ChromadbLambdaImageTagsField,
        ChromadbLambdaRegistriesField,
        ChromadbLambdaSkipPushField,
        ChromadbLambdaCacheFromField,
        ChromadbLambdaFunctionsField,
        ChromadbLambdaFunctionAliasField,
        ChromadbLambdaArchitectureField,
        PythonResolveField,
        OutputPathField,
    )
    help = help_text(
        """
        An AWS Lambda function shipped as a container image, built `FROM` a base `docker_image`.

        The image's build context holds only the first-party files the handler needs (its
        transitive imports, inferred by Pants, plus declared `resources`/`files`), minus what the
        base image already provides, with source roots stripped: kilobytes, not the repo. The
        Dockerfile is generated; `pants package` writes a docker-info JSON and a context manifest
        per image to `dist/`.

        Example:

            chromadb_lambda(
                name="word_polling",
                handler="handler.py:handle",
                base_image="//base:lambda-base",
            )
        """
    )
