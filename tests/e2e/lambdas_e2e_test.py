"""End to end: package every Lambda with real Pants on the real engine, check each image's added
files against its handler's closure, then invoke each handler inside its image."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from e2e.harness import copy_repo, docker, files_added_over_base, receipt_aws, run_pants
from e2e.runtime_api import RuntimeApi
from receipt_dynamo import DynamoClient, ReceiptWord

TASK_ROOT = "/var/task"
RECEIPT_DYNAMO = {f"receipt_dynamo/{m}.py" for m in ("__init__", "client", "entities", "queries")}
RECEIPT_LABEL = {f"receipt_label/{m}.py" for m in ("__init__", "batch", "records", "schema")} | {
    "receipt_label/label_schema.json"
}
# Exactly what each handler needs beyond the base image, which bakes in receipt_common.
EXPECTED_CONTEXT = {
    "list_pending": {"list_pending/__init__.py", "list_pending/handler.py", *RECEIPT_DYNAMO},
    "find_unembedded": {"find_unembedded/__init__.py", "find_unembedded/handler.py", *RECEIPT_DYNAMO},
    "submit_batch": {
        "submit_batch/__init__.py",
        "submit_batch/handler.py",
        "submit_batch/naming.py",
        *RECEIPT_DYNAMO,
        *RECEIPT_LABEL,
    },
    "word_polling": {
        "word_polling/__init__.py",
        "word_polling/handler.py",
        "word_polling/polling.py",
        "receipt_chroma/__init__.py",
        "receipt_chroma/client.py",
        "receipt_chroma/delta.py",
        *RECEIPT_DYNAMO,
        *RECEIPT_LABEL,
    },
    "line_polling": {
        "line_polling/__init__.py",
        "line_polling/handler.py",
        # The module it shares with word polling, without word polling's handler.
        "word_polling/__init__.py",
        "word_polling/polling.py",
        "receipt_chroma/__init__.py",
        "receipt_chroma/client.py",
        "receipt_chroma/delta.py",
        *RECEIPT_DYNAMO,
        *RECEIPT_LABEL,
    },
    "compaction": {
        "compaction/__init__.py",
        "compaction/handler.py",
        "receipt_chroma/__init__.py",
        "receipt_chroma/client.py",
        "receipt_chroma/compaction.py",
        "receipt_chroma/delta.py",
    },
}
# The tests tag their images apart from a developer's own `<name>:latest`, and apart from earlier
# runs, so that this run really builds them.
REPOSITORY = f"chromadb-lambda-e2e-{uuid.uuid4().hex[:8]}"
TABLE = "receipts-e2e"
BUCKET = "receipt-embeddings-e2e"


def image(name: str) -> str:
    return f"{REPOSITORY}/{name}:latest"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`./pants package lambdas::` in a scratch copy of the repo; the docker-info of every image."""
    build_root = copy_repo(Path.cwd(), tmp_path_factory.mktemp("repo"))
    result = run_pants(build_root, [f"--docker-default-repository={REPOSITORY}/{{name}}", "package", "lambdas::"]).assert_success()
    infos = {}
    for path in sorted((build_root / "dist").glob("lambdas.*/*.docker-info.json")):
        info = json.loads(path.read_text())
        manifest = json.loads(path.with_name(path.name.replace(".docker-info.json", ".context.json")).read_text())
        infos[info["address"].rsplit(":", 1)[1]] = {**info, "manifest": manifest}
    yield {"infos": infos, "stderr": result.stderr}
    docker("image", "rm", *(tag for info in infos.values() for tag in info["tags"]), check=False)


def test_package_builds_every_lambda_and_reports_it(packaged: dict[str, Any]) -> None:
    infos = packaged["infos"]
    assert sorted(infos) == sorted(EXPECTED_CONTEXT)
    for name, info in infos.items():
        assert info["tags"] == [image(name), f"{REPOSITORY}/{name}:ck-{info['content_key'][:32]}"]
        assert info["image_id"].startswith("sha256:")
        assert info["built"] is True
        # Built FROM the base by its content-key tag.
        assert info["base_image"]["ref"] == f"chromadb-lambda/base:ck-{info['base_image']['key'][:32]}"
        assert info["handler"] == f"{name}.handler.handle"
        assert info["base_image"]["address"] == "base:lambda-base"
        manifest = info["manifest"]
        assert manifest["total_bytes"] == sum(f["size"] for f in manifest["files"]) == info["context"]["bytes"]
        assert manifest["provided_by_base"] == ["receipt_common/__init__.py"]
        # One summary line per image.
        assert f"Lambda image {image(name)} built: {manifest['file_count']} files" in packaged["stderr"]
    # Every Lambda builds FROM the same base.
    assert len({info["base_image"]["ref"] for info in infos.values()}) == 1


