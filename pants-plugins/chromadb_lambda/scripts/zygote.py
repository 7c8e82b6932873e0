"""A warm interpreter in a prover (prover.py): a long-lived `python3` of the base image that has imported
the third-party modules the members' handlers import at their top level, and forks one child per
member import check. The child becomes what a fresh `python3 -B -c <check.py> ARGS` of the image
would be at its first line (argv, sys.path, working directory, stdio, `__main__`, import caches) and
runs check.py; the verdict is read as from a fresh interpreter. chunk_import_check.py (the driver)
starts it, talks to it and decides when its verdict counts (docs/architecture.md, "The zygote").

`python3 -B -c <this file> SOCKET_NAME IDLE_SECONDS TASK_ROOT [SOURCE_DIGEST]`, started by the driver with exactly the
member's environment, cwd /, stdio /dev/null, in its own session. It listens on the abstract unix
socket SOCKET_NAME (no file: the prover's writable layer stays clean) and serves one request at a
time, one JSON line each:
  {"op": "hello"} -> {"pid", "env", "extras", "usable", "source"}: `source` the SOURCE_DIGEST it was
      started with (the driver's sha256 of this file: a zygote another version of it started is
      stopped, not asked), `env` the sha256 of the environment it
      started with, `extras` the modules it holds beyond those a fresh check.py holds before its
      import (its own and the preloaded ones), `usable` False once tainted;
  {"op": "run", "source", "args", "cwd", "timeout", "env", "preload"} with two fds (stdout, stderr)
      -> {"exit_code", "timed_out"}; then the names in `preload` are imported in the zygote itself
      (for the next children);
  {"op": "exit"}.
It refuses to serve ("usable": false, then exits) when its import path reaches the task root, or when
a preload failed or changed state a fresh interpreter would not have (environment, working directory,
umask, import path and hooks, signal handlers, threads, flags, stdio, builtins, the standard modules
it started with). It exits when no request came for IDLE_SECONDS.
Standard library only, any Python 3 the base may have.
"""
import array
import builtins
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

# What a fresh `python3 -B -c check.py` holds when it starts importing the handler: check.py's imports.
BASELINE = "import importlib, json, os, signal, sys, traceback; sys.stdout.write(json.dumps(sorted(sys.modules)))"
TIMEOUT_EXIT = 3
# A child whose member's import changed interpreter state a preloaded module's import reads (ChildState):
# its verdict is not taken (the driver imports the member again in a fresh interpreter).
STATE_EXIT = 75
# A preload's trial import that takes longer is abandoned (its modules rejected).
PRELOAD_SECONDS = 60


def env_digest(env):
    return hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()


def path_reaches(entry, task_root):
    """An import path entry that is the task root, inside it, or one of its parents."""
    entry = os.path.abspath(entry or os.getcwd()).rstrip("/") or "/"
    root = task_root.rstrip("/")
    return entry == root or entry.startswith(root + "/") or root.startswith(entry.rstrip("/") + "/")


class Snapshot:
    """The state a preload must not change."""

    def __init__(self, baseline):
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        umask = os.umask(0o22)
        os.umask(umask)
        self.umask = umask
        self.path = list(sys.path)
        self.meta_path = [id(x) for x in sys.meta_path]
        self.path_hooks = [id(x) for x in sys.path_hooks]
        self.finder_modules = [getattr(x, "__module__", "") or type(x).__module__ for x in [*sys.meta_path, *sys.path_hooks]]
        self.signals = {s: signal.getsignal(s) for s in signal.valid_signals()} if hasattr(signal, "valid_signals") else {}
        self.flags = tuple(sys.flags)
        self.dont_write_bytecode = sys.dont_write_bytecode
        self.stdio = (id(sys.stdin), id(sys.stdout), id(sys.stderr))
        self.hooks = (id(sys.excepthook), id(sys.displayhook), sys.gettrace(), sys.getprofile(), sys.getrecursionlimit())
        self.builtins = {k: id(v) for k, v in vars(builtins).items()}
        self.modules = {
            name: (id(sys.modules[name]), {k: id(v) for k, v in vars(sys.modules[name]).items()})
            for name in baseline if name in sys.modules
        }

    def changed(self, other, packages=()):
        """The first piece of state that differs in `other` (taken after a preload), or None. A standard
        module may gain submodules as attributes (`encodings.idna`): the import system binds them. The
        import finders may only gain entries at their end, each defined by one of the preloaded
        `packages` (botocore's vendored six appends its `six.moves` importer): such a finder is asked
        only for names every earlier finder missed, and serves its package's own names, whose import
        in a fresh interpreter imports that package (and installs the finder) first."""
        for field in ("environ", "cwd", "umask", "path", "signals", "flags",
                      "dont_write_bytecode", "stdio", "hooks", "builtins"):
            if getattr(self, field) != getattr(other, field):
                return field
        for field in ("meta_path", "path_hooks"):
            before, after = getattr(self, field), getattr(other, field)
            if after[: len(before)] != before:
                return field
        added = [m for m in other.finder_modules if m not in self.finder_modules]
        if any(m.split(".")[0] not in packages for m in added):
            return "an import finder of %s" % ", ".join(added)
        for name, (module_id, attributes) in self.modules.items():
            after = other.modules.get(name)
            if after is None or after[0] != module_id:
                return "sys.modules[%r]" % name
            module = vars(sys.modules[name])
            for key, value_id in after[1].items():
                if attributes.get(key) != value_id and not (key not in attributes and isinstance(module.get(key), type(sys))):
                    return "%s.%s" % (name, key)
            if set(attributes) - set(after[1]):
                return "%s lost attributes" % name
        return None


