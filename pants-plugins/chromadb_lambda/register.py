"""The `chromadb_lambda` backend: AWS Lambda container images with minimal, inferred build contexts."""
from pants.backend.docker.target_types import DockerImageTarget
from pants.backend.python.util_rules import faas

from chromadb_lambda import (
    assemble,
    base_image,
    closure,
    context,
    dependency_inference,
    engine,
    explain,
    image_names,
    import_check,
    package,
    prune,
    publish,
    pull,
    run_lambda,
    scan,
    tailor,
)
from chromadb_lambda.run_lambda import ChromadbLambdaTimeoutField
from chromadb_lambda.target_types import BaseImageCacheFromField, ChromadbLambdaTarget


def rules():
    return [
        # The base `docker_image` takes `lambda_image_cache_from`: the plugin builds it.
        DockerImageTarget.register_plugin_field(BaseImageCacheFromField),
        # `timeout` (what `pants run` allows the handler) lives with the run goal.
        ChromadbLambdaTarget.register_plugin_field(ChromadbLambdaTimeoutField),
        *faas.rules(),
        *assemble.rules(),
        *base_image.rules(),
        *closure.rules(),
        *context.rules(),
        *dependency_inference.rules(),
        *engine.rules(),
        *explain.rules(),
        *image_names.rules(),
        *import_check.rules(),
        *package.rules(),
        *prune.rules(),
        *publish.rules(),
        *pull.rules(),
        *run_lambda.rules(),
        *scan.rules(),
        *tailor.rules(),
    ]


def target_types():
    return [ChromadbLambdaTarget]
