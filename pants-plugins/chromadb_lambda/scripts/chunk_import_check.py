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
import array
import ast
import hashlib
import io
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tarfile
import time

MEMBER_MARKER = "CHROMADB_LAMBDA_CHUNK_MEMBER"
TIMEOUT_EXIT = 3
DIRTY_EXIT = 4
PRISTINE = "/tmp/.chromadb-lambda-pristine-task-root"
# import_check_script.MARKER: a member's verdict line.
VERDICT_MARKER = "CHROMADB_LAMBDA_IMPORT_CHECK"
# The zygote (zygote.py, in the bundle when enabled): its abstract socket and idle exit.
ZYGOTE_SOCKET = "chromadb-lambda-zygote"
ZYGOTE_IDLE_SECONDS = 600
# How long a check waits for a zygote that is busy (zygote.PRELOAD_SECONDS and some).
ZYGOTE_BUSY_SECONDS = 90


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


def env_digest(env):
    """zygote.env_digest: the zygote serves only members whose environment hashes the same."""
    return hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()


def task_names(names, task_root):
    """The top-level module names the layer puts in the task root (`pkg/`, `mod.py`, `ext.cpython-311-x86_64-linux-gnu.so`)."""
    root = task_root.strip("/") + "/"
    found = set()
    for name in names:
        if name.startswith(root) and len(name) > len(root):
            found.add(name[len(root):].split("/")[0].split(".")[0])
    return sorted(n for n in found if n)


def top_level_imports(source):
    """The absolute module names a module imports in statements of its body (not in functions or
    blocks: those may never run at import)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


def layer_imports(layer, task_root):
    """What the layer's Python files import at their top level, minus the modules the layer provides."""
    root = task_root.strip("/") + "/"
    own = set(task_names(layer.getnames(), task_root))
    names = set()
    for info in layer.getmembers():
        if info.isfile() and info.name.startswith(root) and info.name.endswith(".py"):
            names |= top_level_imports(layer.extractfile(info).read())
    return sorted(n for n in names if n.split(".")[0] not in own)


def verdict_ok(result):
    """Exit 0 and `ok` as the last verdict line (what the plugin classifies `passed`)."""
    if result["exit_code"] != 0:
        return False
    lines = [line for line in result["stdout"].splitlines() if line.startswith(VERDICT_MARKER + " ")]
    return bool(lines) and json.loads(lines[-1][len(VERDICT_MARKER) + 1:]).get("status") == "ok"


