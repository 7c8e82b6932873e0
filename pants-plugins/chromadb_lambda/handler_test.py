import pytest

from chromadb_lambda.checks import ClosureSyntaxError
from chromadb_lambda.handler import close_names, defined_names, module_path_candidates


def test_module_path_candidates() -> None:
    assert module_path_candidates("a.b") == ("a/b.py", "a/b/__init__.py")


def test_defined_names_sees_functions_assignments_and_imports() -> None:
    source = b"import os\nfrom x import y as z\ndef f(): pass\nasync def g(): pass\nh = f\nclass C: pass\n"
    assert defined_names(source, "m.py") == {"os", "z", "f", "g", "h", "C"}


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ClosureSyntaxError, match=r"m.py:2: "):
        defined_names(b"x = 1\ndef (:\n", "m.py")


def test_close_names() -> None:
    assert close_names("handel", frozenset({"handle", "other"})) == ["handle"]
