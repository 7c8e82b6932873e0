from chromadb_lambda.util_rules.checks import DynamicImport, dynamic_imports_message, large_context_message


def test_messages_name_the_target_and_the_fix() -> None:
    message = dynamic_imports_message("lambdas/r:r", [DynamicImport("r/router.py", 7, "importlib.import_module")])
    assert "r/router.py:7: importlib.import_module(...)" in message and "`dependencies` field of lambdas/r:r" in message
    large = large_context_message("lambdas/r:r", 300, 100, [("a.bin", 200), ("b.py", 100)])
    assert "[lambda-image].context_size_warning" in large and "a.bin: 200 bytes" in large
    assert "pants lambda-context lambdas/r:r" in large