def gone(pid):
    """A process that ended: no longer listed, or a zombie (an exited zygote the prover's first process
    reaps only between checks, while this driver runs)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


class ZygoteClient:
    """The driver's side of zygote.py: one request per connection on its abstract socket."""

    def __init__(self, source, task_root):
        self.source, self.task_root = source, task_root
        # A zygote started from another zygote.py (another checkout's, on a prover of the same base)
        # answers on the same socket: it is stopped and this one started.
        self.digest = hashlib.sha256(source.encode()).hexdigest()
        self.pid, self.env, self.started_from = None, None, None
        # At most two starts per check (one per environment change): a zygote that did not answer is
        # not started again, the members run in fresh interpreters.
        self.starts = 0

    def call(self, request, fds=(), timeout=10.0):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect("\0" + ZYGOTE_SOCKET)
            data = json.dumps(request).encode() + b"\n"
            if fds:
                sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            else:
                sock.sendall(data)
            return sock, self.read_reply(sock)
        except (OSError, ValueError):
            sock.close()
            return None, None

    @staticmethod
    def read_reply(sock):
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        return json.loads(data.decode())

    def hello(self, timeout=2.0):
        sock, reply = self.call({"op": "hello"}, timeout=timeout)
        if sock is not None:
            sock.close()
        if reply:
            self.pid, self.env, self.started_from = reply.get("pid"), reply.get("env"), reply.get("source")
        return reply

    def stop(self):
        sock, _ = self.call({"op": "exit"}, timeout=2.0)
        if sock is not None:
            sock.close()
        for _ in range(200):
            if self.pid is None or gone(self.pid):
                break
            time.sleep(0.005)
        self.pid, self.env, self.started_from = None, None, None

    def start(self, python, env):
        if self.starts >= 2:
            return None
        self.starts += 1
        subprocess.Popen(
            [python, "-B", "-c", self.source, ZYGOTE_SOCKET, str(ZYGOTE_IDLE_SECONDS), self.task_root, self.digest],
            env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = self.hello(timeout=30)
            if reply:
                return reply
            time.sleep(0.005)
        return None

    def check(self, python, env, args, source, cwd, timeout, names, imports):
        """A member's check in a child of the zygote (started as needed), or None (not eligible, or the
        zygote failed): the caller then runs a fresh interpreter."""
        if self.pid is None or self.env != env_digest(env) or self.started_from != self.digest:
            if self.pid is not None:
                self.stop()
            if not self.start(python, env) or self.env != env_digest(env) or self.started_from != self.digest:
                return None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = {"op": "run", "source": source, "args": args, "cwd": cwd, "timeout": timeout,
                   "env": env_digest(env), "task_root": self.task_root, "task_names": names, "imports": imports}
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect("\0" + ZYGOTE_SOCKET)
            sock.sendmsg([json.dumps(request).encode() + b"\n"],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [out_w, err_w]))])
        except OSError:
            sock.close()
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            self.pid = None
            return None
        os.close(out_w)
        os.close(err_w)
        outputs = {out_r: b"", err_r: b""}
        reply_data = b""
        reply = None
        selector = selectors.DefaultSelector()
        for fd in (out_r, err_r):
            selector.register(fd, selectors.EVENT_READ)
        selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout + 35
        grace = None
        open_fds = {out_r, err_r}
        try:
            while time.monotonic() < deadline and (reply is None or open_fds):
                if reply is not None and grace is None:
                    grace = time.monotonic() + 1.0  # a process left holding the streams: stop reading
                if grace is not None and time.monotonic() > grace:
                    break
                for key, _ in selector.select(0.05):
                    if key.fileobj is sock:
                        chunk = sock.recv(65536)
                        if not chunk:
                            selector.unregister(sock)
                            if reply is None:
                                return self.failed()
                            continue
                        reply_data += chunk
                        if reply_data.endswith(b"\n"):
                            reply = json.loads(reply_data.decode())
                            selector.unregister(sock)
                    else:
                        chunk = os.read(key.fileobj, 65536)
                        if chunk:
                            outputs[key.fileobj] += chunk
                        else:
                            selector.unregister(key.fileobj)
                            open_fds.discard(key.fileobj)
            if reply is None:
                return self.failed()
            if "refused" in reply:
                return None
            if reply.get("timed_out"):
                return {"exit_code": TIMEOUT_EXIT, "stdout": "", "stderr": "the import check did not finish", "via": "zygote"}
            return {
                "exit_code": int(reply["exit_code"]),
                "stdout": outputs[out_r].decode(errors="replace"),
                "stderr": outputs[err_r].decode(errors="replace")[-4000:],
                "via": "zygote",
            }
        finally:
            selector.close()
            sock.close()
            os.close(out_r)
            os.close(err_r)

    def failed(self):
        self.pid = None
        return None


def check_member(bundle, index, member, check_source, zygote=None):
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
    args = [member["module"], member["function"], task_root, str(index["timeout"])]
    if zygote is not None:
        names = task_names(layer.getnames(), task_root)
        result = zygote.check(python, env, args, check_source, member["workdir"] or "/", index["timeout"], names,
                              layer_imports(layer, task_root))
        # Only an `ok` verdict (or a timeout: not cached) is taken from the zygote; any other verdict is
        # the fresh interpreter's, below, so that a failure reads exactly as a fresh run gives it.
        if result is not None and (verdict_ok(result) or result["exit_code"] == TIMEOUT_EXIT):
            return result
    argv = [python, "-B", "-c", check_source, *args]
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


def other_processes(zygote_pid=None):
    """Processes in this container besides its first one (1), this one, and the zygote (the process
    that answered on the zygote's socket)."""
    ours = (1, os.getpid(), zygote_pid)
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in ours and not gone(int(p)))


def main():
    bundle = tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()))
    index = json.load(bundle.extractfile("index.json"))
    zygote = None
    if index.get("zygote") and "zygote.py" in bundle.getnames():
        zygote = ZygoteClient(bundle.extractfile("zygote.py").read().decode(), index["task_root"])
        # A zygote still preloading what the last check imported answers when done (then it is the
        # zygote, not a process left behind).
        zygote.hello(timeout=ZYGOTE_BUSY_SECONDS)
    others = other_processes(zygote.pid if zygote is not None else None)
    if others:
        sys.stderr.write("other processes run in this container: %s\n" % others)
        sys.exit(DIRTY_EXIT)
    check_source = bundle.extractfile("check.py").read().decode()
    tmp = os.lstat("/tmp")
    filesystem = Filesystem(index["task_root"])
    timed_out = False
    try:
        for member in index["members"]:
            try:
                result = check_member(bundle, index, member, check_source, zygote)
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
