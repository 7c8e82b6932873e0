"""The `chromadb_lambda` backend: AWS Lambda container images with minimal, inferred build contexts."""
from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.python.util_rules import faas

from chromadb_lambda import pants_compat
from chromadb_lambda.goals import deploy, lambda_context, package, prune, publish, run_lambda, tailor
from chromadb_lambda.goals.run_lambda import ChromadbLambdaTimeoutField
from chromadb_lambda.util_rules import (
    architecture,
    assemble,
    base_image,
    closure,
    content_keys,
    context,
    dependency_inference,
    engine,
    engine_locks,
    existing_image,
    image_names,
    image_tag_collisions,
    import_check,
    lambda_image,
    pull,
    push,
    scan,
)
from chromadb_lambda.target_types import BaseImageCacheFromField, ChromadbLambdaTarget


def rules():
    # Pants loads backends before each run's session: the fixes are in place before any Get, any
    # comparison of two runs' SessionValues and the next run's loading of backends (pants_compat.py).
    pants_compat.fix_collection_hash()
    pants_compat.compare_sessions_by_their_inputs()
    pants_compat.reuse_build_configuration()
    return [
        # The base `docker_image` takes `lambda_image_cache_from`: the plugin builds it.
        DockerImageTarget.register_plugin_field(BaseImageCacheFromField),
        # `timeout` (what `pants run` allows the handler) lives with the run goal.
        ChromadbLambdaTarget.register_plugin_field(ChromadbLambdaTimeoutField),
        *faas.rules(),
        *architecture.rules(),
        *assemble.rules(),
        *base_image.rules(),
        *closure.rules(),
        *content_keys.rules(),
        *context.rules(),
        *dependency_inference.rules(),
        *deploy.rules(),
        *engine.rules(),
        *engine_locks.rules(),
        *existing_image.rules(),
        *lambda_context.rules(),
        *image_names.rules(),
        *image_tag_collisions.rules(),
        *import_check.rules(),
        *lambda_image.rules(),
        *package.rules(),
        *prune.rules(),
        *publish.rules(),
        *pull.rules(),
        *push.rules(),
        *run_lambda.rules(),
        *scan.rules(),
        *tailor.rules(),
    ]


def target_types():
    return [ChromadbLambdaTarget]
