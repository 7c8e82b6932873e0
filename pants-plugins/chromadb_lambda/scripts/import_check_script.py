"""Runs inside a Lambda image (`python3 -c <this file> MODULE FUNCTION TASK_ROOT TIMEOUT`): imports the
handler as the Lambda runtime does and prints one verdict line, `<MARKER> <json>`, then exits 0.

It reports facts only; the plugin classifies them (first-party or not needs Pants' module mapping).
Nothing here may import anything beyond the standard library, and it must run on any Python 3 the
image may have. The handler's own output during the import goes to stderr, so stdout holds only the
verdict.
"""
import importlib
import json
import os
import signal
import sys
import traceback

MARKER = "CHROMADB_LAMBDA_IMPORT_CHECK"
# The exit code of a verdict that must not be cached (the import timed out).
TIMEOUT_EXIT = 3


class ImportTimeout(Exception):
    """The handler module did not finish importing in time."""


def _frames(tb):
    # The source line too: it names the module a dynamic import asked for.
    return [[frame.filename, frame.lineno, frame.line or ""] for frame in traceback.extract_tb(tb)]


def _on_timeout(signum, frame):
    raise ImportTimeout("the import did not finish in %s seconds" % sys.argv[4])


def check(module_name, function_name, task_root):
    # The runtime puts the task root first on sys.path (awslambdaric: the working directory, which is
    # the task root; `python3 -c` would put "" there).
    sys.path[:] = [task_root] + [p for p in sys.path if p not in ("", task_root)]
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except BaseException as e:  # SystemExit and KeyboardInterrupt at import are failures too.
        verdict = {
            "status": "raised",
            "type": type(e).__name__,
            "message": str(e),
            "frames": _frames(e.__traceback__),
        }
        if isinstance(e, ImportError):
            verdict["module"] = e.name
            verdict["not_found"] = isinstance(e, ModuleNotFoundError)
        return verdict
    if not hasattr(module, function_name):
        return {"status": "missing", "file": getattr(module, "__file__", None)}
    handler = getattr(module, function_name)
    if isinstance(handler, type) or not callable(handler):
        return {"status": "not_callable", "type": type(handler).__name__, "is_class": isinstance(handler, type)}
    return {"status": "ok", "file": getattr(module, "__file__", None)}


def main():
    module_name, function_name, task_root, timeout = sys.argv[1:5]
    stdout = sys.stdout
    sys.stdout = sys.stderr
    signal.signal(signal.SIGALRM, _on_timeout)
    signal.alarm(int(timeout))
    try:
        verdict = check(module_name, function_name, task_root)
    finally:
        signal.alarm(0)
        sys.stdout = stdout
    stdout.write("%s %s\n" % (MARKER, json.dumps(verdict, sort_keys=True)))
    stdout.flush()
    # Skip interpreter teardown: a handler's atexit hooks or threads must not change the verdict.
    # A timeout says something about this machine now, not about the image: exit non-zero so that
    # the verdict is not cached.
    os._exit(TIMEOUT_EXIT if verdict.get("type") == "ImportTimeout" else 0)


if __name__ == "__main__":
    main()