class ChildState:
    """What a member's first-party code could change before it imports a module the zygote preloaded
    (the sys.modules entries it holds, the import path, finders, the recursion limit, the environment, the working
    directory, builtins, warnings filters): in a fresh interpreter that import runs after the change, in
    a child it ran before. A child whose state differs after the import from what check.py itself
    leaves (`expected_path`) has its verdict thrown away."""

    def __init__(self):
        self.modules = {name: id(module) for name, module in list(sys.modules.items())}
        self.meta_path = [id(x) for x in sys.meta_path]
        self.path_hooks = [id(x) for x in sys.path_hooks]
        self.limit = sys.getrecursionlimit()
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.builtins = {k: id(v) for k, v in vars(builtins).items()}
        warnings = sys.modules.get("warnings")
        self.filters = list(warnings.filters) if warnings is not None else None

    def changed(self, expected_path):
        """The first piece of state the member's import changed, or None."""
        if list(sys.path) != expected_path:
            return "sys.path"
        for name, module_id in self.modules.items():
            if id(sys.modules.get(name)) != module_id:
                return "sys.modules[%r]" % name
        # New entries are new imports; a finder appended at the end is asked only for names every
        # earlier one missed (those a preloaded module imported were found by the earlier ones).
        meta_path, path_hooks = [id(x) for x in sys.meta_path], [id(x) for x in sys.path_hooks]
        if meta_path[: len(self.meta_path)] != self.meta_path or path_hooks[: len(self.path_hooks)] != self.path_hooks:
            return "the import finders"
        if sys.getrecursionlimit() != self.limit:
            return "the recursion limit"
        if dict(os.environ) != self.environ:
            return "os.environ %s" % sorted(k for k in set(os.environ) | set(self.environ) if os.environ.get(k) != self.environ.get(k))
        if os.getcwd() != self.cwd:
            return "the working directory"
        if {k: id(v) for k, v in vars(builtins).items()} != self.builtins:
            return "builtins"
        warnings = sys.modules.get("warnings")
        # Only an "error" filter can make an import raise (the others ignore, print or count warnings).
        if self.filters is not None and warnings is not None:
            if [f for f in warnings.filters if f[0] == "error"] != [f for f in self.filters if f[0] == "error"]:
                return "the warnings filters"
        return None


def held_tops(modules, baseline):
    """The top-level names of the modules a zygote holds beyond what a fresh check.py holds (the
    preloads and what they imported): the names whose first import in a child is watched."""
    return {name.split(".")[0] for name in modules if name not in baseline and name.split(".")[0] not in baseline}


def threads():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


