import pytest

from chromadb_lambda.util_rules.checks import (
    ClosureSyntaxError,
    close_names,
    defined_names,
    dynamic_imports_message,
    large_context_message,
    module_path_candidates,
)
from chromadb_lambda.util_rules.module_uses import DynamicImport


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


def test_handler_binding_problem() -> None:
    from chromadb_lambda.util_rules.checks import handler_binding_problem

    bindings = {"handle": "function", "Handler": "class", "NAME": "literal", "logger": "other", "run": "import"}
    assert handler_binding_problem("handle", bindings) is None
    assert handler_binding_problem("logger", bindings) is None  # bound at run time: checked in the image
    assert handler_binding_problem("run", bindings) is None
    assert handler_binding_problem("Handler", bindings) == (
        "defines it as a class: the Lambda runtime calls the handler with (event, context), so name a function."
    )
    assert handler_binding_problem("NAME", bindings) == (
        "binds it to a literal value, which the Lambda runtime cannot call: name a function."
    )
    assert handler_binding_problem("handel", bindings) == "does not define it. Did you mean 'handle' or 'Handler'?"
    # A star import may bind any name: left to the import check in the image.
    assert handler_binding_problem("handel", {**bindings, "*": "import"}) is None


def test_handler_value_problem() -> None:
    from chromadb_lambda.target_types import handler_value_problem

    assert handler_value_problem("handler.py:handle") is None
    assert handler_value_problem("sub/handler.py:handle") is None
    assert handler_value_problem("pkg.mod:handle") is None
    assert "in the target's folder or below it" in (handler_value_problem("../x/handler.py:handle") or "")
    assert "in the target's folder or below it" in (handler_value_problem("/abs/handler.py:handle") or "")
    assert "glob characters" in (handler_value_problem("h*.py:handle") or "")
    assert handler_value_problem("handler.py:") == "the part after `:` must be the name of a function, e.g. `handler.py:handle`."
    assert "dotted.module:handle" in (handler_value_problem("pkg/mod:handle") or "")


def test_messages_name_the_target_and_the_fix() -> None:
    message = dynamic_imports_message("lambdas/r:r", [DynamicImport("r/router.py", 7, "importlib.import_module")])
    assert "r/router.py:7: importlib.import_module(...)" in message and "`dependencies` field of lambdas/r:r" in message
    large = large_context_message("lambdas/r:r", 300, 100, [("a.bin", 200), ("b.py", 100)])
    assert "[lambda-image].context_size_warning" in large and "a.bin: 200 bytes" in large
    assert "pants lambda-context lambdas/r:r" in large
