"""Each branch of `pants package` of a chromadb_lambda, with the steps below it mocked: up to date,
stale tags moved, pulled, made (assembled or built), made meanwhile by a concurrent run."""
from __future__ import annotations

import json

from pants.backend.docker.package_types import BuiltDockerImage
from pants.core.goals.package import BuiltPackageArtifact
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

import pytest

from chromadb_lambda.goals.package import (
    ChromadbLambdaPackageFieldSet,
    LambdaContextManifest,
    LambdaContextManifestRequest,
    LambdaImageState,
    LambdaImageStateRequest,
    held_import_verdict,
    lambda_context_manifest,
    lambda_image_state,
    package_chromadb_lambda,
)
from chromadb_lambda.testutil import BASE_IDENTITY, CLOSURE, KEY, KEY_TAG, LAMBDA, NAMES, lambda_subsystem, lambda_target
from chromadb_lambda.util_rules.content_keys import LambdaImageKey, LambdaImageKeyRequest
from chromadb_lambda.util_rules.engine import EngineRun, EngineRunRequest, HeldRefs, HeldRefsRequest
from chromadb_lambda.util_rules.existing_image import ExistingImage, ExistingImageRequest
from chromadb_lambda.util_rules.image_names import ImageNames, LambdaImageNamesRequest
from chromadb_lambda.util_rules.image_tag_collisions import AllLambdaImageRefs, AllLambdaImageRefsRequest
from chromadb_lambda.util_rules.import_check import LambdaImportCheck, LambdaImportCheckRequest
from chromadb_lambda.util_rules.lambda_image import MadeLambdaImage, MadeLambdaImageRequest

RUN = EngineRun(5)
# `[lambda-image].check_handler_import` as it defaults.
CHECKED = {"check_handler_import": True}


# What the engine holds when the image is up to date: its key tag and its own tag on one image.
HELD_UP_TO_DATE = HeldRefs(FrozenDict({"acme/fn:latest": "sha256:held", f"acme/fn:{KEY_TAG}": "sha256:held"}))
# A build (or a tag move, or a pull) is due: `latest` points elsewhere.
HELD_STALE = HeldRefs(FrozenDict({"acme/fn:latest": "sha256:old", f"acme/fn:{KEY_TAG}": "sha256:held"}))


def package(
    existing: ExistingImage | None, made: MadeLambdaImage | None = None, held: HeldRefs = HELD_STALE, **options
):
    written: dict[str, bytes] = {}
    requests: dict = {"made": [], "checked": [], "held": [], "existing": 0, "run": 0, "state": [], "states": []}

    def held_refs(request: HeldRefsRequest) -> HeldRefs:
        requests["held"].append(request)
        return held

    def existing_image(_: ExistingImageRequest) -> ExistingImage:
        requests["existing"] += 1
        assert existing is not None, "ExistingImage was requested"
        return existing

    def this_run(_: EngineRunRequest) -> EngineRun:
        requests["run"] += 1
        return RUN

    def create(request: CreateDigest) -> Digest:
        written.update({f.path: f.content for f in request})  # type: ignore[union-attr]
        return EMPTY_DIGEST

    def make(request: MadeLambdaImageRequest) -> MadeLambdaImage:
        requests["made"].append(request)
        assert made is not None
        return made

    def check(request: LambdaImportCheckRequest) -> LambdaImportCheck:
        requests["checked"].append(request.image_id)
        return LambdaImportCheck("passed")

    subsystem = lambda_subsystem(**{**CHECKED, **options})
    names_key_refs = [
        MockGet(ImageNames, (LambdaImageNamesRequest,), lambda _: NAMES),
        MockGet(LambdaImageKey, (LambdaImageKeyRequest,), lambda _: KEY),
        MockGet(AllLambdaImageRefs, (AllLambdaImageRefsRequest,), lambda _: AllLambdaImageRefs(FrozenDict())),
    ]

    def manifest(request: LambdaContextManifestRequest) -> LambdaContextManifest:
        return run_rule_with_mocks(
            lambda_context_manifest,
            rule_args=[request, subsystem],
            mock_gets=[MockGet(LambdaImageKey, (LambdaImageKeyRequest,), lambda _: KEY)],
        )

    def state(request: LambdaImageStateRequest) -> LambdaImageState:
        # The engine half, run with its own steps mocked.
        requests["state"].append(request)
        requests["states"].append(run_rule_with_mocks(
            lambda_image_state,
            rule_args=[request, subsystem],
            mock_gets=[
                *names_key_refs,
                MockGet(LambdaContextManifest, (LambdaContextManifestRequest,), manifest),
                MockGet(HeldRefs, (HeldRefsRequest,), held_refs),
                MockGet(ExistingImage, (ExistingImageRequest,), existing_image),
                MockGet(EngineRun, (EngineRunRequest,), this_run),
                MockGet(MadeLambdaImage, (MadeLambdaImageRequest,), make),
                MockGet(LambdaImportCheck, (LambdaImportCheckRequest,), check),
            ],
        ))
        return requests["states"][-1]

    result = run_rule_with_mocks(
        package_chromadb_lambda,
        rule_args=[ChromadbLambdaPackageFieldSet.create(lambda_target())],
        mock_gets=[
            *names_key_refs,
            MockGet(LambdaImageState, (LambdaImageStateRequest,), state),
            MockGet(LambdaContextManifest, (LambdaContextManifestRequest,), manifest),
            MockGet(Digest, (CreateDigest,), create),
        ],
    )
    assert requests["state"] == [LambdaImageStateRequest(LAMBDA, None)]
    info = json.loads(written["lambdas.fn/fn.docker-info.json"])
    manifest = json.loads(written["lambdas.fn/fn.context.json"])
    return result, info, manifest, requests


