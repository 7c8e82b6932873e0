from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.python.dependency_inference.module_mapper import (
    FirstPartyPythonModuleMapping,
    ModuleProvider,
    ModuleProviderType,
)
from pants.engine.addresses import Address
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import (
    FallibleProcessResult,
    Process,
    ProcessCacheScope,
    ProcessExecutionEnvironment,
    ProcessResultMetadata,
)
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, QueryRule, RuleRunner, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from chromadb_lambda import testutil
from chromadb_lambda.util_rules import import_check
from chromadb_lambda.util_rules.closure import ContextFile, LambdaClosure, LambdaClosureRequest
from chromadb_lambda.util_rules.engine import DockerEnvironment
from chromadb_lambda.util_rules.import_check import (
    ClosureRepoPaths,
    HandlerImportError,
    ImportVerdictRequest,
    LambdaImportCheck,
    LambdaImportCheckRequest,
    check_lambda_import,
    classify_import,
    import_check_argv,
    import_check_script_text,
)
from chromadb_lambda.util_rules.import_check_verdict import (
    Classified,
    classify,
    first_party_message,
    first_party_modules,
    importing_frame,
    missing_module,
    parse_verdict,
    requested_modules,
    top_level_names,
)
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem, LambdaImageBuilder, MissingThirdPartyBehavior
from chromadb_lambda.util_rules.chunk_images import ChunkImage, ChunkImages, ChunkImagesRequest, MemberProof
from chromadb_lambda.util_rules.import_check_chunk import MemberCheckOutput
from chromadb_lambda.util_rules.lambda_chunks import LambdaChunk, LambdaChunkRequest

ADDRESS = Address("lambdas/fn", target_name="fn")
BASE = Address("base", target_name="lambda-base")


