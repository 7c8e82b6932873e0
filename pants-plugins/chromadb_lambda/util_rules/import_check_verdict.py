"""Reading the verdict of the import check (`import_check_script.py` in the image): what failed to
import, whether the context can fix it (a first-party module, by Pants' module mapping) or the base
image lacks it (third-party), and the messages that say so (pure functions, no engine)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

from pants.backend.python.dependency_inference.module_mapper import FirstPartyPythonModuleMapping
from pants.engine.addresses import Address
from pants.engine.process import FallibleProcessResult
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from chromadb_lambda.scripts import import_check_script
from chromadb_lambda.util_rules.context import normalized_task_root

OPTION = "[lambda-image].check_handler_import"


class ProcessOutput(Protocol):
    """A `docker run` of the image (FallibleProcessResult), or one member's part of a chunk container
    (import_check_chunk.MemberCheckOutput)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
PASSED = "passed"


def parse_verdict(stdout: str) -> dict[str, Any] | None:
    """The script's verdict: its last line that starts with the marker, or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(import_check_script.MARKER + " "):
            return json.loads(line[len(import_check_script.MARKER) + 1 :])
    return None


_CANNOT_IMPORT_NAME = re.compile(r"^cannot import name '([^']+)' from '([^']+)'")


def missing_module(verdict: Mapping[str, Any]) -> str | None:
    """The module an ImportError says is missing: `e.name`, or `pkg.name` for `from pkg import name`."""
    if verdict.get("status") != "raised" or "module" not in verdict:
        return None
    if verdict.get("not_found"):
        return verdict.get("module")
    match = _CANNOT_IMPORT_NAME.match(verdict.get("message", ""))
    return f"{match.group(2)}.{match.group(1)}" if match else None


def importing_frame(frames: Iterable[Iterable[Any]], task_root: str) -> tuple[str, int, str] | None:
    """The innermost traceback frame in the task root (the line that imports), else the innermost:
    (path, line number, source line), the path relative to the task root when it is in it."""
    rows = [(str(f[0]), int(f[1]), str(f[2]) if len(f) > 2 else "") for f in map(list, frames)]
    prefix = f"{normalized_task_root(task_root).rstrip('/')}/"
    in_root = [(f[len(prefix) :], line, code) for f, line, code in rows if f.startswith(prefix)]
    if in_root:
        return in_root[-1]
    return rows[-1] if rows else None


_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


_FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+\(?([\w\s,]+)")


def requested_modules(missing: str, code: str) -> tuple[str, ...]:
    """Modules the importing line may have asked for that lie in or below the missing one, most
    specific first: `import_module("pkg.plugins.alpha")` fails on `pkg` when the image has no `pkg`."""
    names = {n for n in _DOTTED_NAME.findall(code) if n == missing or n.startswith(f"{missing}.")}
    match = _FROM_IMPORT.match(code)
    if match:
        for imported in match.group(2).split(","):
            words = imported.split()
            if words:
                names.add(f"{match.group(1)}.{words[0]}")
    return tuple(sorted((n for n in names if n == missing or n.startswith(f"{missing}.")), key=lambda n: (-len(n), n)))


def top_level_names(paths: Iterable[str]) -> frozenset[str]:
    """Top-level packages and modules of task-root-relative file paths."""
    names = set()
    for path in paths:
        first = path.split("/", 1)[0]
        names.add(first[: -len(".py")] if first.endswith(".py") and "/" not in path else first)
    return frozenset(names)


@dataclass(frozen=True)
class FirstPartyModules:
    """What Pants knows of first-party modules: module name -> owning addresses (any resolve)."""

    providers: FrozenDict[str, tuple[str, ...]]
    closure_top_levels: frozenset[str]

    def is_first_party(self, module: str) -> bool:
        top = module.split(".", 1)[0]
        return top in self.closure_top_levels or any(
            m == top or m.startswith(f"{top}.") for m in self.providers
        )

    def owners(self, module: str) -> tuple[str, ...]:
        """Owners of `module`, then of its submodules (a package loaded by computed names, e.g.
        `import_module(f"pkg.plugins.{name}")`, needs the modules it loads), at most five."""
        own = self.providers.get(module, ())
        below = sorted({a for m, addrs in self.providers.items() if m.startswith(f"{module}.") for a in addrs} - set(own))
        return (*own, *below)[:5]


def first_party_modules(mapping: FirstPartyPythonModuleMapping, closure_paths: Iterable[str]) -> FirstPartyModules:
    providers: dict[str, set[str]] = {}
    for modules in mapping.resolves_to_modules_to_providers.values():
        for module, module_providers in modules.items():
            providers.setdefault(module, set()).update(str(p.addr) for p in module_providers)
    return FirstPartyModules(
        FrozenDict((m, tuple(sorted(a))) for m, a in sorted(providers.items())),
        top_level_names(closure_paths),
    )


@dataclass(frozen=True)
class Classified:
    """What a verdict means for the build: `passed`, `warning`, or an error kind with its message."""

    kind: str  # passed | warning | first_party | third_party | not_callable | missing
    detail: str = ""
    module: str | None = None
    location: tuple[str, int] | None = None
    # The source line at `location`.
    code: str = ""


def _exception_text(verdict: Mapping[str, Any]) -> str:
    message = verdict.get("message", "")
    return f"{verdict.get('type')}: {message}" if message else str(verdict.get("type"))


def classify(verdict: Mapping[str, Any], is_first_party: Callable[[str], bool], task_root: str) -> Classified:
    status = verdict.get("status")
    if status == "ok":
        return Classified(PASSED)
    if status == "not_callable":
        return Classified("not_callable", "a class" if verdict.get("is_class") else f"a `{verdict.get('type')}` object")
    if status == "missing":
        return Classified("missing", str(verdict.get("file")))
    frame = importing_frame(verdict.get("frames", ()), task_root)
    location, code = (frame[:2], frame[2]) if frame else (None, "")
    if verdict.get("type") in ("SyntaxError", "IndentationError", "TabError"):
        # The image's Python is older than the one the closure was read with: fails on every call.
        return Classified("syntax", _exception_text(verdict), location=location, code=code)
    module = missing_module(verdict)
    if module is not None and is_first_party(module):
        return Classified("first_party", _exception_text(verdict), module, location, code)
    if "module" in verdict:
        # Any other ImportError fails on every invocation: a module the base lacks, a version of it
        # without the imported name, a native library it cannot load. The context cannot fix it.
        return Classified("third_party", _exception_text(verdict), module, location, code)
    return Classified("warning", _exception_text(verdict), location=location, code=code)


def _at(location: tuple[str, int] | None, repo_paths: Mapping[str, str]) -> str:
    if not location:
        return "an unknown line"
    path, line = location
    return f"{repo_paths.get(path, path)}:{line}"


def first_party_message(
    address: Address, handler: str, classified: Classified, owners: tuple[str, ...], repo_paths: Mapping[str, str]
) -> str:
    if owners:
        fix = f"""
            Declare it in the `dependencies` field of {address}, e.g.
            `dependencies=[{", ".join(repr(o) for o in owners)}]` (inference cannot see imports by
            computed or dynamic names).
            """
    else:
        fix = f"""
            No target in the repo provides `{classified.module}`: check the name at that line, or add
            a `python_sources` target for it and declare it in the `dependencies` field of {address}.
            """
    problem = f"""
        The image of {address} does not import its handler `{handler}`: the first-party module
        `{classified.module}` is not in the image ({classified.detail}), imported at
        {_at(classified.location, repo_paths)}.
        """
    tail = f"Nothing of this image was written to dist/. (`{OPTION} = false` skips this check.)"
    return " ".join((softwrap(problem), softwrap(fix), tail))


def third_party_message(address: Address, handler: str, base: Address, classified: Classified, repo_paths: Mapping[str, str]) -> str:
    what = f"the third-party module `{classified.module}`" if classified.module else "a third-party module"
    return softwrap(
        f"""
        The image of {address} does not import its handler `{handler}`: {what}, imported at {_at(classified.location, repo_paths)}, is not installed
        in the image or cannot load there, and the Lambda's context cannot provide it: the
        `base_image` of {address} ({base}) lacks it or a library it needs. Fix the base image
        ({classified.detail}).
        """
    )


def syntax_message(address: Address, handler: str, classified: Classified, repo_paths: Mapping[str, str]) -> str:
    return softwrap(
        f"""
        The image of {address} does not import its handler `{handler}`: the image's Python cannot
        compile {_at(classified.location, repo_paths)} ({classified.detail}). The closure was read with
        the interpreter of `[python].interpreter_constraints`, which accepts it: narrow those
        constraints to the base image's Python, or change the code. (`{OPTION} = false` skips this check.)
        """
    )


def not_callable_message(address: Address, handler: str, classified: Classified) -> str:
    what = "missing from its module after import" if classified.kind == "missing" else classified.detail
    return softwrap(
        f"""
        The `handler` field in target {address} names `{handler}`, which is {what}: the Lambda
        runtime calls the handler as a function `(event, context)`. Name a function defined at the
        top level of the module.
        """
    )


def warning_message(address: Address, handler: str, classified: Classified, repo_paths: Mapping[str, str]) -> str:
    return softwrap(
        f"""
        The context of {address} is complete, but its handler module raised at import in the image
        (no network, no AWS credentials, only the image's environment): {classified.detail}, at
        {_at(classified.location, repo_paths)}. The Lambda will fail the same way at its first
        invocation unless its configuration (environment variables, network) provides what the
        module needs at import.
        """
    )


def infrastructure_message(address: Address, image_id: str, result: ProcessOutput) -> str:
    output = (result.stderr.decode(errors="replace") + result.stdout.decode(errors="replace")).strip()
    tail = "\n".join(f"  {line}" for line in output.splitlines()[-20:])
    return (
        f"Importing the handler of {address} in its image {image_id} did not run (exit code "
        f"{result.exit_code}):\n{tail}\n\n"
        + softwrap(
            f"""
            The image needs `python3` on its PATH, and the Docker engine must hold the image. Nothing
            of this image was written to dist/; `{OPTION} = false` skips this check.
            """
        )
    )