def summary(result) -> str:
    image = next(a for a in result.artifacts if isinstance(a, BuiltDockerImage))
    return image.extra_log_lines[0]


def test_up_to_date_makes_nothing_and_reports_the_engine_image() -> None:
    result, info, manifest, requests = package(None, held=HELD_UP_TO_DATE)
    # Told by HeldRefs alone (the key tag and `latest`): the ExistingImage step is not asked.
    assert requests["held"] == [HeldRefsRequest((f"acme/fn:{KEY_TAG}", "acme/fn:latest"))]
    assert requests["existing"] == 0 and requests["run"] == 0
    assert summary(result) == (
        f"Lambda image acme/fn:latest is up to date: 2 files, 90 B of context, {KEY_TAG}, image sha256:held"
    )
    # Held under its key tag: proven before it was loaded; the import check step is not asked.
    assert requests["made"] == [] and requests["checked"] == []
    assert (info["image_id"], info["built"], info["pulled_from"]) == ("sha256:held", False, None)
    assert info["import_check"] == "checked before load"
    assert info["tags"] == ["acme/fn:latest", f"acme/fn:{KEY_TAG}"]
    assert info["base_image"] == {"address": "base:base", "key": BASE_IDENTITY.key, "ref": BASE_IDENTITY.ref}
    assert manifest["files"] == [{"path": "fn/__init__.py", "size": 0}, {"path": "fn/handler.py", "size": 90}]
    assert (manifest["file_count"], manifest["total_bytes"], manifest["task_root"]) == (2, 90, "/var/task")
    image, context = result.artifacts
    assert image == BuiltDockerImage(
        image_id="sha256:held",
        tags=("acme/fn:latest", f"acme/fn:{KEY_TAG}"),
        relpath="lambdas.fn/fn.docker-info.json",
        extra_log_lines=(summary(result),),
    )
    assert context == BuiltPackageArtifact(relpath="lambdas.fn/fn.context.json")
    # Read nothing of the run: Pants may keep it across runs and clean it.
    (state,) = requests["states"]
    assert state.run is None and state.cacheable()


def test_stale_tags_moved_is_up_to_date_and_not_built() -> None:
    _, info, _, requests = package(ExistingImage("sha256:held", run=RUN, retagged=True))
    assert requests["existing"] == 1
    assert info["built"] is False and requests["made"] == []
    assert info["import_check"] == "checked before load" and requests["checked"] == []
    # The tags moved in this run: this run's state alone.
    assert [(state.run, state.cacheable()) for state in requests["states"]] == [(RUN, False)]


def test_pulled_says_where_from() -> None:
    source = f"reg.example.com/acme/fn:{KEY_TAG}"
    result, info, _, requests = package(ExistingImage("sha256:pulled", run=RUN, pulled_from=source))
    assert summary(result).startswith(f"Lambda image acme/fn:latest pulled from {source}: 2 files")
    assert (info["built"], info["pulled_from"]) == (False, source)
    assert requests["made"] == [] and requests["checked"] == ["sha256:pulled"]
    assert info["import_check"] == "passed"
    assert [(state.run, state.cacheable()) for state in requests["states"]] == [(RUN, False)]


