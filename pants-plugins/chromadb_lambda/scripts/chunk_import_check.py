"""Runs in ONE container of a base image (`python3 -c <this file>`, the bundle on stdin): the import
check of several Lambda images built on that base, each in the filesystem of its own image.

The bundle (a tar) holds `index.json` (the task root, the base's Env, and per member: its layer file,
its image's Env and WorkingDir, the handler's module and function), `check.py` (import_check_script.py)
and each member's layer tar: the exact bytes of the image's last layer. For each member in turn the
layer is extracted over the base's filesystem at its own paths (what the engine does when it stacks
the layer), then `check.py` runs in a fresh `python3` with the image's Env and WorkingDir; then what
the layer changed is put back as the base had it (the task root from a pristine copy, its parents'
metadata), so the next member starts from the base again. Assembled layers add files only: a
whiteout (`.wh.` entry) or a path outside the task root and its parents is refused.

In a prover (prover.py: a container of the base kept between checks, reached by `docker exec`) the
run ends as it began: the pristine copy is removed and /tmp's metadata put back, so that the
container's writable layer holds only the restored directories; and the driver refuses to start
(DIRTY_EXIT, 4) when a process other than the container's first one runs (e.g. one an import left
behind): prover.py then replaces the prover.

Prints one line per member, `<MEMBER_MARKER> <json>` (`name`, `exit_code`, `stdout`, `stderr`), and
exits TIMEOUT_EXIT (3) when a member's import timed out (a verdict that must not be cached), else 0.
Standard library only, any Python 3 the base may have.
"""
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

MEMBER_MARKER = "CHROMADB_LAMBDA_CHUNK_MEMBER"
TIMEOUT_EXIT = 3
DIRTY_EXIT = 4
PRISTINE = "/tmp/.chromadb-lambda-pristine-task-root"


def parents(path):
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def layer_problem(names, task_root):
    """Why this layer cannot be applied by extraction, or None."""
    root = task_root.strip("/")
    allowed_parents = {p.strip("/") for p in parents(task_root)}
    for name in names:
        name = name.rstrip("/")
        if os.path.basename(name).startswith(".wh."):
            return "the layer has a whiteout entry %r" % name
        if name.startswith("/") or ".." in name.split("/"):
            return "the layer has the path %r" % name
        if not (name == root or name.startswith(root + "/") or name in allowed_parents):
            return "the layer writes %r, outside the task root %s" % (name, task_root)
    return None


class Filesystem:
    """The base's task root and its parents, saved before the first member and put back after each."""

    def __init__(self, task_root, pristine=PRISTINE):
        self.task_root = task_root
        self.pristine = pristine
        self.had_root = os.path.lexists(task_root)
        if self.had_root:
            shutil.copytree(task_root, pristine, symlinks=True)
        self.parents = {}
        for path in parents(task_root):
            self.parents[path] = os.lstat(path) if os.path.lexists(path) else None

    def restore(self):
        if os.path.lexists(self.task_root):
            shutil.rmtree(self.task_root)
        if self.had_root:
            shutil.copytree(self.pristine, self.task_root, symlinks=True)
            st = os.lstat(self.pristine)
            os.chown(self.task_root, st.st_uid, st.st_gid)
        for path in reversed(list(self.parents)):
            st = self.parents[path]
            if st is None:
                if os.path.lexists(path):
                    shutil.rmtree(path)
                continue
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, st.st_mode & 0o7777)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def member_env(base_env, image_env):
    """The container's environment (HOSTNAME, HOME... that `docker run` adds) with the image's Env in
    place of the base's."""
    env = dict(os.environ)
    for entry in base_env:
        env.pop(entry.split("=", 1)[0], None)
    for entry in image_env:
        name, _, value = entry.partition("=")
        env[name] = value
    return env


def check_member(bundle, index, member, check_source):
    task_root = index["task_root"]
    layer = tarfile.open(fileobj=bundle.extractfile(member["layer"]))
    problem = layer_problem(layer.getnames(), task_root)
    if problem:
        return {"exit_code": 2, "stdout": "", "stderr": problem}
    kwargs = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    layer.extractall("/", **kwargs)
    env = member_env(index["base_env"], member["env"])
    python = shutil.which("python3", path=env.get("PATH", os.defpath))
    if python is None:
        return {"exit_code": 127, "stdout": "", "stderr": "no python3 on the image's PATH"}
    argv = [python, "-B", "-c", check_source, member["module"], member["function"], task_root, str(index["timeout"])]
    try:
        done = subprocess.run(
            argv, cwd=member["workdir"] or "/", env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=index["timeout"] + 30,
        )
    except subprocess.TimeoutExpired:
        return {"exit_code": TIMEOUT_EXIT, "stdout": "", "stderr": "the import check did not finish"}
    return {
        "exit_code": done.returncode,
        "stdout": done.stdout.decode(errors="replace"),
        "stderr": done.stderr.decode(errors="replace")[-4000:],
    }


def other_processes():
    """Processes in this container besides its first one (1) and this one."""
    ours = (1, os.getpid())
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in ours)


def main():
    others = other_processes()
    if others:
        sys.stderr.write("other processes run in this container: %s\n" % others)
        sys.exit(DIRTY_EXIT)
    bundle = tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()))
    index = json.load(bundle.extractfile("index.json"))
    check_source = bundle.extractfile("check.py").read().decode()
    tmp = os.lstat("/tmp")
    filesystem = Filesystem(index["task_root"])
    timed_out = False
    try:
        for member in index["members"]:
            try:
                result = check_member(bundle, index, member, check_source)
            finally:
                filesystem.restore()
            timed_out = timed_out or result["exit_code"] == TIMEOUT_EXIT
            result["name"] = member["name"]
            sys.stdout.write("%s %s\n" % (MEMBER_MARKER, json.dumps(result, sort_keys=True)))
            sys.stdout.flush()
    finally:
        if os.path.lexists(filesystem.pristine):
            shutil.rmtree(filesystem.pristine)
        os.chown("/tmp", tmp.st_uid, tmp.st_gid)
        os.chmod("/tmp", tmp.st_mode & 0o7777)
        os.utime("/tmp", ns=(tmp.st_atime_ns, tmp.st_mtime_ns))
    sys.exit(TIMEOUT_EXIT if timed_out else 0)


if __name__ == "__main__":
    main()
