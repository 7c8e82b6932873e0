"""Options of the `[lambda-image]` scope (the target alias `chromadb_lambda` cannot share its name)."""
from __future__ import annotations

from enum import Enum

from pants.option.option_types import BoolOption, EnumOption, IntOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class MissingThirdPartyBehavior(Enum):
    error = "error"
    warning = "warning"


class ChromadbLambdaSubsystem(Subsystem):
    options_scope = "lambda-image"
    help = help_text(
        """
        Options for `chromadb_lambda` targets: AWS Lambda container images whose build context Pants
        infers from the handler's imports.
        """
    )

    task_root = StrOption(
        default="/var/task",
        help=help_text(
            """
            Directory in the image that receives the context files and is the working directory of
            the handler: AWS Lambda's `LAMBDA_TASK_ROOT`.
            """
        ),
    )
    missing_third_party = EnumOption(
        default=MissingThirdPartyBehavior.error,
        help=help_text(
            """
            What to do when a handler's closure uses a third-party requirement that the base image
            does not install (so the image would fail with `ImportError` at run time): `error`
            stops the build; `warning` logs and builds anyway.
            """
        ),
    )
    inline_cache = BoolOption(
        default=True,
        help=help_text(
            """
            Write BuildKit's inline cache metadata into every image built (the build arg
            `BUILDKIT_INLINE_CACHE=1`), so that a pushed image can serve as a layer cache for builds on
            other machines (see `cache_from`). Costs nothing in image content.
            """
        ),
    )
    cache_from = StrListOption(
        default=[],
        help=help_text(
            """
            Images BuildKit may reuse layers from (`docker build --cache-from`), for the Lambda images
            and their base. `{repository}` is replaced by each image's repository. A new CI runner
            with an empty engine then pulls unchanged layers from the registry instead of rebuilding
            them. Images that do not exist yet are skipped by BuildKit.

            Example: `cache_from = ["registry.example.com:5000/{repository}:latest"]`.
            """
        ),
    )
    warn_dynamic_imports = BoolOption(
        default=True,
        help=help_text(
            """
            Warn about `importlib.import_module(name)` / `__import__(name)` calls with a computed name
            in a handler's closure (file and line): no inference can see what they load, so those
            modules must be declared in the target's `dependencies`.
            """
        ),
    )
    context_size_warning = IntOption(
        default=5 * 1024 * 1024,
        help=help_text(
            """
            Warn, with the largest files, when a Lambda's build context exceeds this many bytes: a
            closure that large usually pulls in something by mistake. 0 turns the warning off.
            """
        ),
    )
