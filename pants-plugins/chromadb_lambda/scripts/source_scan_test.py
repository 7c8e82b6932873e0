"""`source_scan.py` run in-process on small sources (the syntax it reads here is valid on 3.9 too;
Python 3.10+ syntax is covered end to end, where the Lambda's 3.11 runs the script)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from chromadb_lambda.scripts import source_scan
from chromadb_lambda.scripts.source_scan import resolve_relative, scan_file, top_level_bindings
from chromadb_lambda.util_rules.scan import scan_argv


def scan(source: str, module: str = "pkg.mod", path: str = "src/pkg/mod.py") -> dict:
    report, _ = scan_file(path, source.encode(), module, path.endswith("__init__.py"))
    return report


def test_relative_imports_resolve_against_the_package() -> None:
    assert resolve_relative("x", 2, "a.b.c") == "a.b.x"
    assert resolve_relative(None, 1, "a.b") == "a.b"
    assert resolve_relative("x", 0, "a") == "x"
    assert resolve_relative("x", 3, "a") is None
    assert resolve_relative("x", 2, "a") is None  # beyond the top-level package


def test_imports_with_lines_names_and_type_checking() -> None:
    report = scan(
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    import pytest\n"
        "else:\n"
        "    import json\n"
        "import typing\n"
        "if typing.TYPE_CHECKING:\n"
        "    from moto import mock_aws\n"
    )
    assert report["imports"] == [
        {"module": "os", "names": [], "line": 1, "type_checking": False},
        {"module": "typing", "names": ["TYPE_CHECKING"], "line": 2, "type_checking": False},
        {"module": "pkg", "names": ["sibling"], "line": 3, "type_checking": False},
        {"module": "pytest", "names": [], "line": 5, "type_checking": True},
        {"module": "json", "names": [], "line": 7, "type_checking": False},
        {"module": "typing", "names": [], "line": 8, "type_checking": False},
        {"module": "moto", "names": ["mock_aws"], "line": 10, "type_checking": True},
    ]


def test_star_imports_and_all() -> None:
    init = scan('__all__ = ["a"]\n__all__ += ["b"]\n__all__.extend(["c"])\n__all__.append("d")\n', "pkg", "src/pkg/__init__.py")
    assert init["all"] == ["a", "b", "c", "d"]
    computed = scan("__all__ = [n for n in dir()]\n", "pkg", "src/pkg/__init__.py")
    assert computed["all"] is None
    user = scan("from pkg import *\nfrom .sub import *\n", "pkg.user")
    assert user["star_imports"] == [{"module": "pkg", "line": 1}, {"module": "pkg.sub", "line": 2}]


def test_dynamic_imports_literal_relative_and_computed() -> None:
    report = scan(
        "import importlib\n"
        "importlib.import_module('a.b')\n"
        "importlib.import_module('.plugin', __package__)\n"
        "importlib.import_module('.other', package='pkg.sub')\n"
        "__import__(name)\n"
        "importlib.import_module(ROUTES[kind])\n",
        "pkg.router",
    )
    assert [(d["call"], d["line"], d["module"]) for d in report["dynamic"]] == [
        ("importlib.import_module", 2, "a.b"),
        ("importlib.import_module", 3, "pkg.plugin"),
        ("importlib.import_module", 4, "pkg.sub.other"),
        ("__import__", 5, None),
        ("importlib.import_module", 6, None),
    ]


def test_syntax_error_keeps_the_given_path() -> None:
    report = scan("x = 1\n\ndef f(:\n", path="src/pkg/bad.py")
    assert report["error"]["line"] == 3 and report["path"] == "src/pkg/bad.py"


def test_handler_bindings() -> None:
    import ast

    tree = ast.parse(
        "import logging\nfrom x import y as z\ndef f(): pass\nasync def g(): pass\nclass C: pass\n"
        "logger = logging.getLogger()\nNAME = 'n'\nTABLE: dict = {}\nh = lambda e, c: 1\n"
    )
    assert top_level_bindings(tree) == {
        "logging": "import",
        "z": "import",
        "f": "function",
        "g": "function",
        "C": "class",
        "logger": "other",
        "NAME": "literal",
        "TABLE": "literal",
        "h": "function",
    }


def test_handler_bindings_in_conditional_blocks_and_star_imports_are_left_to_the_image() -> None:
    import ast

    tree = ast.parse(
        "import os\nfrom .impl import *\n"
        "if os.environ.get('X'):\n    handler = wrap(_h)\nelse:\n    handler = _h\n"
        "try:\n    def fast(): pass\nexcept ImportError:\n    fast = None\n"
        "traced = wrap(_h) or _h\n"
    )
    assert top_level_bindings(tree) == {"os": "import", "*": "import", "handler": "other", "fast": "other", "traced": "other"}


def test_the_script_reports_json(tmp_path: Path) -> None:
    """Run as the scan process runs it: its argv (`-I -S`: no site, standard library only) in a
    sandbox holding the script, the spec and the files."""
    (tmp_path / "src/pkg").mkdir(parents=True)
    (tmp_path / "src/pkg/handler.py").write_text("def handle(event, context):\n    return 1\n")
    spec = {"files": [{"path": "src/pkg/handler.py", "module": "pkg.handler"}], "handler": {"path": "src/pkg/handler.py"}}
    argv = scan_argv(sys.executable)
    shutil.copy(source_scan.__file__, tmp_path / argv[-2])
    (tmp_path / argv[-1]).write_text(json.dumps(spec))
    out = subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    assert report["handler_bindings"] == {"handle": "function"}
    assert report["files"][0]["module"] == "pkg.handler" and report["files"][0]["imports"] == []