def test_made_in_the_run_the_engine_step_read() -> None:
    result, info, _, requests = package(ExistingImage(None, run=RUN), MadeLambdaImage("sha256:new", made=True))
    assert requests["made"] == [MadeLambdaImageRequest(LAMBDA, CLOSURE, NAMES, None, RUN)]
    assert summary(result).startswith("Lambda image acme/fn:latest built: 2 files")
    assert (info["image_id"], info["built"], info["import_check"]) == ("sha256:new", True, "passed")
    assert requests["checked"] == ["sha256:new"]
    assert [(state.run, state.cacheable()) for state in requests["states"]] == [(RUN, False)]


def test_nothing_held_is_made_without_asking_the_existing_image_step() -> None:
    # No key tag to move tags to, no registry to pull from: the ExistingImage step has nothing to find,
    # and kept out of this rule's dependencies it is not replayed for every target by the next run.
    result, info, _, requests = package(None, MadeLambdaImage("sha256:new", made=True), held=HeldRefs(FrozenDict()))
    assert requests["existing"] == 0 and requests["run"] == 1
    assert requests["made"] == [MadeLambdaImageRequest(LAMBDA, CLOSURE, NAMES, None, RUN)]
    assert (info["image_id"], info["built"], info["import_check"]) == ("sha256:new", True, "passed")
    assert [(state.run, state.cacheable()) for state in requests["states"]] == [(RUN, False)]


def test_nothing_held_asks_the_registries_when_pulling_is_on() -> None:
    source = f"reg.example.com/acme/fn:{KEY_TAG}"
    _, info, _, requests = package(
        ExistingImage("sha256:pulled", run=RUN, pulled_from=source), held=HeldRefs(FrozenDict()), pull_from_registries=True
    )
    assert requests["existing"] == 1 and requests["made"] == []
    assert (info["image_id"], info["pulled_from"]) == ("sha256:pulled", source)


def test_made_by_a_concurrent_run_is_up_to_date() -> None:
    result, info, _, requests = package(ExistingImage(None, run=RUN), MadeLambdaImage("sha256:theirs", made=False))
    assert " is up to date: " in summary(result) and info["built"] is False
    # Up to date, but found by this run's make (it waited for the other run's): this run's alone.
    assert [(state.run, state.cacheable()) for state in requests["states"]] == [(RUN, False)]


@pytest.mark.parametrize("options", [{"builder": "docker-build"}, {"check_handler_import": False}])
def test_up_to_date_asks_the_import_check_step_when_the_assembler_did_not_prove_it(options: dict) -> None:
    _, info, _, requests = package(None, held=HELD_UP_TO_DATE, **options)
    assert requests["checked"] == ["sha256:held"] and info["import_check"] == "passed"


@pytest.mark.parametrize(
    ("existing", "options", "expected"),
    [
        (ExistingImage("sha256:a"), {}, "checked before load"),
        (ExistingImage("sha256:a", run=RUN, retagged=True), {}, "checked before load"),
        (ExistingImage("sha256:a", run=RUN, pulled_from="reg/acme/fn:ck-1"), {}, None),
        (ExistingImage(None, run=RUN), {}, None),
        (ExistingImage("sha256:a"), {"builder": "docker-build"}, None),
        (ExistingImage("sha256:a"), {"check_handler_import": False}, None),
    ],
)
def test_held_import_verdict(existing: ExistingImage, options: dict, expected: str | None) -> None:
    assert held_import_verdict(lambda_subsystem(**{**CHECKED, **options}), existing) == expected


def awaited(rule_function) -> list[type]:
    """The output types a rule awaits (Pants reads its `Get`s from the source), in source order."""
    return [get.output_type for get in rule_function.rule.input_gets]


def test_the_package_rule_awaits_nothing_that_changes_after_a_build() -> None:
    # After a build, the engine half's answer changes in the next run (tags held; the run asked for).
    # Pants cleans a rule by asking all its previous dependencies at once and cancels the others'
    # cleaning at the first that changed; a cancelled node runs again from the top. So the package
    # rule awaits only what stays equal (names, key, refs, the context manifest, its outputs) and the
    # engine half, which awaits those same nodes before the engine.
    assert awaited(package_chromadb_lambda) == [
        ImageNames, LambdaImageKey, AllLambdaImageRefs, LambdaImageState, LambdaContextManifest, Digest
    ]
    assert awaited(lambda_context_manifest) == [LambdaImageKey]
    engine_half = awaited(lambda_image_state)
    # The engine half first awaits every other node the package rule awaits, then the engine.
    assert engine_half[:4] == [ImageNames, LambdaImageKey, AllLambdaImageRefs, LambdaContextManifest]
    assert {HeldRefs, ExistingImage, EngineRun, MadeLambdaImage, LambdaImportCheck} <= set(engine_half[4:])
