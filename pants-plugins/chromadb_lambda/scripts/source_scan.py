"""Reads a Lambda's Python files with the Lambda's own interpreter: syntax, imports, `__all__`, handler.

Run as a script by the interpreter of the Lambda's interpreter constraints (see scan.py), never by
Pants' own: a file is judged by the grammar of the Python that will run it (a `match` statement is
valid for a 3.11 Lambda even though Pants runs on 3.9).

    source_scan.py SPEC_JSON   -> prints a JSON report on stdout, exits 0

SPEC_JSON: {"files": [{"path": "src/pkg/mod.py", "module": "pkg.mod"}], "handler": {"path": ..., "function": ...}}
For each file the report gives its syntax error (repo-relative path and line), its imports (absolute
module names, line, whether only under `if TYPE_CHECKING:`), star imports, a literal `__all__`, and
`importlib.import_module(...)` / `__import__(...)` calls (the literal module name, or None when
computed). For the handler file it gives how each top-level name is bound.

Standard library only; Python 3.7 or newer.
"""
import ast
import json
import sys

_STR_TYPES = tuple(t for t in (getattr(ast, "Constant", None), getattr(ast, "Str", None)) if t is not None)


def literal_str(node):
    """The value of a string literal node, else None."""
    if isinstance(node, _STR_TYPES):
        value = getattr(node, "value", getattr(node, "s", None))
        if isinstance(value, str):
            return value
    return None


def literal_strs(node):
    """The strings of a literal list/tuple of strings, else None."""
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [literal_str(e) for e in node.elts]
        if all(v is not None for v in values):
            return values
    return None


def resolve_relative(module, level, package):
    """`from ..x import y` in package `a.b.c` -> `a.b.x`; None if it climbs out of the top level."""
    if not level:
        return module or ""
    parts = package.split(".") if package else []
    if level > len(parts):
        return None  # Python: "attempted relative import beyond top-level package"
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base)


def is_type_checking(test):
    """`if TYPE_CHECKING:` / `if typing.TYPE_CHECKING:` (any module alias)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return False


class Scanner(ast.NodeVisitor):
    def __init__(self, module, package):
        self.module = module
        self.package = package
        self.type_checking = 0
        self.imports = []
        self.star_imports = []
        self.dynamic = []
        self.all_names = None

    def visit_If(self, node):
        if is_type_checking(node.test):
            self.visit(node.test)
            self.type_checking += 1
            for child in node.body:
                self.visit(child)
            self.type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, module, line, names=()):
        self.imports.append(
            {"module": module, "names": list(names), "line": line, "type_checking": self.type_checking > 0}
        )

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node):
        module = resolve_relative(node.module, node.level, self.package)
        if module is None:
            return
        names = [a.name for a in node.names]
        if names == ["*"]:
            self.star_imports.append({"module": module, "line": node.lineno})
            self._add(module, node.lineno)
        else:
            self._add(module, node.lineno, names)

    def _package_value(self, node):
        """A literal package, or `__package__` / `__name__` of the scanned module."""
        if isinstance(node, ast.Name) and node.id == "__package__":
            return self.package
        if isinstance(node, ast.Name) and node.id == "__name__":
            return self.module
        return literal_str(node)

    def visit_Call(self, node):
        func = node.func
        call = None
        if isinstance(func, ast.Name) and func.id in ("__import__", "import_module"):
            call = func.id
        elif isinstance(func, ast.Attribute) and func.attr == "import_module":
            call = "{}.import_module".format(getattr(func.value, "id", "..."))
        if call:
            name = literal_str(node.args[0]) if node.args else None
            package = self._package_value(node.args[1]) if len(node.args) > 1 else None
            for kw in node.keywords:
                if kw.arg == "package":
                    package = self._package_value(kw.value)
                if kw.arg == "name":
                    name = literal_str(kw.value)
            if name is not None and name.startswith("."):
                level = len(name) - len(name.lstrip("."))
                name = resolve_relative(name.lstrip(".") or None, level, package or "") if package else None
            self.dynamic.append(
                {"call": call, "line": node.lineno, "module": name, "type_checking": self.type_checking > 0}
            )
        self.generic_visit(node)


def top_level_all(tree):
    """The names of a literal `__all__` (`=`, `+=`, `.extend`/`.append` of literals), else None."""
    names = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            values = literal_strs(node.value)
            names = values if values is not None else names
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__":
            values = literal_strs(node.value)
            if values is not None:
                names = (names or []) + values
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "__all__"
                and node.value.args
            ):
                if func.attr == "extend":
                    values = literal_strs(node.value.args[0])
                elif func.attr == "append":
                    value = literal_str(node.value.args[0])
                    values = None if value is None else [value]
                else:
                    values = None
                if values is not None:
                    names = (names or []) + values
    return names


_LITERALS = (ast.List, ast.Tuple, ast.Dict, ast.Set, ast.JoinedStr, ast.Compare)


def top_level_bindings(tree):
    """How each top-level name is bound: `function`, `class`, `literal`, `import` or `other`.

    A name bound only inside a top-level if/try/with block is `other` (the branch that binds it is
    known at run time); a star import binds `*` (any name may come from it).
    """
    kinds = {}

    def bind(target, kind):
        if isinstance(target, ast.Name):
            kinds[target.id] = kind

    def visit(statements, conditional):
        for node in statements:
            if isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
                blocks = [getattr(node, f, None) or [] for f in ("body", "orelse", "finalbody")]
                blocks += [h.body for h in getattr(node, "handlers", None) or []]
                for block in blocks:
                    visit(block, True)
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind, targets = "function", [ast.Name(id=node.name)]
            elif isinstance(node, ast.ClassDef):
                kind, targets = "class", [ast.Name(id=node.name)]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                value = node.value
                if value is None:
                    continue
                if isinstance(value, _LITERALS) or literal_str(value) is not None or isinstance(value, _STR_TYPES):
                    kind = "literal"
                else:
                    kind = "function" if isinstance(value, ast.Lambda) else "other"
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                kind = "import"
                targets = [ast.Name(id="*" if a.name == "*" else (a.asname or a.name).split(".")[0]) for a in node.names]
            else:
                continue
            for target in targets:
                if conditional and kinds.get(getattr(target, "id", None)) != kind:
                    kind_here = "other"
                else:
                    kind_here = kind
                bind(target, kind_here)

    visit(tree.body, False)
    return kinds


def scan_file(path, source, module, is_package):
    package = module if is_package else module.rpartition(".")[0]
    report = {"path": path, "module": module}
    try:
        tree = compile(source, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as e:
        report["error"] = {"line": e.lineno, "offset": e.offset, "msg": e.msg}
        return report, None
    scanner = Scanner(module, package)
    scanner.visit(tree)
    report["imports"] = scanner.imports
    report["star_imports"] = scanner.star_imports
    report["dynamic"] = scanner.dynamic
    report["all"] = top_level_all(tree) if is_package else None
    return report, tree


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    handler = spec.get("handler") or {}
    files = []
    bindings = None
    for entry in spec["files"]:
        with open(entry["path"], "rb") as f:
            source = f.read()
        is_package = entry["path"].endswith("/__init__.py") or entry["path"] == "__init__.py"
        report, tree = scan_file(entry["path"], source, entry["module"], is_package)
        files.append(report)
        if tree is not None and entry["path"] == handler.get("path"):
            bindings = top_level_bindings(tree)
    json.dump(
        {"python": list(sys.version_info[:3]), "files": files, "handler_bindings": bindings},
        sys.stdout,
        sort_keys=True,
    )


if __name__ == "__main__":
    main(sys.argv[1])
