"""The assembler rule with the engine mocked: what it loads, through which process, and its errors."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.engine.fs import Digest, DigestContents, FileContent
from pants.engine.process import ProcessCacheScope
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.testutil import BASE_IDENTITY, KEY, LAMBDA, NAMES
from chromadb_lambda.util_rules.assemble import (
    AssembledMember,
    AssembledMemberRequest,
    BaseImageConfig,
    BaseImageConfigRequest,
    assemble_member,
    base_inspect_process,
)
from chromadb_lambda.util_rules.base_image import BuiltBaseImage, BuiltBaseImageRequest
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest

DOCKER = DockerBinary("/bin/docker", "sha")
ENV = DockerEnvironment(FrozenDict({"DOCKER_HOST": "unix:///d.sock"}))
FILES = DigestContents([FileContent("fn/handler.py", b"def handle(e, c): pass\n")])
BASE = {
    "Architecture": "amd64",
    "Os": "linux",
    "Config": {"Env": ["PATH=/bin"], "Entrypoint": ["python3", "-m", "awslambdaric"]},
    "RootFS": {"Type": "layers", "Layers": ["sha256:" + "a" * 64]},
}
BUILT_BASE = BuiltBaseImage(identity=BASE_IDENTITY, image_id="sha256:base", ref=BASE_IDENTITY.ref, built=False)


def assemble(base: dict[str, Any] = BASE) -> AssembledMember:
    subsystem = create_subsystem(ChromadbLambdaSubsystem, task_root="/var/task")
    return run_rule_with_mocks(
        assemble_member,
        rule_args=[AssembledMemberRequest(LAMBDA), subsystem],
        mock_gets=[
            MockGet(output_type=LambdaImageKey, input_types=(LambdaImageKeyRequest,), mock=lambda _: KEY),
            MockGet(output_type=ImageNames, input_types=(LambdaImageNamesRequest,), mock=lambda _: NAMES),
            MockGet(output_type=BuiltBaseImage, input_types=(BuiltBaseImageRequest,), mock=lambda _: BUILT_BASE),
            MockGet(output_type=DigestContents, input_types=(Digest,), mock=lambda _: FILES),
            MockGet(output_type=BaseImageConfig, input_types=(BaseImageConfigRequest,),
                    mock=lambda r: BaseImageConfig(json.dumps(base)) if r.image_id == "sha256:base" else None),
        ],
    )


def test_the_image_id_is_the_sha256_of_the_config_made_from_the_base_and_the_layer() -> None:
    member = assemble()
    assert member.error is None and member.layer is not None
    assert member.image_id == "sha256:" + hashlib.sha256(member.config).hexdigest()
    assert (member.key_ref, member.refs, member.base_image_id) == (NAMES.key_ref, NAMES.local_refs, "sha256:base")
    config = json.loads(member.config)
    assert config["config"]["Cmd"] == ["fn.handler.handle"]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + "a" * 64, member.layer.diff_id]


def test_a_base_with_onbuild_triggers_asks_for_the_docker_build_builder() -> None:
    member = assemble(base={**BASE, "Config": {"OnBuild": ["RUN make"]}})
    assert member.image_id is None
    assert member.error is not None
    assert member.error.startswith("Cannot assemble the image of lambdas/fn:fn: the base image has ONBUILD")
    assert '`[lambda-image].builder = "docker-build"`' in member.error


def test_base_inspect_is_cached_and_prints_only_config_fields() -> None:
    process = base_inspect_process(DOCKER, "sha256:base", ENV.env)
    assert process.cache_scope == ProcessCacheScope.SUCCESSFUL
    assert process.argv[:4] == ("/bin/docker", "image", "inspect", "--format") and process.argv[-1] == "sha256:base"
    assert "RepoTags" not in process.argv[4] and "Metadata" not in process.argv[4]
