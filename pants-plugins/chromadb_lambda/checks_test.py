import pytest

from chromadb_lambda.checks import (
    ClosureSyntaxError,
    DynamicImport,
    dynamic_imports_message,
    large_context_message,
    scan_python_file,
)


def test_dynamic_imports_with_computed_names_are_found_literal_ones_are_not() -> None:
    source = b"""import importlib
from importlib import import_module

ROUTES = {"a": "pkg.a"}

def route(kind):
    importlib.import_module(ROUTES[kind])
    import_module("pkg.literal")
    return __import__(kind)
"""
    assert scan_python_file("router.py", source) == (
        DynamicImport("router.py", 7, "importlib.import_module"),
        DynamicImport("router.py", 9, "__import__"),
    )


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ClosureSyntaxError, match=r"^pkg/bad.py:3: "):
        scan_python_file("pkg/bad.py", b"x = 1\n\ndef f(:\n")


def test_messages_name_the_target_and_the_fix() -> None:
    message = dynamic_imports_message("lambdas/r:r", [DynamicImport("r/router.py", 7, "importlib.import_module")])
    assert "r/router.py:7: importlib.import_module(...)" in message and "`dependencies` field of lambdas/r:r" in message
    large = large_context_message("lambdas/r:r", 300, 100, [("a.bin", 200), ("b.py", 100)])
    assert "[lambda-image].context_size_warning" in large and "a.bin: 200 bytes" in large
    assert "pants lambda-context lambdas/r:r" in large
