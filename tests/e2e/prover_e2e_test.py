"""End to end: the import check's prover (scripts/prover.py), a container of the base kept between
checks, and its zygote (scripts/zygote.py, a warm interpreter forking one child per member) prove
exactly what a fresh container of the base proves.

A scratch copy of the repo gets Lambdas on the repo's base: `good` passes; `litter` passes too, but
its import leaves a file in /tmp; `dyn` loads a first-party module by a computed name, so its import
fails in its image; `shadow` imports `selectors`, which its closure provides (lambdas/selectors.py)
and the zygote holds already (the standard module, a pure Python one, for its socket code): it
defines its handler only when it gets the standard module, so its image (the closure's module) fails; `rooted` defines its handler only
when LAMBDA_TASK_ROOT is /var/task, so it fails when packaged with another task root (another image
Env than the zygote's); `boto` imports boto3 (which the zygote then preloads) and `blocked` blocks
botocore (`sys.modules["botocore"] = None`) before it imports boto3, so its image fails while a
zygote child, whose boto3 is already imported, would pass it; `restored` narrows sys.path for its
`import boto3` and puts it back (its image fails too). Real Pants with pantsd, the real engine: the prover is found by its label.
"""
from __future__ import annotations

import hashlib

import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from e2e.harness import PLUGIN_PACKAGE, docker, read_docker_infos, remove_repository_images, run_pants, scratch_repo, stop_pantsd

REPOSITORY = f"chromadb-lambda-prover-{uuid.uuid4().hex[:8]}"
OPTIONS = (f"--docker-default-repository={REPOSITORY}/{{name}}",)
BASE = 'base_image="//base:lambda-base"'
DYN_ERROR = "The image of lambdas/dyn:dyn does not import its handler `dyn.handler.handle`: the first-party module"

