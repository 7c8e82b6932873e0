"""Options of the `[lambda-image]` scope (the target alias `chromadb_lambda` cannot share its name)."""
from __future__ import annotations

from enum import Enum

from pants.option.option_types import BoolOption, EnumOption, IntOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class MissingThirdPartyBehavior(Enum):
    error = "error"
    warning = "warning"


class LambdaImageBuilder(Enum):
    assembler = "assembler"
    docker_build = "docker-build"


class EcrTagMutability(Enum):
    MUTABLE = "MUTABLE"
    IMMUTABLE = "IMMUTABLE"


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
    builder = EnumOption(
        default=LambdaImageBuilder.assembler,
        help=help_text(
            """
            How a Lambda image is made from its base and closure.

            `assembler`: the plugin writes the image itself, from the closure's files in Pants and the
            base's config (`docker image inspect` of the base's id), and `docker load`s it: one layer
            of the closure's files under the task root (sorted, mtime 0, owner root, modes 0644/0755),
            then the base's config with this Lambda's `WorkingDir`, `LAMBDA_TASK_ROOT` and `Cmd`, and a
            fixed creation time. The same closure on the same base image gives the same image id on
            any machine, path, user, umask or time zone. Only the new layer is loaded: the engine
            already holds the base's.

            `docker-build`: `docker build` of the generated Dockerfile (`FROM` the base, `COPY`,
            `WORKDIR`, `ENV`, `CMD`) by the engine's BuildKit, as Pants' `docker_image` does; image ids
            then differ between engines. Use it for images the assembler cannot express (it stops
            with an error naming this option): a base with `ONBUILD` triggers, a base that is not a
            Linux image, or to get BuildKit's inline cache (`inline_cache`, `cache_from`, which the
            assembler does not use). Switching builders changes every Lambda's content key, so the
            images are made again.
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
    pull_from_registries = BoolOption(
        default=False,
        help=help_text(
            """
            Before building a Lambda image the engine does not hold, ask the registries it publishes
            to (its `registries` field, resolved as `pants publish` does) for its content key tag
            (`ck-...`), and pull the image from the first registry that has it instead of building
            it. Content keys are equal on every machine for one commit, so a CI runner pulls what
            another runner published, and the image it gets is the published one (same digest).

            The base image is looked up the same way, by its content key tag in the base target's
            registries, when a Lambda image must be built (see `publish_base_images`). A registry that
            cannot be asked (down, credentials refused) is reported as a warning and the image is
            built. ECR registries authenticate as for `pants publish`. Off by default: `pants
            package` then never touches a registry.
            """
        ),
    )
    publish_base_images = BoolOption(
        default=False,
        help=help_text(
            """
            With `pants publish` of Lambda images, also push their base `docker_image` under its
            content key tag (`<repository>:ck-...`) to the base target's registries (its `registries`
            field, by default every default registry), even when the base has `skip_push`: its layers
            are in the Lambda images already, so this adds one image config and one manifest. Then a
            runner that must build a Lambda (with `pull_from_registries`) pulls the base instead of
            building it. Only a base the engine holds is pushed; a failure is a warning.
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
    check_handler_import = BoolOption(
        default=True,
        help=help_text(
            """
            After a Lambda image is built (or found up to date, or pulled), import its handler inside
            it as the Lambda runtime does, and check that the handler is a function: `docker run
            --network none` of the image with `python3`, the task root first on `sys.path`, no AWS
            credentials and no environment beyond the image's own. This proves the inferred context
            is sufficient.

            A first-party module missing from the image (e.g. one loaded by
            `importlib.import_module` with a computed name, which inference cannot see) fails the
            build, naming the file and line that imports it and the `dependencies` to declare; any
            other `ImportError` (a module, a name or a native library the base image lacks) fails it
            too (see `missing_third_party`), as does code the image's Python cannot compile; any
            other exception at import (a missing environment variable, no network) is a warning. The verdict is cached per image
            id, so an unchanged image runs no container, and it is recorded as `import_check` in the
            docker-info JSON. Turn it off for images that cannot run `python3` on this engine (e.g.
            another CPU architecture), or to package a Lambda whose handler the image cannot import.
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

    ecr_registries = StrListOption(
        default=[],
        help=help_text(
            """
            Registries (addresses or `@alias` names from `[docker].registries`) to authenticate as
            Amazon ECR although their address is not `<account>.dkr.ecr.<region>.amazonaws.com`
            (e.g. a pull-through proxy or an ECR emulator). ECR-shaped addresses need no entry.

            `pants publish` gets a token with boto3 (`ecr:GetAuthorizationToken`; the standard AWS
            credential chain, `AWS_PROFILE`, `AWS_ENDPOINT_URL_ECR`) and hands it to Docker through a
            private temporary config, removed after the push.

            Example: `ecr_registries = ["@ecr-proxy"]`.
            """
        ),
    )
    ecr_create_repositories = BoolOption(
        default=True,
        help=help_text(
            """
            Create a missing ECR repository before the first push to it (`ecr:CreateRepository`),
            with `[lambda-image].ecr_scan_on_push` and `[lambda-image].ecr_tag_mutability`.
            """
        ),
    )
    ecr_scan_on_push = BoolOption(
        default=True,
        help="`imageScanningConfiguration.scanOnPush` of ECR repositories that `pants publish` creates.",
    )
    ecr_tag_mutability = EnumOption(
        default=EcrTagMutability.MUTABLE,
        help=help_text(
            """
            `imageTagMutability` of ECR repositories that `pants publish` creates. `IMMUTABLE`
            repositories refuse to move a tag such as `latest`: use it only with tags that name one
            content (e.g. `image_tags=["{build_args.GIT_COMMIT}"]`).
            """
        ),
    )
    push_attempts = IntOption(
        default=3,
        help=help_text(
            """
            How many times `pants publish` tries a push that fails transiently (HTTP 5xx, connection
            refused or reset, timeouts), waiting 1, 2, 4... seconds in between. Refused credentials
            are never retried.
            """
        ),
    )
    deploy_manifest = StrOption(
        default="lambda-images.deploy.json",
        help=help_text(
            """
            Where `pants publish` writes its deploy manifest, relative to the dist dir: each published
            `chromadb_lambda` target mapped to its `repository@sha256:digest` and tags per registry,
            for IaC (Pulumi, Terraform, CDK) to pin digests.

            Each publish merges into the file (written atomically, under a lock): a target's entry
            under `images` holds `image`, `content_key`, `content_key_tag` (of its latest successful
            push) and, per registry address under `registries`, the last image published there
            (`image`, `digest`, `tags`, `status`, `media_type`, `content_key`, `session`,
            `recorded_at`). A failed push keeps that record and adds `errors.<registry>` (`error`,
            `at`, `session`), cleared by the next success; a target that never published has its
            failures under the top-level `failures` instead. Targets a run did not select (e.g.
            `--changed-since`) keep their entries; entries of addresses that are no longer
            `chromadb_lambda` targets are dropped. See docs/publishing.md.
            """
        ),
    )

    tailor = BoolOption(
        default=True,
        help=help_text(
            """
            If true, `pants tailor` adds a `chromadb_lambda` target to every folder whose
            `[lambda-image].tailor_handler_file` defines one of `[lambda-image].tailor_handler_functions`
            and that no `chromadb_lambda` target points at yet.
            """
        ),
    )
    tailor_handler_file = StrOption(
        default="handler.py",
        help="The file name `pants tailor` recognises as a Lambda handler module, e.g. `lambda_function.py`.",
    )
    tailor_handler_functions = StrListOption(
        default=["handler", "handle", "lambda_handler"],
        help=help_text(
            """
            Function names `pants tailor` accepts as a handler, in order of preference: the first one
            the handler module defines at top level becomes `handler="<file>:<function>"`.
            """
        ),
    )
    tailor_base_image = StrOption(
        default=None,
        help=help_text(
            """
            The `base_image` of the targets `pants tailor` adds, e.g. `//base:lambda-base`. Unset, it
            is the base every existing `chromadb_lambda` target uses, when they all use the same one;
            otherwise `pants tailor` names the handlers it skipped.
            """
        ),
    )
