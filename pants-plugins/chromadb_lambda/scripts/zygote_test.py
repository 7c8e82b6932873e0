"""The zygote's and its driver's pure parts: what a member imports, which names its layer provides,
which verdict counts, and the state a preload must not change."""
from __future__ import annotations

import io
import os
import signal
import sys
import tarfile
import time
import warnings

from chromadb_lambda.scripts.chunk_import_check import (
    env_digest,
    gone,
    layer_imports,
    task_names,
    top_level_imports,
    verdict_ok,
)
from chromadb_lambda.scripts import zygote
from chromadb_lambda.scripts.zygote import ChildState, Snapshot, held_tops, path_reaches


def layer(files: dict[str, bytes]) -> tarfile.TarFile:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data.seek(0)
    return tarfile.open(fileobj=data)


def test_task_names_are_the_top_level_modules_of_the_task_root() -> None:
    names = [
        "var", "var/task", "var/task/handler.py", "var/task/pkg", "var/task/pkg/__init__.py",
        "var/task/fast.cpython-311-x86_64-linux-gnu.so", "var/other.py",
    ]
    assert task_names(names, "/var/task") == ["fast", "handler", "pkg"]


def test_top_level_imports_are_the_module_body_statements_only() -> None:
    source = b"""
import os, boto3.session as s
from botocore.config import Config
from . import sibling
from .pkg import thing
if True:
    import inside_if
def f():
    import lazy
try:
    import optional
except ImportError:
    pass
"""
    assert top_level_imports(source) == {"os", "boto3.session", "botocore.config"}
    assert top_level_imports(b"def broken(:\n") == set()


def test_layer_imports_leave_out_what_the_layer_provides() -> None:
    tar = layer({
        "var/task/handler.py": b"import boto3\nimport receipt_common\nfrom pkg import x\n",
        "var/task/receipt_common/__init__.py": b"import chromadb\nimport json\n",
        "var/task/pkg.py": b"",
        "var/task/data.txt": b"import nothing\n",
    })
    assert layer_imports(tar, "/var/task") == ["boto3", "chromadb", "json"]


def test_only_exit_0_with_a_last_verdict_ok_counts() -> None:
    ok = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "ok"}\n'
    raised = 'CHROMADB_LAMBDA_IMPORT_CHECK {"status": "raised"}\n'
    assert verdict_ok({"exit_code": 0, "stdout": ok})
    assert not verdict_ok({"exit_code": 0, "stdout": ok + raised})
    assert verdict_ok({"exit_code": 0, "stdout": raised + ok})
    assert not verdict_ok({"exit_code": 3, "stdout": ok})
    assert not verdict_ok({"exit_code": 0, "stdout": "no verdict\n"})


def test_the_env_digest_is_the_zygotes() -> None:
    env = {"PATH": "/usr/bin", "LAMBDA_TASK_ROOT": "/var/task"}
    assert env_digest(env) == zygote.env_digest(dict(reversed(list(env.items()))))
    assert env_digest(env) != env_digest({**env, "PYTHONPATH": "/x"})


def test_an_import_path_reaching_the_task_root() -> None:
    assert path_reaches("/var/task", "/var/task")
    assert path_reaches("/var/task/lib", "/var/task")
    assert path_reaches("/var", "/var/task")
    assert path_reaches("/", "/var/task")
    assert not path_reaches("/opt/venv/lib/python3.11/site-packages", "/var/task")
    assert not path_reaches("/var/task2", "/var/task")


def test_a_snapshot_sees_what_a_preload_could_change(monkeypatch) -> None:
    baseline = ["os", "sys"]
    before = Snapshot(baseline)
    assert before.changed(Snapshot(baseline)) is None

    monkeypatch.setenv("CHROMADB_LAMBDA_ZYGOTE_TEST", "1")
    assert before.changed(Snapshot(baseline)) == "environ"
    monkeypatch.delenv("CHROMADB_LAMBDA_ZYGOTE_TEST")

    monkeypatch.setattr(sys, "path", [*sys.path, "/elsewhere"])
    assert before.changed(Snapshot(baseline)) == "path"
    monkeypatch.undo()

    monkeypatch.setattr(os, "getcwd", lambda: "/patched")
    # Snapshot reads the cwd through the patched function; the patch itself is a changed `os` attribute.
    assert before.changed(Snapshot(baseline)) in ("cwd", "os.getcwd")
    monkeypatch.undo()

    handler = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, lambda *a: None)
    try:
        assert before.changed(Snapshot(baseline)) == "signals"
    finally:
        signal.signal(signal.SIGUSR1, handler)
    assert before.changed(Snapshot(baseline)) is None


class Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        return None


def test_an_import_finder_may_be_appended_by_a_preloaded_package_only(monkeypatch) -> None:
    before = Snapshot(["sys"])
    finder = Finder()
    saved = list(sys.meta_path)
    try:
        sys.meta_path.append(finder)  # in place, as botocore's vendored six does
        after = Snapshot(["sys"])
        # The finder's class is this test module's: allowed only when its package was preloaded.
        assert before.changed(after, packages={"chromadb_lambda"}) is None
        assert before.changed(after, packages={"boto3"}) == f"an import finder of {__name__}"
        # Put first, it would be asked before the standard finders: never allowed.
        sys.meta_path[:] = [finder, *saved]
        assert before.changed(Snapshot(["sys"]), packages={"chromadb_lambda"}) == "meta_path"
    finally:
        sys.meta_path[:] = saved


def test_a_standard_module_may_gain_a_submodule_but_not_another_attribute(monkeypatch) -> None:
    before = Snapshot(["os"])
    monkeypatch.setattr(os, "zygote_test_submodule", type(sys)("os.zygote_test_submodule"), raising=False)
    assert before.changed(Snapshot(["os"])) is None
    monkeypatch.setattr(os, "zygote_test_value", 1, raising=False)
    assert before.changed(Snapshot(["os"])) == "os.zygote_test_value"


def test_a_childs_state_sees_what_a_members_first_party_code_changed(monkeypatch) -> None:
    # In a child the preloaded modules were imported before the member's code ran; in a fresh
    # interpreter after it. What that code leaves changed makes the child's `ok` not count.
    path = list(sys.path)
    state = ChildState()
    assert state.changed(path) is None
    # New imports are what an import does.
    monkeypatch.setitem(sys.modules, "chromadb_lambda_zygote_test_new", type(sys)("new"))
    assert state.changed(path) is None
    # A module the zygote held, blocked (`sys.modules["botocore"] = None`) or replaced.
    monkeypatch.setitem(sys.modules, "json", None)
    assert state.changed(path) == "sys.modules['json']"
    monkeypatch.undo()
    # The import path set to the task root only (a vendoring handler): a preloaded boto3 is not found.
    monkeypatch.setattr(sys, "path", ["/var/task"])
    assert state.changed(path) == "sys.path"
    monkeypatch.undo()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 7)
    try:
        assert state.changed(path) == "the recursion limit"
    finally:
        sys.setrecursionlimit(limit)
    monkeypatch.setenv("CHROMADB_LAMBDA_ZYGOTE_TEST", "1")
    assert state.changed(path) == "os.environ ['CHROMADB_LAMBDA_ZYGOTE_TEST']"
    monkeypatch.undo()
    with warnings.catch_warnings():
        state = ChildState()
        warnings.simplefilter("ignore")  # botocore's and chromadb's imports add such filters
        assert state.changed(path) is None
        warnings.simplefilter("error")  # would turn a preloaded module's import warning into a failure
        assert state.changed(path) == "the warnings filters"
    saved = list(sys.meta_path)
    try:
        sys.meta_path.append(Finder())
        assert state.changed(path) is None
        sys.meta_path[:] = [Finder(), *saved]
        assert state.changed(path) == "the import finders"
    finally:
        sys.meta_path[:] = saved
    assert state.changed(path) is None


def test_held_tops_are_the_top_level_names_beyond_a_fresh_checks() -> None:
    modules = ["json", "json.decoder", "os", "boto3", "boto3.session", "botocore", "email.parser", "email"]
    baseline = {"json", "json.decoder", "os"}
    assert held_tops(modules, baseline) == {"boto3", "botocore", "email"}


def test_a_zombie_or_an_absent_process_is_gone_a_running_one_is_not() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    # Not waited for yet: a zombie, as an exited zygote is until the prover's first process reaps it.
    for _ in range(400):
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.005)
    assert gone(pid)
    os.waitpid(pid, 0)
    assert gone(pid)  # absent
    assert not gone(os.getpid())
