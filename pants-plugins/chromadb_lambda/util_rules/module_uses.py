"""What a closure's files import, from the scan report, and which targets that makes the Lambda need.

Pure functions over `source_scan.py`'s report and Pants' module owners, so that unit tests reach
every rule:

- modules a star import of a package brings through its literal `__all__` (submodules named there
  are imported by `from pkg import *`) and literal `importlib.import_module("a.b")` /
  `__import__("a.b")` names become dependencies of the Lambda;
- an imported module with two owners (two source roots providing one module path) and neither in
  the closure is an error: the image would have neither file;
- third-party requirements imported only under `if TYPE_CHECKING:` are not needed at run time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from pants.engine.addresses import Address
from pants.util.strutil import bullet_list, softwrap



class AmbiguousImportError(Exception):
    """An imported module has several owners and the Lambda's closure has none of them."""



@dataclass(frozen=True)
class DynamicImport:
    path: str
    line: int
    call: str


@dataclass(frozen=True)
class SyntaxProblem:
    path: str
    line: int
    msg: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.msg}"


@dataclass(frozen=True)
class ModuleUse:
    """One place that needs a module: `kind` is `import`, `star` (via `__all__`) or `dynamic`."""

    module: str
    path: str
    line: int
    kind: str
    type_checking: bool = False

    def describe(self) -> str:
        how = {
            "import": "imports",
            "star": "star-imports (through `__all__`)",
            "dynamic": "loads by name",
        }[self.kind]
        return f"{self.path}:{self.line} {how} `{self.module}`"


@dataclass(frozen=True)
class ModuleOwners:
    """Pants' owners of one module (see `PythonModuleOwners`)."""

    unambiguous: tuple[Address, ...] = ()
    ambiguous: tuple[Address, ...] = ()


@dataclass(frozen=True)
class ModuleResolution:
    # Targets the closure lacks that a star import or a literal dynamic import needs, and why.
    extra: Mapping[Address, ModuleUse]
    # Uses whose module has several owners, none of them in the closure.
    ambiguous: tuple[tuple[ModuleUse, tuple[Address, ...]], ...]
    # Targets run-time imports resolve to / targets only `if TYPE_CHECKING:` imports resolve to.
    needed: frozenset[Address]
    type_checking_only: frozenset[Address]


def syntax_problems(report: Mapping[str, Any]) -> tuple[SyntaxProblem, ...]:
    return tuple(
        SyntaxProblem(f["path"], f["error"]["line"] or 0, f["error"]["msg"]) for f in report["files"] if f.get("error")
    )


def module_uses(report: Mapping[str, Any]) -> tuple[ModuleUse, ...]:
    """Every module the scanned files need, as Pants would look them up.

    `from a import b` needs `a.b` (Pants' owner lookup falls back to `a` when `b` is a name in `a`).
    """
    all_by_path = {f["path"]: f.get("all") for f in report["files"]}
    module_by_path = {f["path"]: f.get("module") for f in report["files"]}
    packages = {
        module: all_by_path[path]
        for path, module in module_by_path.items()
        if module is not None and path.endswith("__init__.py")
    }
    uses: list[ModuleUse] = []
    for f in report["files"]:
        path = f["path"]
        for imp in f.get("imports", ()):
            modules = [f"{imp['module']}.{n}" for n in imp["names"]] if imp["names"] else [imp["module"]]
            uses.extend(ModuleUse(m, path, imp["line"], "import", imp["type_checking"]) for m in modules if m)
        for star in f.get("star_imports", ()):
            for name in packages.get(star["module"]) or ():
                uses.append(ModuleUse(f"{star['module']}.{name}", path, star["line"], "star"))
        for dyn in f.get("dynamic", ()):
            if dyn["module"]:
                uses.append(ModuleUse(dyn["module"], path, dyn["line"], "dynamic", dyn["type_checking"]))
    return tuple(uses)


def computed_dynamic_imports(report: Mapping[str, Any]) -> tuple[DynamicImport, ...]:
    """Every `import_module`/`__import__` whose module name is computed."""
    return tuple(
        DynamicImport(f["path"], d["line"], d["call"])
        for f in report["files"]
        for d in f.get("dynamic", ())
        if not d["module"]
    )


def resolve_module_uses(
    uses: Iterable[ModuleUse], owners: Mapping[str, ModuleOwners], closure: frozenset[Address]
) -> ModuleResolution:
    extra: dict[Address, ModuleUse] = {}
    ambiguous: dict[str, tuple[ModuleUse, tuple[Address, ...]]] = {}
    needed: set[Address] = set()
    type_checking: set[Address] = set()
    for use in uses:
        found = owners.get(use.module, ModuleOwners())
        if found.unambiguous:
            (type_checking if use.type_checking else needed).update(found.unambiguous)
            if use.kind != "import" and not use.type_checking and not closure.intersection(found.unambiguous):
                for address in found.unambiguous:
                    extra.setdefault(address, use)
        elif found.ambiguous and not use.type_checking and not closure.intersection(found.ambiguous):
            ambiguous.setdefault(use.module, (use, found.ambiguous))
    return ModuleResolution(
        extra=extra,
        ambiguous=tuple(ambiguous[m] for m in sorted(ambiguous)),
        needed=frozenset(needed),
        type_checking_only=frozenset(type_checking - needed),
    )


def ambiguous_imports_message(address: Address, ambiguous: Iterable[tuple[ModuleUse, tuple[Address, ...]]]) -> str:
    lines = []
    for use, owners in ambiguous:
        lines.append(f"{use.describe()}, provided by {' and '.join(str(o) for o in sorted(owners))}")
    first_use, first_owners = next(iter(ambiguous))
    keep, *drop = sorted(first_owners)
    return softwrap(
        f"""
        The handler closure of {address} imports modules that more than one target provides (one
        module path under several source roots), so Pants inferred neither and the image would have
        neither file:

        {bullet_list(lines)}

        Choose one: add it to the `dependencies` of the importing target (e.g.
        `dependencies=["{keep}"]`), or exclude the others there (e.g.
        `dependencies=["!{drop[0] if drop else keep}"]`); or rename one of the modules.
        """
    )

