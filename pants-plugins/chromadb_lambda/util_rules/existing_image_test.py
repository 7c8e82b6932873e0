"""Each branch of the "is it already there" step: up to date, stale tags moved, pulled, not found."""
from __future__ import annotations

import dataclasses
import json

import pytest
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import Process, ProcessResult
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda.testutil import DOCKER, DOCKER_ENV, KEY_TAG, LAMBDA, NAMES, lambda_subsystem
from chromadb_lambda.util_rules.engine import (
    EngineRun,
    EngineRunRequest,
    HeldRefs,
    HeldRefsRequest,
)
from chromadb_lambda.util_rules.engine_locks import EngineLockScript, EngineLockScriptRequest
from chromadb_lambda.util_rules.existing_image import (
    ExistingImage,
    ExistingImageRequest,
    answer_from_held,
    find_existing_image,
    held_refs_request,
)
from chromadb_lambda.util_rules.pull import PublishedImageRequest, PulledImage

KEY_REF = f"acme/fn:{KEY_TAG}"
RUN = EngineRun(7)


def find(held: dict[str, str], *, pull: bool = False, pulled: PulledImage = PulledImage(), adopted: str = "sha256:a"):
    processes: list[Process] = []
    pull_requests: list[PublishedImageRequest] = []

    def run(process: Process) -> ProcessResult:
        processes.append(process)
        stdout = json.dumps({"image_id": adopted, "made": False, "output": None}).encode()
        return ProcessResult(stdout, EMPTY_DIGEST, b"", EMPTY_DIGEST, EMPTY_DIGEST, None)  # type: ignore[arg-type]

    def pull_image(request: PublishedImageRequest) -> PulledImage:
        pull_requests.append(request)
        return pulled

    run_requested = []
    asked: list[HeldRefsRequest] = []

    def ask(request: HeldRefsRequest) -> HeldRefs:
        asked.append(request)
        return HeldRefs(FrozenDict((ref, held[ref]) for ref in request.refs if ref in held))

    def this_run(_: EngineRunRequest) -> EngineRun:
        run_requested.append(True)
        return RUN

    result = run_rule_with_mocks(
        find_existing_image,
        rule_args=[ExistingImageRequest(LAMBDA, NAMES), DOCKER, DOCKER_ENV, lambda_subsystem(pull_from_registries=pull)],
        mock_gets=[
            MockGet(HeldRefs, (HeldRefsRequest,), ask),
            MockGet(EngineRun, (EngineRunRequest,), this_run),
            MockGet(EngineLockScript, (EngineLockScriptRequest,), lambda _: EngineLockScript(EMPTY_DIGEST)),
            MockGet(ProcessResult, (Process,), run),
            MockGet(PulledImage, (PublishedImageRequest,), pull_image),
        ],
    )
    # The engine is asked for the image's key tag and own tags only.
    assert asked == [HeldRefsRequest((KEY_REF, "acme/fn:latest"))]
    return result, processes, pull_requests, bool(run_requested)


def test_up_to_date_reads_no_run_and_runs_nothing() -> None:
    result, processes, pulls, run = find({KEY_REF: "sha256:a", "acme/fn:latest": "sha256:a"}, pull=True)
    assert result == ExistingImage("sha256:a")
    assert processes == [] and pulls == [] and run is False


def test_stale_tags_are_moved_to_the_key_tag_image() -> None:
    result, processes, pulls, run = find({KEY_REF: "sha256:a", "acme/fn:latest": "sha256:old"}, pull=True)
    assert result == ExistingImage("sha256:a", run=RUN, retagged=True)
    [adopt] = processes
    assert adopt.description == f"Tagging {KEY_REF} as acme/fn:latest"
    spec = json.loads(adopt.argv[2])
    assert (spec["key_ref"], spec["refs"], spec["make"]) == (KEY_REF, ["acme/fn:latest"], "build")
    assert adopt.env["__CHROMADB_LAMBDA_RUN"] == "7"
    assert pulls == [] and run is True


def test_pulled_from_a_registry_when_the_engine_lacks_it() -> None:
    pulled = PulledImage("sha256:p", "reg.example.com/acme/fn:" + KEY_TAG)
    result, processes, pulls, _ = find({"acme/fn:latest": "sha256:old"}, pull=True, pulled=pulled)
    assert result == ExistingImage("sha256:p", run=RUN, pulled_from="reg.example.com/acme/fn:" + KEY_TAG)
    assert processes == []
    assert pulls == [PublishedImageRequest(LAMBDA, NAMES, RUN)]


def test_not_found_anywhere_gives_the_run_to_build_in() -> None:
    assert find({}, pull=True)[0] == ExistingImage(None, run=RUN)


def test_registries_are_not_asked_without_pull_from_registries() -> None:
    result, _, pulls, _ = find({}, pull=False, pulled=PulledImage("sha256:p", "x"))
    assert result == ExistingImage(None, run=RUN) and pulls == []



def test_held_refs_request_names_the_key_tag_then_the_own_tags_once() -> None:
    assert held_refs_request(NAMES) == HeldRefsRequest((KEY_REF, "acme/fn:latest"))
    names = dataclasses.replace(NAMES, refs=("acme/fn:latest", "acme/fn:v1", "acme/fn:latest"))
    assert held_refs_request(names) == HeldRefsRequest((KEY_REF, "acme/fn:latest", "acme/fn:v1"))


@pytest.mark.parametrize(
    "held, pull, answer",
    [
        # Up to date: the key tag and the own tag on one image.
        ({KEY_REF: "sha256:a", "acme/fn:latest": "sha256:a"}, True, ExistingImage("sha256:a")),
        # Nothing under the key tag and no registry to pull from: build (the own tag elsewhere moves then).
        ({}, False, ExistingImage(None)),
        ({"acme/fn:latest": "sha256:old"}, False, ExistingImage(None)),
        # The step has something to do: move the own tag, or look in the registries.
        ({KEY_REF: "sha256:a", "acme/fn:latest": "sha256:old"}, False, None),
        ({KEY_REF: "sha256:a"}, False, None),
        ({}, True, None),
    ],
)
def test_answer_from_held_is_the_step_answer_when_held_refs_alone_tell_it(
    held: dict[str, str], pull: bool, answer: ExistingImage | None
) -> None:
    assert answer_from_held(HeldRefs(FrozenDict(held)), NAMES, pull) == answer
    if answer is not None:
        # The step itself gives the same image (it adds the run it asked for when it finds nothing).
        assert find(held, pull=pull)[0].image_id == answer.image_id