def python311() -> str:
    """The Lambdas' Python (pyenv has it on these machines); the plugin's own Python otherwise."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "3.11*", "bin", "python3")))
    return found[-1] if found else sys.executable


def run_script(
    task_root: Path, module: str, function: str, timeout: int = 20, exit_code: int = 0
) -> tuple[dict[str, Any], str]:
    """The in-image script as `docker run` runs it (`python3 -B -c <script> ...`), from another cwd:
    it must put the task root on `sys.path` itself."""
    proc = subprocess.run(
        [python311(), "-B", "-c", import_check_script_text(), module, function, str(task_root), str(timeout)],
        cwd="/",
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == exit_code, proc.stderr
    verdict = parse_verdict(proc.stdout)
    assert verdict is not None, proc.stdout
    return verdict, proc.stdout


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def task_frames(verdict: dict[str, Any], root: Path) -> list[list[Any]]:
    return [[f[len(str(root)) + 1 :], line, code] for f, line, code in verdict["frames"] if f.startswith(f"{root}/")]


def test_script_good_handler(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/handler.py": "import json\n\ndef handle(event, context):\n    return 1\n"})
    verdict, _ = run_script(root, "pkg.handler", "handle")
    assert verdict == {"status": "ok", "file": f"{root}/pkg/handler.py"}


def test_script_missing_first_party_module(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/handler.py": "import importlib\n\nPLUGIN = importlib.import_module('pkg.plugins.alpha')\n\ndef handle(e, c):\n    pass\n",
        },
    )
    verdict, _ = run_script(root, "pkg.handler", "handle")
    assert verdict["status"] == "raised"
    assert verdict["type"] == "ModuleNotFoundError"
    assert verdict["message"] == "No module named 'pkg.plugins'"
    assert verdict["module"] == "pkg.plugins"
    assert verdict["not_found"] is True
    assert task_frames(verdict, root) == [["pkg/handler.py", 3, "PLUGIN = importlib.import_module('pkg.plugins.alpha')"]]


def test_script_missing_module_imported_by_a_nested_module(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/handler.py": "from pkg import helper\n\ndef handle(e, c):\n    pass\n",
            "pkg/helper.py": "\n\nfrom pkg.gone import x\n",
        },
    )
    verdict, _ = run_script(root, "pkg.handler", "handle")
    assert (verdict["type"], verdict["module"]) == ("ModuleNotFoundError", "pkg.gone")
    # The import chain, innermost last: the line to fix is helper.py:3.
    assert task_frames(verdict, root) == [["pkg/handler.py", 1, "from pkg import helper"], ["pkg/helper.py", 3, "from pkg.gone import x"]]


def test_script_missing_third_party_module(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"fn.py": "import yaml_not_installed_anywhere\n\ndef handle(e, c):\n    pass\n"})
    verdict, _ = run_script(root, "fn", "handle")
    assert (verdict["status"], verdict["type"], verdict["module"], verdict["not_found"]) == (
        "raised",
        "ModuleNotFoundError",
        "yaml_not_installed_anywhere",
        True,
    )


def test_script_env_var_read_at_import(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"fn.py": "import os\nTABLE = os.environ['TABLE']\n\ndef handle(e, c):\n    pass\n"})
    verdict, _ = run_script(root, "fn", "handle")
    assert (verdict["status"], verdict["type"], verdict["message"]) == ("raised", "KeyError", "'TABLE'")
    assert "module" not in verdict
    assert task_frames(verdict, root) == [["fn.py", 2, "TABLE = os.environ['TABLE']"]]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import logging\nlogger = logging.getLogger()\n", {"status": "not_callable", "type": "RootLogger", "is_class": False}),
        ("class handle:\n    pass\n", {"status": "not_callable", "type": "type", "is_class": True}),
        ("handle = None\n", {"status": "not_callable", "type": "NoneType", "is_class": False}),
    ],
)
def test_script_non_callable_handler(tmp_path: Path, source: str, expected: dict[str, Any]) -> None:
    root = write_tree(tmp_path, {"fn.py": source})
    verdict, _ = run_script(root, "fn", "logger" if "logger" in source else "handle")
    assert verdict == expected


def test_script_missing_attribute(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"fn.py": "if False:\n    def handle(e, c):\n        pass\n"})
    verdict, _ = run_script(root, "fn", "handle")
    assert verdict == {"status": "missing", "file": f"{root}/fn.py"}


def test_script_output_of_the_handler_does_not_hide_the_verdict(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"fn.py": "print('CHROMADB_LAMBDA_IMPORT_CHECK {\"status\": \"ok\"}')\nraise SystemExit(3)\n"})
    verdict, stdout = run_script(root, "fn", "handle")
    # The handler's print went to stderr: stdout is the verdict line alone.
    assert stdout.count("\n") == 1
    assert (verdict["status"], verdict["type"], verdict["message"]) == ("raised", "SystemExit", "3")


def test_script_import_that_hangs_times_out(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"fn.py": "import time\ntime.sleep(30)\n"})
    # A non-zero exit: a timeout says something about the machine now, so Pants must not cache it.
    verdict, _ = run_script(root, "fn", "handle", timeout=1, exit_code=3)
    assert (verdict["type"], verdict["message"]) == ("ImportTimeout", "the import did not finish in 1 seconds")


def test_parse_verdict_takes_the_last_marker_line() -> None:
    stdout = 'noise\nCHROMADB_LAMBDA_IMPORT_CHECK {"status": "raised"}\nCHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok"}\n'
    assert parse_verdict(stdout) == {"status": "ok"}
    assert parse_verdict("Traceback ...\n") is None


def test_import_check_argv_runs_the_image_offline_with_python3() -> None:
    argv = import_check_argv("/bin/docker", "sha256:abc", "fn.handler", "handle", "/var/task")
    assert argv[:12] == (
        "/bin/docker", "run", "--rm", "--pull", "never", "--network", "none",
        "--workdir", "/var/task", "--entrypoint", "python3", "sha256:abc",
    )
    assert argv[12:14] == ("-B", "-c")
    assert argv[15:] == ("fn.handler", "handle", "/var/task", "60")
    # No environment, no mounts, no published ports reach the container.
    assert not {"-e", "--env", "-v", "--volume", "-p", "--init"} & set(argv)


def test_missing_module_of_import_errors() -> None:
    assert missing_module({"status": "raised", "module": "pkg.x", "not_found": True, "message": ""}) == "pkg.x"
    # `from pkg import alpha` where `pkg/alpha.py` is not in the image.
    from_import = {"status": "raised", "module": "pkg", "not_found": False,
                   "message": "cannot import name 'alpha' from 'pkg' (/var/task/pkg/__init__.py)"}
    assert missing_module(from_import) == "pkg.alpha"
    assert missing_module({"status": "raised", "type": "KeyError", "message": "'TABLE'"}) is None


def test_importing_frame_prefers_the_task_root() -> None:
    frames = [
        ["<string>", 30, "module = importlib.import_module(m)"],
        ["/var/task/fn/handler.py", 3, "import pkg.x"],
        ["/usr/lib/python3.11/importlib/__init__.py", 126, "return _bootstrap._gcd_import(name[level:], package, level)"],
        ["<frozen importlib._bootstrap>", 1140, ""],
    ]
    assert importing_frame(frames, "/var/task/") == ("fn/handler.py", 3, "import pkg.x")
    assert importing_frame([["/opt/venv/lib/x.py", 9, "import y"]], "/var/task") == ("/opt/venv/lib/x.py", 9, "import y")
    assert importing_frame([], "/var/task") is None


@pytest.mark.parametrize(
    "missing, code, expected",
    [
        ("pkg", 'PLUGIN = importlib.import_module("pkg.plugins.alpha")', ("pkg.plugins.alpha",)),
        ("pkg.plugins", 'importlib.import_module(f"pkg.plugins.{name}")', ("pkg.plugins",)),
        ("pkg", "from pkg.plugins import alpha as a, beta", ("pkg.plugins.alpha", "pkg.plugins.beta", "pkg.plugins")),
        ("pkg.gone", "import os, pkg.gone.deep", ("pkg.gone.deep",)),
        ("pkg", "x = 1", ()),
        ("pkg", "import pkgx", ()),
    ],
)
def test_requested_modules(missing: str, code: str, expected: tuple[str, ...]) -> None:
    assert requested_modules(missing, code) == expected


def test_top_level_names() -> None:
    assert top_level_names(["fn/__init__.py", "fn/handler.py", "helpers.py", "data/x.json"]) == {"fn", "helpers", "data"}


def mapping(modules: dict[str, str]) -> FirstPartyPythonModuleMapping:
    return FirstPartyPythonModuleMapping(
        FrozenDict(
            {
                "python-default": FrozenDict(
                    {m: (ModuleProvider(Address(os.path.dirname(p), relative_file_path=os.path.basename(p)), ModuleProviderType.IMPL),)
                     for m, p in modules.items()}
                )
            }
        )
    )


def test_first_party_modules_from_the_mapping_and_the_closure() -> None:
    known = first_party_modules(
        mapping({"pkg.plugins.alpha": "src/pkg/plugins/alpha.py", "pkg.plugins.beta": "src/pkg/plugins/beta.py"}),
        ["fn/handler.py", "receipt_common/__init__.py"],
    )
    assert known.is_first_party("pkg.plugins")
    assert known.is_first_party("fn.missing")
    assert known.is_first_party("receipt_common.gone")
    assert not known.is_first_party("yaml")
    assert not known.is_first_party("pk")
    assert known.owners("pkg.plugins.alpha") == ("src/pkg/plugins/alpha.py",)
    # A package the image lacks: its submodules' owners.
    assert known.owners("pkg.plugins") == ("src/pkg/plugins/alpha.py", "src/pkg/plugins/beta.py")
    assert known.owners("pkg.nothing") == ()
    # A package with code of its own: its `__init__.py` first, then the modules below it.
    with_init = first_party_modules(
        mapping({"pkg.plugins": "src/pkg/plugins/__init__.py", "pkg.plugins.alpha": "src/pkg/plugins/alpha.py"}), []
    )
    assert with_init.owners("pkg.plugins") == ("src/pkg/plugins/__init__.py", "src/pkg/plugins/alpha.py")


FIRST_PARTY = {"pkg", "fn"}.__contains__


def is_first_party(module: str) -> bool:
    return FIRST_PARTY(module.split(".")[0])


@pytest.mark.parametrize(
    "verdict, expected",
    [
        ({"status": "ok", "file": "/var/task/fn/handler.py"}, Classified("passed")),
        (
            {"status": "raised", "type": "ModuleNotFoundError", "message": "No module named 'pkg.plugins'",
             "module": "pkg.plugins", "not_found": True, "frames": [["/var/task/fn/handler.py", 3]]},
            Classified("first_party", "ModuleNotFoundError: No module named 'pkg.plugins'", "pkg.plugins", ("fn/handler.py", 3)),
        ),
        (
            {"status": "raised", "type": "ImportError", "message": "cannot import name 'alpha' from 'pkg' (/var/task/pkg/__init__.py)",
             "module": "pkg", "not_found": False, "frames": [["/var/task/fn/handler.py", 1]]},
            Classified("first_party", "ImportError: cannot import name 'alpha' from 'pkg' (/var/task/pkg/__init__.py)", "pkg.alpha", ("fn/handler.py", 1)),
        ),
        (
            {"status": "raised", "type": "ModuleNotFoundError", "message": "No module named 'yaml'",
             "module": "yaml", "not_found": True, "frames": [["/var/task/fn/handler.py", 2]]},
            Classified("third_party", "ModuleNotFoundError: No module named 'yaml'", "yaml", ("fn/handler.py", 2)),
        ),
        (
            {"status": "raised", "type": "KeyError", "message": "'TABLE'", "frames": [["/var/task/fn/handler.py", 5]]},
            Classified("warning", "KeyError: 'TABLE'", None, ("fn/handler.py", 5)),
        ),
        (
            # A name the installed third-party version lacks: the context cannot fix it, and every
            # invocation fails: an error about the base image.
            {"status": "raised", "type": "ImportError", "message": "cannot import name 'Nope' from 'boto3' (/opt/venv/x.py)",
             "module": "boto3", "not_found": False, "frames": [["/var/task/fn/handler.py", 1]]},
            Classified("third_party", "ImportError: cannot import name 'Nope' from 'boto3' (/opt/venv/x.py)", "boto3.Nope", ("fn/handler.py", 1)),
        ),
        (
            # A native library the base image lacks.
            {"status": "raised", "type": "ImportError", "message": "libGL.so.1: cannot open shared object file",
             "module": None, "not_found": False, "frames": [["/var/task/fn/handler.py", 2]]},
            Classified("third_party", "ImportError: libGL.so.1: cannot open shared object file", None, ("fn/handler.py", 2)),
        ),
        (
            # Syntax the image's Python is too old for.
            {"status": "raised", "type": "SyntaxError", "message": "invalid syntax (handler.py, line 4)",
             "frames": [["/var/task/fn/handler.py", 4]]},
            Classified("syntax", "SyntaxError: invalid syntax (handler.py, line 4)", None, ("fn/handler.py", 4)),
        ),
        ({"status": "not_callable", "type": "RootLogger", "is_class": False}, Classified("not_callable", "a `RootLogger` object")),
        ({"status": "not_callable", "type": "type", "is_class": True}, Classified("not_callable", "a class")),
        ({"status": "missing", "file": "/var/task/fn/handler.py"}, Classified("missing", "/var/task/fn/handler.py")),
    ],
)
def test_classify(verdict: dict[str, Any], expected: Classified) -> None:
    assert classify(verdict, is_first_party, "/var/task") == expected


def test_first_party_message_names_target_module_repo_line_and_fix() -> None:
    classified = Classified("first_party", "ModuleNotFoundError: No module named 'pkg.plugins'", "pkg.plugins", ("fn/handler.py", 12))
    message = first_party_message(ADDRESS, "fn.handler.handle", classified, ("src/pkg/plugins/alpha.py",), {"fn/handler.py": "lambdas/fn/handler.py"})
    assert message == (
        "The image of lambdas/fn:fn does not import its handler `fn.handler.handle`: the first-party module "
        "`pkg.plugins` is not in the image (ModuleNotFoundError: No module named 'pkg.plugins'), imported at "
        "lambdas/fn/handler.py:12. Declare it in the `dependencies` field of lambdas/fn:fn, e.g. "
        "`dependencies=['src/pkg/plugins/alpha.py']` (inference cannot see imports by computed or dynamic names). "
        "Nothing of this image was written to dist/. (`[lambda-image].check_handler_import = false` skips this check.)"
    )


# The rule, with the engine mocked: which processes it asks for and what it makes of the verdicts.

CLOSURE = LambdaClosure(
    address=ADDRESS,
    handler_module="fn.handler",
    handler_function="handle",
    base_address=BASE,
    roots=(Address("lambdas/fn", relative_file_path="handler.py"),),
    digest=EMPTY_DIGEST,
    files=(ContextFile("fn/__init__.py", 0), ContextFile("fn/handler.py", 90)),
    provided_by_base=("receipt_common/__init__.py",),
)


def subsystem_with(**options: Any) -> ChromadbLambdaSubsystem:
    return create_subsystem(
        ChromadbLambdaSubsystem,
        **{
            "check_handler_import": True,
            "task_root": "/var/task",
            "missing_third_party": MissingThirdPartyBehavior.error,
            "builder": LambdaImageBuilder.docker_build,
            **options,
        },
    )


def classify_output(request: ImportVerdictRequest, subsystem: ChromadbLambdaSubsystem) -> MemberProof:
    """classify_import with Pants' module mapping and the closure's repo paths mocked."""
    return run_rule_with_mocks(
        classify_import,
        rule_args=[request, subsystem],
        mock_gets=[
            MockGet(output_type=FirstPartyPythonModuleMapping, input_types=(),
                    mock=lambda: mapping({"pkg.plugins.alpha": "src/pkg/plugins/alpha.py"})),
            MockGet(output_type=ClosureRepoPaths, input_types=(LambdaClosure,),
                    mock=lambda _: ClosureRepoPaths(FrozenDict({"fn/handler.py": "lambdas/fn/handler.py"}))),
        ],
    )


def process_output(stdout: str, exit_code: int = 0) -> FallibleProcessResult:
    return FallibleProcessResult(
        stdout=stdout.encode(), stdout_digest=EMPTY_DIGEST, stderr=b"docker: boom", stderr_digest=EMPTY_DIGEST,
        exit_code=exit_code, output_digest=EMPTY_DIGEST,
        metadata=ProcessResultMetadata(
            0, ProcessExecutionEnvironment(
                environment_name=None, platform="linux_x86_64", docker_image=None,
                remote_execution=False, remote_execution_extra_platform_properties=[],
            ), "ran", 0
        ),
    )


def run_check(
    verdict_stdout: str, exit_code: int = 0, chunk_image: ChunkImage | None = None, **options: Any
) -> tuple[LambdaImportCheck, list[Process]]:
    subsystem = subsystem_with(**options)
    processes: list[Process] = []

    def run(process: Process) -> FallibleProcessResult:
        processes.append(process)
        return process_output(verdict_stdout, exit_code)

    def images(request: ChunkImagesRequest) -> ChunkImages:
        assert request.members == (CLOSURE.address, OTHER)
        return ChunkImages(FrozenDict({CLOSURE.address: chunk_image or ChunkImage(None), OTHER: ChunkImage("sha256:o")}))

    result = run_rule_with_mocks(
        check_lambda_import,
        rule_args=[LambdaImportCheckRequest(CLOSURE, "sha256:abc"), DockerBinary("/bin/docker", "sha"),
                   DockerEnvironment(FrozenDict({"DOCKER_HOST": "unix:///d.sock"})), subsystem],
        mock_gets=[
            MockGet(LambdaChunk, (LambdaChunkRequest,), lambda r: LambdaChunk((r.address, OTHER))),
            MockGet(ChunkImages, (ChunkImagesRequest,), images),
            MockGet(output_type=FallibleProcessResult, input_types=(Process,), mock=run),
            MockGet(MemberProof, (ImportVerdictRequest,), lambda r: classify_output(r, subsystem)),
        ],
    )
    return result, processes


MARK = "CHROMADB_LAMBDA_IMPORT_CHECK "
OTHER = Address("lambdas/other", target_name="other")
FIRST_PARTY_MISS = MARK + (
    '{"status": "raised", "type": "ModuleNotFoundError", "message": "No module named \'pkg.plugins\'", '
    '"module": "pkg.plugins", "not_found": true, "frames": [["/var/task/fn/handler.py", 4]]}\n'
)


def test_rule_assembler_image_held_under_its_key_tag_was_checked_before_load_and_runs_nothing() -> None:
    held = ChunkImage("sha256:abc", import_check="checked before load")
    result, processes = run_check("", chunk_image=held, builder=LambdaImageBuilder.assembler)
    assert (result, processes) == (LambdaImportCheck("checked before load"), [])


def test_rule_assembler_takes_the_verdict_of_the_check_before_load() -> None:
    loaded = ChunkImage("sha256:abc", made=True, import_check="warning: KeyError: 'TABLE'")
    result, processes = run_check("", chunk_image=loaded, builder=LambdaImageBuilder.assembler)
    assert (result, processes) == (LambdaImportCheck("warning: KeyError: 'TABLE'"), [])


def test_rule_assembler_pulled_image_runs_its_image() -> None:
    # Pulled from a registry: no proof of this engine's check (ChunkImage.import_check None).
    result, processes = run_check(
        MARK + '{"status": "ok"}\n', chunk_image=ChunkImage("sha256:abc"), builder=LambdaImageBuilder.assembler
    )
    assert result == LambdaImportCheck("passed")
    [process] = processes
    assert "sha256:abc" in process.argv


def test_rule_assembler_verdict_of_another_image_is_not_this_one_s_proof() -> None:
    other = ChunkImage("sha256:other", import_check="passed")
    result, processes = run_check(MARK + '{"status": "ok"}\n', chunk_image=other, builder=LambdaImageBuilder.assembler)
    assert result == LambdaImportCheck("passed")
    [process] = processes
    assert "sha256:abc" in process.argv


def member_proof_of(output: MemberCheckOutput) -> MemberProof:
    return classify_output(ImportVerdictRequest(CLOSURE, "sha256:abc", output), subsystem_with(builder=LambdaImageBuilder.assembler))


def test_member_proof_classifies_the_chunk_output_as_a_docker_run_would() -> None:
    assert member_proof_of(MemberCheckOutput("sha256:abc", 0, (MARK + '{"status": "ok"}\n').encode(), b"")) == (
        MemberProof("passed")
    )
    proof = member_proof_of(MemberCheckOutput("sha256:abc", 0, FIRST_PARTY_MISS.encode(), b""))
    assert proof.verdict is None
    assert str(proof.error).startswith("The image of lambdas/fn:fn does not import its handler")
    assert "imported at lambdas/fn/handler.py:4" in str(proof.error)


def test_member_proof_container_that_did_not_run_names_the_target() -> None:
    proof = member_proof_of(MemberCheckOutput("sha256:abc", 125, b"", b"docker: Error response from daemon: no such image"))
    assert proof.verdict is None
    assert "Importing the handler of lambdas/fn:fn in its image sha256:abc did not run (exit code 125)" in str(proof.error)
    assert "no such image" in str(proof.error)


def test_rule_passes_and_caches_by_image_and_handler() -> None:
    result, processes = run_check(MARK + '{"status": "ok"}\n')
    assert result == LambdaImportCheck("passed")
    [process] = processes
    assert process.cache_scope == ProcessCacheScope.SUCCESSFUL
    assert "sha256:abc" in process.argv and ("fn.handler", "handle") == process.argv[-4:-2]
    assert process.env["DOCKER_HOST"] == "unix:///d.sock"


def test_rule_skipped_runs_no_container() -> None:
    result, processes = run_check("", check_handler_import=False)
    assert (result, processes) == (LambdaImportCheck("skipped"), [])


def test_rule_first_party_error_names_repo_path() -> None:
    stdout = MARK + (
        '{"status": "raised", "type": "ModuleNotFoundError", "message": "No module named \'pkg.plugins\'", '
        '"module": "pkg.plugins", "not_found": true, "frames": [["/var/task/fn/handler.py", 4]]}\n'
    )
    with pytest.raises(HandlerImportError) as e:
        run_check(stdout)
    assert "lambdas/fn:fn" in str(e.value)
    assert "`pkg.plugins`" in str(e.value)
    assert "imported at lambdas/fn/handler.py:4" in str(e.value)
    assert "`dependencies=['src/pkg/plugins/alpha.py']`" in str(e.value)


def test_rule_first_party_error_names_the_module_the_line_asked_for() -> None:
    stdout = MARK + (
        '{"status": "raised", "type": "ModuleNotFoundError", "message": "No module named \'pkg\'", "module": "pkg", '
        '"not_found": true, "frames": [["/var/task/fn/handler.py", 3, "PLUGIN = importlib.import_module(\\"pkg.plugins.alpha\\")"]]}\n'
    )
    with pytest.raises(HandlerImportError) as e:
        run_check(stdout)
    assert "the first-party module `pkg.plugins.alpha` is not in the image (ModuleNotFoundError: No module named 'pkg')" in str(e.value)
    assert "imported at lambdas/fn/handler.py:3" in str(e.value)
    assert "`dependencies=['src/pkg/plugins/alpha.py']`" in str(e.value)


def test_rule_third_party_follows_missing_third_party() -> None:
    stdout = MARK + (
        '{"status": "raised", "type": "ModuleNotFoundError", "message": "No module named \'yaml\'", '
        '"module": "yaml", "not_found": true, "frames": [["/var/task/fn/handler.py", 2]]}\n'
    )
    with pytest.raises(HandlerImportError, match=r"the `base_image` of lambdas/fn:fn \(base:lambda-base\) lacks it"):
        run_check(stdout)
    result, _ = run_check(stdout, missing_third_party=MissingThirdPartyBehavior.warning)
    assert result == LambdaImportCheck("warning: ModuleNotFoundError: No module named 'yaml'")


def test_rule_other_exception_is_a_warning() -> None:
    stdout = MARK + '{"status": "raised", "type": "KeyError", "message": "\'TABLE\'", "frames": [["/var/task/fn/handler.py", 5]]}\n'
    result, _ = run_check(stdout)
    assert result == LambdaImportCheck("warning: KeyError: 'TABLE'")


def test_rule_not_callable_is_an_error() -> None:
    with pytest.raises(HandlerImportError, match=r"names `fn.handler.handle`, which is a `RootLogger` object"):
        run_check(MARK + '{"status": "not_callable", "type": "RootLogger", "is_class": false}\n')


def test_rule_container_that_did_not_run_is_an_error() -> None:
    with pytest.raises(HandlerImportError, match=r"did not run \(exit code 125\):\n  docker: boom"):
        run_check("", exit_code=125)


# The rule's inputs from a real engine: Pants' module mapping and the closure's repo paths.


def test_repo_paths_and_first_party_modules_of_a_real_closure() -> None:
    # The closure tests' engine (testutil) plus this module's rules.
    base = testutil.closure_rule_runner()
    runner = RuleRunner(
        rules=[
            *base.rules,
            *import_check.rules(),
            QueryRule(ClosureRepoPaths, [LambdaClosure]),
            QueryRule(FirstPartyPythonModuleMapping, []),
        ],
        target_types=base.target_types,
    )
    testutil.set_options(runner)
    runner.write_files(
        {
            **testutil.BASE_REPO,
            "functions/fn/BUILD": testutil.lambda_build("fn"),
            "functions/fn/main.py": "from store import TABLE\n\ndef handle(event, context):\n    return TABLE\n",
        }
    )
    closure = runner.request(LambdaClosure, [LambdaClosureRequest(Address("functions/fn", target_name="fn"))])
    paths = runner.request(ClosureRepoPaths, [closure])
    assert dict(paths.paths) == {
        "fn/main.py": "functions/fn/main.py",
        "store/__init__.py": "app/store/__init__.py",
        "store/tables.py": "app/store/tables.py",
    }
    known = first_party_modules(runner.request(FirstPartyPythonModuleMapping, []), [f.path for f in closure.files])
    assert known.is_first_party("text.vocab") and known.is_first_party("store.gone")
    assert not known.is_first_party("boto3")
    assert known.owners("text.vocab") == ("app/text/vocab.py",)