@pytest.fixture(scope="module")
def added_files(packaged: dict[str, Any]) -> dict[str, set[str]]:
    # One `docker save` of all images: the base's layers, shared by all, are written once.
    base = next(iter(packaged["infos"].values()))["base_image"]["ref"]
    return files_added_over_base([image(name) for name in sorted(packaged["infos"])], base)


@pytest.mark.parametrize("name", sorted(EXPECTED_CONTEXT))
def test_image_adds_exactly_the_handler_closure(
    packaged: dict[str, Any], added_files: dict[str, set[str]], name: str
) -> None:
    expected = EXPECTED_CONTEXT[name]
    assert {f["path"] for f in packaged["infos"][name]["manifest"]["files"]} == expected
    assert added_files[image(name)] == {f"{TASK_ROOT}/{path}" for path in expected}


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, str]]:
    """A real AWS API endpoint (moto server over HTTP) with the receipt table and bucket."""
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with receipt_aws(TABLE, BUCKET, credentials) as env:
        yield env


def invoke(image: str, event: dict[str, Any], env: dict[str, str]) -> Any:
    """Runs the image as Lambda would and sends it one event through the Runtime API."""
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    with RuntimeApi(event, function_name=image.split(":")[0]) as api:
        env_args = [arg for k, v in {**env, "AWS_LAMBDA_RUNTIME_API": api.address}.items() for arg in ("-e", f"{k}={v}")]
        docker("run", "-d", "--name", name, "--pull", "never", "--network", "host", *env_args, image)
        try:
            answered = api.answered.wait(timeout=240)
            logs = docker("logs", name, check=False).stderr
            assert answered, f"{image} did not answer within 240 s; logs:\n{logs}"
            assert api.error is None, f"{image} failed: {api.error}\nlogs:\n{logs}"
            return api.result
        finally:
            docker("rm", "-f", name, check=False)


def seed_words(words: list[tuple[int, int, int, str, str]]) -> None:
    DynamoClient(TABLE).put_words(ReceiptWord("img-1", r, line, w, text, status) for r, line, w, text, status in words)


def batch_result(keys: list[str]) -> bytes:
    lines = [
        json.dumps({"custom_id": key, "response": {"body": {"data": [{"embedding": [float(i), 1.0, 0.5]}]}}})
        for i, key in enumerate(keys)
    ]
    return "\n".join(lines).encode()


WORD_KEYS = [
    "IMAGE#img-1#RECEIPT#00001#LINE#00001#WORD#00001",
    "IMAGE#img-1#RECEIPT#00001#LINE#00002#WORD#00001",
]


def test_handlers_answer_invocations_against_aws_apis(packaged: dict[str, Any], aws: dict[str, str]) -> None:
    s3 = boto3.client("s3")
    seed_words([(1, 1, 1, "MILK", "NONE"), (1, 2, 1, "4.99", "NONE"), (1, 3, 1, "TOTAL", "SUCCESS")])

    found = invoke(image("find_unembedded"), {"limit": 10}, aws)
    assert found == {"count": 2, "keys": WORD_KEYS}

    submitted = invoke(image("submit_batch"), {"label": "product name"}, aws)
    assert submitted["submitted"] == 2 and submitted["batch_id"].startswith("batch-")
    request_lines = s3.get_object(Bucket=BUCKET, Key=submitted["s3_key"])["Body"].read().decode().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in request_lines) == WORD_KEYS

    pending = invoke(image("list_pending"), {"kind": "word"}, aws)
    assert pending == {"pending": [submitted["batch_id"]]}

    s3.put_object(Bucket=BUCKET, Key="results/words.jsonl", Body=batch_result(WORD_KEYS))
    polled = invoke(image("word_polling"), {"batch_id": "b-words", "result_key": "results/words.jsonl"}, aws)
    assert polled["upserted"] == 2 and polled["delta_key"] == "deltas/words/b-words.tar.gz"
    assert s3.head_object(Bucket=BUCKET, Key=polled["delta_key"])["ContentLength"] == polled["delta_bytes"] > 0

    line_keys = ["IMAGE#img-1#RECEIPT#00001#LINE#00001"]
    s3.put_object(Bucket=BUCKET, Key="results/lines.jsonl", Body=batch_result(line_keys))
    lines = invoke(image("line_polling"), {"batch_id": "b-lines", "result_key": "results/lines.jsonl"}, aws)
    assert lines["upserted"] == 1 and lines["delta_key"] == "deltas/lines/b-lines.tar.gz"

    compacted = invoke(image("compaction"), {"collection": "words"}, aws)
    assert compacted == {
        "collection": "words",
        "deltas": 1,
        "snapshot_size": 2,
        "snapshot_key": "snapshots/words/latest.tar.gz",
    }