class Zygote:
    def __init__(self, task_root):
        self.task_root = task_root
        self.env = env_digest(dict(os.environ))
        # The zygote's own imports must not see "" (its cwd): a fresh check.py drops it too.
        self.initial_path = list(sys.path)
        sys.path[:] = [p for p in sys.path if p != ""]
        done = subprocess.run([sys.executable, "-B", "-c", BASELINE], cwd="/", stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.baseline = set(json.loads(done.stdout.decode())) if done.returncode == 0 else None
        # Its own imports (socket, subprocess...) must not bind a submodule onto a module a fresh check.py
        # holds (`importlib.util` on `importlib`): a handler could use it unimported here only.
        own = set(sys.modules) - (self.baseline or set())
        self.usable = (
            self.baseline is not None
            and not any(path_reaches(p, task_root) for p in sys.path)
            and not any(m.rpartition(".")[0] in self.baseline for m in own if "." in m)
        )
        self.preloaded = set()
        self.rejected = set()
        self.snapshot = Snapshot(self.baseline or ())

    def third_party(self, names):
        """The names (dotted) whose top-level module the zygote's import path finds in a site-packages
        or dist-packages folder outside the task root: the preload candidates (not the standard library,
        not the closure's)."""
        found = []
        for name in names:
            top = name.split(".")[0]
            spec = None
            for finder in sys.meta_path:
                find_spec = getattr(finder, "find_spec", None)
                try:
                    spec = find_spec(top, None) if find_spec else None
                except Exception:
                    spec = None
                if spec is not None:
                    break
            origin = getattr(spec, "origin", None) or ""
            locations = list(getattr(spec, "submodule_search_locations", None) or [])
            places = [p for p in [origin, *locations] if p.startswith("/")]
            if not places or any(path_reaches(p, self.task_root) for p in places):
                continue
            if all(("/site-packages/" in p or "/dist-packages/" in p) for p in places):
                found.append(name)
        return sorted(set(found))

    def eligible(self, request):
        """Why this member's check may not run in a child of this zygote, or None."""
        if not self.usable:
            return "the zygote is not usable"
        if request.get("env") != self.env:
            return "the member's environment differs from the zygote's"
        if request.get("task_root") != self.task_root:
            return "the member's task root differs from the zygote's"
        shadowed = sorted({m.split(".")[0] for m in self.extras()} & set(request.get("task_names") or []))
        if shadowed:
            return "the task root provides %s, which the zygote holds" % ", ".join(shadowed)
        wanted = set(self.third_party(request.get("imports") or []))
        if not self.preloaded <= wanted:
            return "the zygote preloaded %s, which this member does not import" % ", ".join(sorted(self.preloaded - wanted))
        return None

    def extras(self):
        return sorted(set(sys.modules) - (self.baseline or set()))

    def packages(self):
        """The top-level names of the third-party modules loaded (their file in a site-packages or
        dist-packages folder): the packages whose import finders a preload may append."""
        tops = set()
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None) or ""
            if "/site-packages/" in path or "/dist-packages/" in path:
                tops.add(name.split(".")[0])
        return tops

    def import_clean(self, names):
        """Imports `names` in order here; returns those imported before one failed or changed state
        (that one last, with False), as [(name, ok)]."""
        done = []
        for name in names:
            try:
                importlib.import_module(name)
            except BaseException:
                done.append((name, False))
                return done
            problem = self.snapshot.changed(Snapshot(self.baseline), self.packages())
            if problem or threads() != 1:
                done.append((name, False))
                return done
            done.append((name, True))
        return done

    def preload(self, names):
        """Imports `names` here for the next children, after a trial in a child of its own: a module
        whose import fails, starts a thread or changes state (Snapshot) is never imported here
        (remembered as rejected). Should the import here still differ, the zygote stops serving."""
        if not self.usable:
            return
        names = [n for n in names if n not in self.preloaded and n not in self.rejected and n not in sys.modules]
        if not names:
            return
        read, write = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)
                os.close(read)
                os.write(write, json.dumps(self.import_clean(names)).encode())
            finally:
                os._exit(0)
        os.close(write)
        data = b""
        deadline = time.monotonic() + PRELOAD_SECONDS
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read, 65536) if ready else b""
            if not chunk:
                break
            data += chunk
        os.close(read)
        try:
            os.killpg(pid, signal.SIGKILL) if not data else None
        except OSError:
            pass
        os.waitpid(pid, 0)
        try:
            trial = json.loads(data.decode())
        except ValueError:
            trial = [(names[0], False)]
        good = [name for name, ok in trial if ok]
        self.rejected.update(name for name, ok in trial if not ok)
        for name, ok in self.import_clean(good):
            if not ok:
                self.usable = False
                return
            self.preloaded.add(name)

    def run(self, request, fds, listener, connection):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            self.child(request, fds, listener, connection)
        for fd in fds:
            os.close(fd)
        deadline = time.monotonic() + request["timeout"] + 30
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                timed_out = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                os.waitpid(pid, 0)
                status = 0
                break
            time.sleep(0.002)
        code = TIMEOUT_EXIT if timed_out else (os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
        return {"exit_code": code, "timed_out": timed_out}

    def child(self, request, fds, listener, connection):
        try:
            os.setpgid(0, 0)
            listener.close()
            connection.close()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            for fd in (devnull, *fds):
                os.close(fd)
            os.chdir(request["cwd"])
            sys.argv = ["-c", *request["args"]]
            if hasattr(sys, "orig_argv"):
                sys.orig_argv = [sys.orig_argv[0], "-B", "-c", request["source"], *request["args"]]
            sys.path[:] = self.initial_path
            sys.path_importer_cache.clear()
            importlib.invalidate_caches()
            if "random" in sys.modules:
                sys.modules["random"].seed()
            main = type(sys)("__main__")
            main.__builtins__ = builtins
            sys.modules["__main__"] = main
            code = compile(request["source"], "<string>", "exec")
            task_root = request["args"][2]
            expected_path = [task_root] + [p for p in self.initial_path if p not in ("", task_root)]
            held = held_tops(sys.modules, self.baseline or set()) if self.preloaded else set()
            seen = set()
            moved = []
            real_import, real_import_module = builtins.__import__, importlib.import_module

            def note(name, level):
                # The first import of a module the zygote holds (a preload or what a preload imported),
                # by name: a fresh interpreter would import it now, with the state as it is now. State
                # changed by then (even if put back later) makes the verdict a fresh interpreter's.
                top = name.split(".")[0] if name and not level else None
                if top in held and top not in seen:
                    seen.add(top)
                    problem = state.changed(expected_path)
                    if problem and not moved:
                        moved.append("%s before importing %s" % (problem, top))

            def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
                note(name, level)
                return real_import(name, globals, locals, fromlist, level)

            def guarded_import_module(name, package=None):
                note(name, 1 if name.startswith(".") else 0)
                return real_import_module(name, package)

            if held:
                builtins.__import__ = guarded_import
                importlib.import_module = guarded_import_module
            state = ChildState()
            real_exit = os._exit

            def exit_after_check(status):
                # check.py ends with os._exit: an ok verdict counts only if the import left the state,
                # and had it whenever a held module was first imported.
                # With nothing preloaded the child imports what a fresh interpreter imports, in its order.
                problem = (moved[0] if moved else state.changed(expected_path)) if status == 0 and self.preloaded else None
                if problem:
                    sys.stdout.flush()
                    sys.stderr.write("the import changed %s: its verdict is a fresh interpreter's\n" % problem)
                    sys.stderr.flush()
                    real_exit(STATE_EXIT)
                real_exit(status)

            os._exit = exit_after_check
        except BaseException:
            os._exit(70)
        try:
            exec(code, vars(main))
        except SystemExit as e:
            sys.stdout.flush()
            os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
        except BaseException:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def receive(connection):
    data = b""
    fds = []
    while not data.endswith(b"\n"):
        message, ancillary, _, _ = connection.recvmsg(1 << 20, socket.CMSG_SPACE(2 * array.array("i").itemsize))
        if not message:
            return None, fds
        data += message
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - (len(payload) % received.itemsize)])
                fds.extend(received)
    return json.loads(data.decode()), fds


