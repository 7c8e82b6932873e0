"""The `chromadb_lambda` target and its fields."""
from __future__ import annotations

from typing import Optional

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
