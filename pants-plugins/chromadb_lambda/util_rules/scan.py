"""Scanning a closure's Python files with the Lambda's interpreter (`source_scan.py` as a process).

The process's inputs are the files, the script and the interpreter: its result is cached by Pants
like any process, so a no-op run reads it from the cache and an edit rescans one closure.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.python_sources import PythonSourceFiles
from pants.backend.python.util_rules.pex_environment import PythonExecutable
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, DigestEntries, FileContent, FileEntry
from pants.engine.process import Process, ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import TransitiveTargets
from pants.util.logging import LogLevel

from chromadb_lambda.scripts import source_scan
from chromadb_lambda.scripts import script_source
from chromadb_lambda.util_rules.checks import stripped_path

# Read as data and run by the Lambda's interpreter; imported so that Pants and the wheel ship it.
SOURCE_SCAN = os.path.basename(source_scan.__file__)
_SPEC = "__chromadb_lambda_scan_spec.json"
# `-I`: nothing from the environment or the user's site reaches the scan. `-S`: no `site` import
# either; the script needs the standard library only, and skipping `site` saves about a third of
# each scan's start (22 of 54 ms measured on 3.11), on the critical path of every edit.
SCAN_INTERPRETER_FLAGS = ("-I", "-S")


def scan_argv(python: str) -> tuple[str, ...]:
    """How the scan process runs `source_scan.py` (the spec file sits beside it in the sandbox)."""
    return (python, *SCAN_INTERPRETER_FLAGS, SOURCE_SCAN, _SPEC)


@dataclass(frozen=True)
class ScannedFile:
    """A file to scan: its path from the build root and the module name it has in the task root."""

    entry: FileEntry
    module: str


@dataclass(frozen=True)
class SourceScanRequest:
    files: tuple[ScannedFile, ...]
    interpreter_constraints: InterpreterConstraints
    handler_path: str
    description: str


@dataclass(frozen=True)
class SourceScan:
    """The JSON report of `source_scan.py` (see its docstring for the schema)."""

    report: str

    def parsed(self) -> dict[str, Any]:
        return json.loads(self.report)


@rule(desc="Reading Python files with the Lambda's interpreter", level=LogLevel.DEBUG)
async def scan_python_sources(request: SourceScanRequest) -> SourceScan:
    if not request.files:
        return SourceScan(json.dumps({"files": [], "handler_bindings": None}))
    spec = {
        "files": [{"path": f.entry.path, "module": f.module} for f in request.files],
        "handler": {"path": request.handler_path},
    }
    python, inputs = await MultiGet(
        Get(PythonExecutable, InterpreterConstraints, request.interpreter_constraints),
        Get(
            Digest,
            CreateDigest(
                [
                    *(f.entry for f in request.files),
                    FileContent(SOURCE_SCAN, script_source(SOURCE_SCAN)),
                    FileContent(_SPEC, json.dumps(spec, sort_keys=True).encode()),
                ]
            ),
        ),
    )
    result = await Get(
        ProcessResult,
        Process(
            argv=scan_argv(python.path),
            input_digest=inputs,
            append_only_caches=python.append_only_caches,
            immutable_input_digests=python.immutable_input_digests,
            description=request.description,
            level=LogLevel.DEBUG,
        ),
    )
    return SourceScan(result.stdout.decode())


def module_name(stripped: str) -> str:
    """The module a file is in the task root: `pkg/mod.py` -> `pkg.mod`, `pkg/__init__.py` -> `pkg`."""
    base = stripped[: -len(".py")]
    if base == "__init__" or base.endswith("/__init__"):
        base = base[: -len("__init__")].rstrip("/")
    return base.replace("/", ".")


async def scan_closure(
    address: Address,
    closure: TransitiveTargets,
    unstripped: PythonSourceFiles,
    handler_path: str | None,
    python_setup: PythonSetup,
) -> SourceScan:
    """The scan of every Python file of the closure, by the Lambda's interpreter."""
    entries = await Get(DigestEntries, Digest, unstripped.source_files.snapshot.digest)
    roots = unstripped.source_roots
    unrooted = frozenset(unstripped.source_files.unrooted_files)
    files = tuple(
        ScannedFile(e, module_name(stripped_path(e.path, roots, unrooted)))
        for e in entries
        if isinstance(e, FileEntry) and e.path.endswith(".py")
    )
    constraints = InterpreterConstraints.create_from_targets(closure.closure, python_setup) or InterpreterConstraints(
        python_setup.interpreter_constraints
    )
    return await Get(
        SourceScan,
        SourceScanRequest(files, constraints, handler_path or "", f"Reading the Python files of {address}"),
    )


def rules():
    return collect_rules()