FILES = {
    **PLUGIN_PACKAGE,
    "lambdas/dyn/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="dyn", handler="handler.py:handle", {BASE})\n',
    "lambdas/dyn/__init__.py": "",
    "lambdas/dyn/handler.py": (
        "import importlib\nimport os\n"
        'PLUGIN = importlib.import_module(os.environ.get("PLUGIN", "pkg.plugins.alpha"))\n\n\n'
        "def handle(event, context):\n    return PLUGIN.NAME\n"
    ),
    "lambdas/good/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="good", handler="handler.py:handle", {BASE})\n',
    "lambdas/good/__init__.py": "",
    "lambdas/good/handler.py": "def handle(event, context):\n    return 'good'\n",
    "lambdas/BUILD": 'python_sources(name="selectors", sources=["selectors.py"])\n',
    "lambdas/selectors.py": "FIRST_PARTY = True\n",
    "lambdas/shadow/BUILD": (
        'python_sources(name="sources", dependencies=["lambdas:selectors"])\n\n'
        f'chromadb_lambda(name="shadow", handler="handler.py:handle", {BASE})\n'
    ),
    "lambdas/shadow/__init__.py": "",
    "lambdas/shadow/handler.py": (
        "import selectors\n\n"
        'if not getattr(selectors, "FIRST_PARTY", False):\n\n'
        "    def handle(event, context):\n        return 'the standard selectors module'\n"
    ),
    "lambdas/rooted/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="rooted", handler="handler.py:handle", {BASE})\n',
    "lambdas/rooted/__init__.py": "",
    "lambdas/rooted/handler.py": (
        "import os\n\n"
        'if os.environ.get("LAMBDA_TASK_ROOT") == "/var/task":\n\n'
        "    def handle(event, context):\n        return 'the default task root'\n"
    ),
    "lambdas/boto/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="boto", handler="handler.py:handle", {BASE})\n',
    "lambdas/boto/__init__.py": "",
    "lambdas/boto/handler.py": "import boto3\n\n\ndef handle(event, context):\n    return boto3.__name__\n",
    "lambdas/blocked/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="blocked", handler="handler.py:handle", {BASE})\n',
    "lambdas/blocked/__init__.py": "",
    "lambdas/blocked/handler.py": (
        "import sys\n\n"
        'sys.modules["botocore"] = None\n'
        "import boto3  # noqa: E402\n\n\n"
        "def handle(event, context):\n    return boto3.__name__\n"
    ),
    "lambdas/restored/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="restored", handler="handler.py:handle", {BASE})\n',
    "lambdas/restored/__init__.py": "",
    "lambdas/restored/handler.py": (
        "import sys\n\n"
        "saved = sys.path[:]\n"
        'sys.path[:] = ["/var/task"]\n'
        "import boto3  # noqa: E402\n\n"
        "sys.path[:] = saved\n\n\n"
        "def handle(event, context):\n    return boto3.__name__\n"
    ),
    "lambdas/litter/BUILD": f'python_sources(name="sources")\n\nchromadb_lambda(name="litter", handler="handler.py:handle", {BASE})\n',
    "lambdas/litter/__init__.py": "",
    "lambdas/litter/handler.py": (
        'with open("/tmp/left-by-litter", "w") as f:\n    f.write("x")\n\n\n'
        "def handle(event, context):\n    return 'litter'\n"
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = scratch_repo(Path.cwd(), tmp_path_factory.mktemp("prover"), FILES)
    yield root
    stop_pantsd(root)
    remove_repository_images(REPOSITORY)


def edit(repo: Path, name: str) -> None:
    """A new image for `name` (a fresh uuid in its handler): this run must check it."""
    handler = repo / f"lambdas/{name}/handler.py"
    handler.write_text(handler.read_text() + f"# {uuid.uuid4().hex}\n")


def package(repo: Path, target: str):
    shutil.rmtree(repo / "dist", ignore_errors=True)
    return run_pants(repo, [*OPTIONS, "package", target], pantsd=True)


def refused(repo: Path, name: str, *needles: str) -> None:
    """A new image for `name` fails its check: Pants exits non-zero naming what failed, no image tagged."""
    edit(repo, name)
    result = package(repo, f"lambdas/{name}:{name}")
    assert result.exit_code != 0, result.stderr[-3000:]
    assert all(needle in result.stderr for needle in needles), result.stderr[-3000:]
    assert docker("image", "ls", "--quiet", f"{REPOSITORY}/{name}", check=False).stdout.strip() == ""


def base_id(repo: Path, name: str = "good") -> str:
    ref = read_docker_infos(repo)[name]["base_image"]["ref"]
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def provers(base: str) -> list[str]:
    """The ids of the running provers of `base` on this engine: labelled with it and named by it
    (`chromadb-lambda-prover-z2-` + the first 16 hex digits of sha256 of the base id), so that a prover an
    older checkout named otherwise is not counted."""
    name = "chromadb-lambda-prover-z2-" + hashlib.sha256(base.encode()).hexdigest()[:16]
    out = docker(
        "ps", "--no-trunc", "--filter", f"label=chromadb-lambda.prover={base}", "--filter", f"name=^/?{name}$",
        "--format", "{{.ID}}",
    ).stdout
    return out.split()


ZYGOTE_SCRIPT = """
import os, sys
for p in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
    try:
        argv = open("/proc/%d/cmdline" % p, "rb").read().split(b"\\0")
        env = open("/proc/%d/environ" % p, "rb").read().split(b"\\0")
    except OSError:
        continue
    # The zygote leads its session; its children (one per member, a preload's trial) do not.
    if b"chromadb-lambda-zygote" in argv and os.getsid(p) == p:
        root = [e.decode() for e in env if e.startswith(b"LAMBDA_TASK_ROOT=")]
        print(p, root[0] if root else "")
"""


HELLO_SCRIPT = """
import json, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\\0chromadb-lambda-zygote")
s.sendall(b'{"op": "hello"}\\n')
data = b""
while not data.endswith(b"\\n"):
    data += s.recv(65536)
print(" ".join(json.loads(data)["extras"]))
"""


def zygote_holds(prover: str) -> list[str]:
    """The modules the prover's zygote holds beyond a fresh check.py's (its hello reply)."""
    return docker("exec", prover, "python3", "-B", "-c", HELLO_SCRIPT).stdout.split()


def zygotes(prover: str) -> list[tuple[int, str]]:
    """The zygotes running in `prover`: (pid, the LAMBDA_TASK_ROOT=... of their environment)."""
    out = docker("exec", prover, "python3", "-B", "-c", ZYGOTE_SCRIPT).stdout
    return [(int(line.split()[0]), line.split()[1] if len(line.split()) > 1 else "") for line in out.splitlines()]


def shadow_refusal(result) -> bool:
    return (
        "The `handler` field in target lambdas/shadow:shadow names `shadow.handler.handle`, which is missing "
        "from its module after import"
    ) in result.stderr


def test_a_failing_member_after_a_passing_one_in_the_same_prover_still_fails(repo: Path) -> None:
    edit(repo, "good")
    # A new litter image: one whose id passed before (a record in Pants' named cache) is not checked.
    edit(repo, "litter")
    result = package(repo, "lambdas/good:good")
    assert result.exit_code == 0, result.stderr
    assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    base = base_id(repo)
    [prover] = provers(base)

    # The chunk's other members (dyn fails, litter passes) were checked with good; dyn was never tagged.
    assert docker("image", "ls", "--quiet", f"{REPOSITORY}/dyn", check=False).stdout.strip() == ""
    # litter left a file in the prover: it is replaced before the next check.
    refused(repo, "dyn", DYN_ERROR)
    [replaced] = provers(base)
    assert replaced != prover
    # The same prover passes good, then fails dyn.
    edit(repo, "good")
    result = package(repo, "lambdas/good:good")
    assert result.exit_code == 0, result.stderr
    assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    refused(repo, "dyn", DYN_ERROR)
    assert provers(base) == [replaced]


def test_a_check_after_the_prover_was_killed_behind_pantsd_still_works(repo: Path) -> None:
    edit(repo, "good")
    assert package(repo, "lambdas/good:good").exit_code == 0
    base = base_id(repo)
    [prover] = provers(base)
    docker("rm", "-f", prover)
    edit(repo, "good")
    result = package(repo, "lambdas/good:good")
    assert result.exit_code == 0, result.stderr
    assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    [started] = provers(base)
    assert started != prover
    # The same verdict as the prover gives for a failure, in the restarted one.
    docker("rm", "-f", started)
    refused(repo, "dyn", DYN_ERROR)


def test_a_closure_module_named_like_one_the_zygote_holds_is_imported_from_the_closure(repo: Path) -> None:
    edit(repo, "good")
    assert package(repo, "lambdas/good:good").exit_code == 0
    base = base_id(repo)
    [prover] = provers(base)
    # good's check ran in a child of the zygote, which holds the standard `selectors` (its socket code).
    [(zygote, root)] = zygotes(prover)
    assert root == "LAMBDA_TASK_ROOT=/var/task"
    edit(repo, "shadow")
    result = package(repo, "lambdas/shadow:shadow")
    # A fresh interpreter of the image imports the closure's selectors.py (the task root is first on
    # sys.path): no handler. The zygote's `selectors` would have given one: its verdict must not count.
    assert result.exit_code != 0 and shadow_refusal(result), result.stderr[-3000:]
    assert docker("image", "ls", "--quiet", f"{REPOSITORY}/shadow", check=False).stdout.strip() == ""
    # The same zygote served (it was not replaced to refuse shadow).
    assert zygotes(prover) == [(zygote, root)]


def test_an_image_env_other_than_the_zygotes_is_honoured(repo: Path) -> None:
    edit(repo, "rooted")
    result = package(repo, "lambdas/rooted:rooted")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert read_docker_infos(repo)["rooted"]["import_check"] == "passed"
    base = base_id(repo, "rooted")
    [prover] = provers(base)
    assert [root for _, root in zygotes(prover)] == ["LAMBDA_TASK_ROOT=/var/task"]
    # Another task root: every image's Env says LAMBDA_TASK_ROOT=/opt/proof-root. rooted then has no
    # handler; a zygote started with /var/task would have defined one.
    shutil.rmtree(repo / "dist", ignore_errors=True)
    result = run_pants(repo, [*OPTIONS, "--lambda-image-task-root=/opt/proof-root", "package", "lambdas/rooted:rooted"], pantsd=True)
    assert result.exit_code != 0, result.stderr[-3000:]
    assert (
        "The `handler` field in target lambdas/rooted:rooted names `rooted.handler.handle`, which is missing "
        "from its module after import"
    ) in result.stderr, result.stderr[-3000:]
    # The zygote of the old Env was replaced by one of the new Env (the prover itself may have been
    # replaced too: its writable layer held the old task root's parents).
    [prover] = provers(base)
    assert [root for _, root in zygotes(prover)] == ["LAMBDA_TASK_ROOT=/opt/proof-root"]


def test_a_check_after_the_zygote_was_killed_behind_pantsd_still_works(repo: Path) -> None:
    edit(repo, "good")
    assert package(repo, "lambdas/good:good").exit_code == 0
    base = base_id(repo)
    [prover] = provers(base)
    [(zygote, _)] = zygotes(prover)
    docker("exec", prover, "python3", "-c", f"import os; os.kill({zygote}, 9)")
    edit(repo, "good")
    result = package(repo, "lambdas/good:good")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    [(started, _)] = zygotes(provers(base)[0])
    assert started != zygote
    # And a failure still reads as a fresh interpreter's, with the new zygote in place.
    refused(repo, "dyn", DYN_ERROR)


def test_a_member_whose_code_blocks_a_module_the_zygote_preloaded_fails_as_in_its_image(repo: Path) -> None:
    edit(repo, "boto")
    assert package(repo, "lambdas/boto:boto").exit_code == 0
    base = base_id(repo, "boto")
    # The first run checked the whole chunk (the example's Lambdas too): the zygote preloaded what they
    # import. Killed, the next run starts one that preloads what boto imports.
    for zygote, _ in zygotes(provers(base)[0]):
        docker("exec", provers(base)[0], "python3", "-c", f"import os; os.kill({zygote}, 9)")
    edit(repo, "boto")
    result = package(repo, "lambdas/boto:boto")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert read_docker_infos(repo)["boto"]["import_check"] == "passed"
    [prover] = provers(base)
    [(zygote, _)] = zygotes(prover)
    # boto's check ran in a child of the zygote, which then preloaded boto3.
    assert "boto3" in zygote_holds(prover)
    # What the image does: its fresh python3 finds botocore blocked when boto3 imports it.
    refused(repo, "blocked", "lambdas/blocked:blocked", "botocore")
    # The zygote that holds boto3 was asked (the same prover and zygote still serve): its child's `ok`
    # did not count.
    assert provers(base) == [prover]
    assert zygotes(prover) == [(zygote, "LAMBDA_TASK_ROOT=/var/task")]
    # `restored` narrows sys.path to the task root for its `import boto3` and puts it back: its image
    # cannot find boto3; a child whose boto3 is imported already would pass it, and sys.path is as
    # before when the check ends. The state is compared when boto3 is first imported.
    refused(repo, "restored", "lambdas/restored:restored", "boto3")
    assert provers(base) == [prover]


def test_checks_reach_the_prover_over_an_attach_not_a_docker_exec(repo: Path) -> None:
    edit(repo, "good")
    assert package(repo, "lambdas/good:good").exit_code == 0
    base = base_id(repo)
    since = f"{time.time():.6f}"
    for _ in range(2):  # passes, then a failure: each read from a prover's first process
        edit(repo, "good")
        result = package(repo, "lambdas/good:good")
        assert result.exit_code == 0, result.stderr[-3000:]
        assert read_docker_infos(repo)["good"]["import_check"] == "passed"
    refused(repo, "dyn", DYN_ERROR)
    until = f"{time.time():.6f}"
    # The engine's own record of what was done to the base's provers meanwhile (an independent route).
    events = docker(
        "events", "--since", since, "--until", until, "--filter", f"label=chromadb-lambda.prover={base}",
        "--format", "{{.Action}}",
    ).stdout.split()
    assert events.count("attach") >= 3, events
    assert not [e for e in events if e.startswith("exec_")], events
