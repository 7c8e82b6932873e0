"""The scan process: how it is run (argv, inputs) and module names of scanned files."""
from __future__ import annotations

import json

from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex_environment import PythonExecutable
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest, FileContent, FileDigest, FileEntry
from pants.engine.process import Process, ProcessResult
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from chromadb_lambda.testutil import fail_if_requested, process_result
from chromadb_lambda.util_rules.scan import (
    ScannedFile,
    SourceScan,
    SourceScanRequest,
    module_name,
    scan_argv,
    scan_python_sources,
)


def test_scan_argv_isolates_the_interpreter_and_skips_site() -> None:
    assert scan_argv("/opt/python3.11/bin/python3.11") == (
        "/opt/python3.11/bin/python3.11",
        "-I",
        "-S",
        "source_scan.py",
        "__chromadb_lambda_scan_spec.json",
    )


def test_module_name() -> None:
    assert module_name("pkg/mod.py") == "pkg.mod"
    assert module_name("pkg/__init__.py") == "pkg"
    assert module_name("__init__.py") == ""
    assert module_name("handler.py") == "handler"


def test_scan_python_sources_runs_the_script_with_the_lambdas_interpreter() -> None:
    entry = FileEntry("src/pkg/mod.py", FileDigest("a" * 64, 10))
    request = SourceScanRequest(
        files=(ScannedFile(entry, "pkg.mod"),),
        interpreter_constraints=InterpreterConstraints(["CPython==3.11.*"]),
        handler_path="src/pkg/mod.py",
        description="Reading the Python files of lambdas/a:a",
    )
    python = PythonExecutable(path="/usr/bin/python3.11", fingerprint=None)
    seen: dict[str, object] = {}

    def create(digest_request: CreateDigest) -> Digest:
        seen["inputs"] = digest_request
        return EMPTY_DIGEST

    def run(process: Process) -> ProcessResult:
        seen["process"] = process
        return ProcessResult(
            stdout=b'{"files": [], "handler_bindings": {}}',
            stdout_digest=EMPTY_DIGEST,
            stderr=b"",
            stderr_digest=EMPTY_DIGEST,
            output_digest=EMPTY_DIGEST,
            metadata=process_result("").metadata,
        )

    result = run_rule_with_mocks(
        scan_python_sources,
        rule_args=[request],
        mock_gets=[
            MockGet(PythonExecutable, (InterpreterConstraints,), lambda ics: python),
            MockGet(Digest, (CreateDigest,), create),
            MockGet(ProcessResult, (Process,), run),
        ],
    )
    assert result == SourceScan('{"files": [], "handler_bindings": {}}')
    process = seen["process"]
    assert isinstance(process, Process)
    assert process.argv == (
        "/usr/bin/python3.11", "-I", "-S", "source_scan.py", "__chromadb_lambda_scan_spec.json"
    )
    assert process.description == "Reading the Python files of lambdas/a:a"
    inputs = seen["inputs"]
    assert isinstance(inputs, CreateDigest)
    assert [getattr(e, "path") for e in inputs] == [
        "src/pkg/mod.py",
        "source_scan.py",
        "__chromadb_lambda_scan_spec.json",
    ]
    spec = next(e for e in inputs if isinstance(e, FileContent) and e.path == "__chromadb_lambda_scan_spec.json")
    assert json.loads(spec.content) == {
        "files": [{"path": "src/pkg/mod.py", "module": "pkg.mod"}],
        "handler": {"path": "src/pkg/mod.py"},
    }


def test_no_files_no_process() -> None:
    request = SourceScanRequest((), InterpreterConstraints(["CPython==3.11.*"]), "", "nothing")
    result = run_rule_with_mocks(
        scan_python_sources,
        rule_args=[request],
        mock_gets=[
            MockGet(PythonExecutable, (InterpreterConstraints,), fail_if_requested("an interpreter")),
            MockGet(Digest, (CreateDigest,), fail_if_requested("a digest")),
            MockGet(ProcessResult, (Process,), fail_if_requested("a scan process")),
        ],
    )
    assert json.loads(result.report) == {"files": [], "handler_bindings": None}