def main():
    name, idle, task_root = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    source = sys.argv[4] if len(sys.argv) > 4 else None
    # The socket first: a second zygote started meanwhile fails here and exits; a driver connecting
    # while this one starts waits in the backlog instead of starting another.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(4)
    zygote = Zygote(task_root)
    listener.settimeout(idle)
    while True:
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            return
        connection.settimeout(None)
        with connection:
            request, fds = receive(connection)
            if request is None:
                continue
            op = request.get("op")
            if op == "hello":
                reply = {"pid": os.getpid(), "env": zygote.env, "extras": zygote.extras(), "usable": zygote.usable,
                         "source": source}
                connection.sendall(json.dumps(reply).encode() + b"\n")
            elif op == "run" and len(fds) == 2 and zygote.eligible(request) is None:
                reply = zygote.run(request, fds, listener, connection)
                connection.sendall(json.dumps(reply).encode() + b"\n")
                connection.close()
                zygote.preload(zygote.third_party(request.get("imports") or []))
            elif op == "run":
                for fd in fds:
                    os.close(fd)
                reason = zygote.eligible(request) if len(fds) == 2 else "no output streams"
                connection.sendall(json.dumps({"refused": reason}).encode() + b"\n")
                # A member that imports at least what the zygote holds: what it imports is preloaded
                # for the next ones (the zygote grows along one chain of import sets).
                if zygote.usable and request.get("env") == zygote.env:
                    wanted = set(zygote.third_party(request.get("imports") or []))
                    if zygote.preloaded <= wanted:
                        connection.close()
                        zygote.preload(sorted(wanted))
            else:
                for fd in fds:
                    os.close(fd)
                connection.sendall(json.dumps({"refused": "unknown request"}).encode() + b"\n")
                if op == "exit" or not zygote.usable:
                    return
        if not zygote.usable:
            return


if __name__ == "__main__":
    main()
