"""Each branch of looking for a published image: pulled, adopted from a concurrent run, absent,
the pull process crashing (a warning: the image is built instead), no registry."""
from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest
from pants.engine.process import FallibleProcessResult, Process
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from chromadb_lambda.testutil import DOCKER, DOCKER_ENV, KEY_TAG, LAMBDA, NAMES, lambda_subsystem, process_result
from chromadb_lambda.util_rules.engine import EngineRun
from chromadb_lambda.util_rules.engine_locks import EngineLockScript, EngineLockScriptRequest
from chromadb_lambda.util_rules.pull import PublishedImageRequest, PulledImage, pull_published_image

RUN = EngineRun(4)
SOURCE = f"reg.example.com/acme/fn:{KEY_TAG}"


def pull(stdout: str, exit_code: int = 0, names=NAMES):
    seen: dict = {"processes": []}

    def run(process: Process) -> FallibleProcessResult:
        seen["processes"].append(process)
        return process_result(stdout, exit_code, stderr="Traceback ...\nboom")

    def create(request: CreateDigest) -> Digest:
        seen.update({f.path: f.content for f in request})  # type: ignore[union-attr]
        return EMPTY_DIGEST

    result = run_rule_with_mocks(
        pull_published_image,
        rule_args=[PublishedImageRequest(LAMBDA, names, RUN), DOCKER, DOCKER_ENV, lambda_subsystem(pull_from_registries=True)],
        mock_gets=[
            MockGet(EnvironmentVars, (EnvironmentVarsRequest,), lambda _: EnvironmentVars({})),
            MockGet(Digest, (CreateDigest,), create),
            MockGet(EngineLockScript, (EngineLockScriptRequest,), lambda _: EngineLockScript(EMPTY_DIGEST)),
            MockGet(FallibleProcessResult, (Process,), run),
        ],
    )
    return result, seen


def locked(image_id: str | None, made: bool, output: dict | None) -> str:
    return json.dumps({"image_id": image_id, "made": made, "output": output})


def test_pulled_under_the_locks_of_its_local_tags() -> None:
    output = {"pulled": {"address": "reg.example.com", "ref": SOURCE, "digest": "sha256:d", "image_id": "sha256:p"}, "warnings": []}
    result, seen = pull(locked("sha256:p", True, output))
    assert result == PulledImage("sha256:p", SOURCE)
    [process] = seen["processes"]
    lock = json.loads(process.argv[2])
    assert (lock["key_ref"], lock["refs"], lock["make"]) == (NAMES.key_ref, list(NAMES.local_refs), "pull")
    assert process.env["__CHROMADB_LAMBDA_RUN"] == "4"
    spec = json.loads(seen["spec.json"])
    assert (spec["key_tag"], spec["local_refs"]) == (KEY_TAG, list(NAMES.local_refs))
    assert [r["address"] for r in spec["registries"]] == ["reg.example.com"]


def test_made_meanwhile_by_a_concurrent_run_is_adopted_without_a_source() -> None:
    assert pull(locked("sha256:theirs", False, None))[0] == PulledImage("sha256:theirs")


def test_absent_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    warnings = [{"address": "reg.example.com", "error": "denied"}]
    with caplog.at_level(logging.WARNING):
        assert pull(locked(None, False, {"pulled": None, "warnings": warnings}))[0] == PulledImage()
    assert f"lambdas/fn:fn: could not pull {NAMES.key_ref} from reg.example.com, building it instead: denied" in caplog.text


def test_a_crashed_pull_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert pull("", exit_code=1)[0] == PulledImage()
    assert "the pull process failed (exit code 1): boom" in caplog.text


def test_no_registry_runs_nothing() -> None:
    result, seen = pull("", names=dataclasses.replace(NAMES, registries=()))
    assert result == PulledImage() and seen["processes"] == []
