"""Helpers for end-to-end tests: a scratch copy of the repo, real Pants runs, Docker engine queries."""
from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

# What the tests' dependencies bring into the sandbox: `//:repo` (every file but the Python files of
# lambdas/ and src/) and the Python targets of lambdas/ and src/ (those files), see tests/e2e/BUILD.
PRELUDE = "build-support/pants/prelude.py"


def repo_entries(source: Path) -> tuple[str, ...]:
    """What a copy of the repo needs: `REPO_COPY_ENTRIES` of the BUILD prelude, the one list."""
    return tuple(e.rstrip("/") for e in runpy.run_path(str(source / PRELUDE))["REPO_COPY_ENTRIES"])


def copy_repo(source: Path, dest: Path) -> Path:
    """Copies the repo files from the test sandbox into a scratch build root."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in repo_entries(source):
        path = source / entry
        if path.is_dir():
            shutil.copytree(path, dest / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, dest / entry)
    return dest


# A first-party package whose module a Lambda imports only by a name built at run time (importlib):
# what dependency inference cannot see (chunk_e2e, import_check_e2e, prover_e2e).
PLUGIN_PACKAGE = {
    "src/pkg/BUILD": "python_sources()\n",
    "src/pkg/__init__.py": "",
    "src/pkg/plugins/BUILD": "python_sources()\n",
    "src/pkg/plugins/__init__.py": "",
    "src/pkg/plugins/alpha.py": 'NAME = "alpha"\n',
}


def scratch_repo(source: Path, dest: Path, files: Mapping[str, str]) -> Path:
    """A scratch copy of the repo with `files` (repo path -> text) written over it."""
    root = copy_repo(source, dest)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def remove_repository_images(repository_prefix: str) -> None:
    """Removes every image tag under `repository_prefix/` (a test's own repositories), local or with a
    registry in front (`127.0.0.1:5000/<prefix>/...`, pulled from a test registry)."""
    images = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    mine = [ref for ref in images if ref.startswith(f"{repository_prefix}/") or f"/{repository_prefix}/" in ref]
    if mine:
        docker("image", "rm", *mine, check=False)


def docker_cli() -> str:
    """The Docker CLI the `./pants` wrapper chose (it exports its directory for Pants)."""
    paths = json.loads(os.environ.get("PANTS_DOCKER_EXECUTABLE_SEARCH_PATHS") or "[]")
    for directory in paths:
        candidate = os.path.join(directory, "docker")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("docker")
    assert found, "no docker CLI: run the tests through ./pants, which sets up the engine"
    return found


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args], check=check, text=True, capture_output=capture, timeout=600
    )


@dataclass(frozen=True)
class PantsResult:
    exit_code: int
    stdout: str
    stderr: str

    def assert_success(self) -> "PantsResult":
        assert self.exit_code == 0, f"pants failed ({self.exit_code}):\n{self.stdout}\n{self.stderr}"
        return self


def run_pants(
    build_root: Path, args: Sequence[str], env: dict[str, str] | None = None, pantsd: bool = False
) -> PantsResult:
    """Real Pants in `build_root`. With `pantsd`, the caller stops it (`stop_pantsd`) when done."""
    proc = subprocess.run(
        [str(build_root / "pants"), "--pantsd" if pantsd else "--no-pantsd", "--no-dynamic-ui", *args],
        cwd=build_root,
        env={**os.environ, **(env or {})},
        text=True,
        capture_output=True,
        timeout=1500,
    )
    return PantsResult(proc.returncode, proc.stdout, proc.stderr)


def image_layers(image: str, host: str | None = None) -> list[str]:
    """The diff ids of an image's layers, on the default engine or on `host`."""
    out = docker(*(("-H", host) if host else ()), "image", "inspect", "--format", "{{json .RootFS.Layers}}", image).stdout
    return json.loads(out)


def files_added_over_base(images: Sequence[str], base: str) -> dict[str, set[str]]:
    """For each image, every file its own layers (those above `base`'s) add, as absolute paths."""
    base_layers = image_layers(base)
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "images.tar")
        docker("save", "-o", archive, *images)
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            by_tag = {tag: entry for entry in manifest for tag in entry.get("RepoTags") or ()}
            added: dict[str, set[str]] = {}
            for image in images:
                layers = by_tag[image]["Layers"]
                own = image_layers(image)
                assert own[: len(base_layers)] == base_layers, f"{image} is not built on {base}"
                files: set[str] = set()
                for layer in layers[len(base_layers) :]:
                    with tarfile.open(fileobj=tar.extractfile(layer)) as layer_tar:
                        files.update("/" + m.name for m in layer_tar.getmembers() if m.isfile())
                added[image] = files
    return added


def transfer_image(image: str, to_host: str) -> None:
    """`docker save | docker load` from the default engine to another (a runner's preinstalled image)."""
    save = subprocess.Popen([docker_cli(), "save", image], stdout=subprocess.PIPE)
    subprocess.run([docker_cli(), "-H", to_host, "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
    assert save.wait() == 0


def pants_counters(output: str) -> dict[str, int]:
    """The counters `--stats-log` prints at the end of a Pants run (cache hits, processes run...)."""
    section = output.rpartition("Counters:")[2]
    return {name: int(value) for name, value in re.findall(r"^\s+([a-z_]+): (\d+)$", section, re.MULTILINE)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(build_root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "e2e",
        "GIT_AUTHOR_EMAIL": "e2e@example.com",
        "GIT_COMMITTER_NAME": "e2e",
        "GIT_COMMITTER_EMAIL": "e2e@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=build_root, env=env, check=True, text=True, capture_output=True
    ).stdout


def init_git_repo(build_root: Path) -> None:
    (build_root / ".gitignore").write_text("/.pants.d/\n/dist/\n__pycache__/\n")
    git(build_root, "init", "-q", "-b", "main")
    git(build_root, "add", "-A")
    git(build_root, "commit", "-q", "-m", "seed")


def read_docker_infos(build_root: Path) -> dict[str, dict]:
    """The docker-info JSON of every chromadb_lambda image this run packaged, by target name."""
    infos = {}
    for path in sorted((build_root / "dist").glob("**/*.docker-info.json")):
        info = json.loads(path.read_text())
        if "content_key" in info:
            infos[info["address"].rsplit(":", 1)[1]] = info
    return infos


def stop_pantsd(build_root: Path) -> None:
    for pid_file in (build_root / ".pids").glob("*/pantsd/pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass


def package(build_root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, dict], PantsResult]:
    """Runs Pants (`package` somewhere in `args`) in a clean `dist/`; the docker-info of each Lambda.

    Uses pantsd (many runs per scratch repo): callers stop it with `stop_pantsd`.
    """
    shutil.rmtree(build_root / "dist", ignore_errors=True)
    result = run_pants(build_root, [*args], env=env, pantsd=True).assert_success()
    return read_docker_infos(build_root), result


class Registry:
    """A real registry (Debian's `docker-registry`, distribution 2.x) on loopback.

    With `credentials` (user, password) it requires HTTP basic auth from an htpasswd file (bcrypt,
    made by `htpasswd -B`). Its access log tells which manifests were pushed.
    """

    def __init__(self, root: Path, credentials: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._root = root
        self._credentials = credentials
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Registry":
        binary = shutil.which("docker-registry")
        assert binary, "docker-registry is not installed: `apt-get install docker-registry` (.ci/run does)"
        self._root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self._credentials:
            htpasswd = shutil.which("htpasswd")
            assert htpasswd, "htpasswd is not installed: `apt-get install apache2-utils` (.ci/run does)"
            user, password = self._credentials
            line = subprocess.run([htpasswd, "-Bbn", user, password], check=True, capture_output=True, text=True)
            (self._root / "htpasswd").write_text(line.stdout)
            auth = f"auth:\n  htpasswd:\n    realm: e2e\n    path: {self._root / 'htpasswd'}\n"
        config = self._root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self._root / 'data'}\n  delete:\n    enabled: true\n"
            f"{auth}"
            f"http:\n  addr: {self.address}\n"
        )
        self._log_path = self._root / "registry.log"
        self._log = open(self._log_path, "w")
        self._proc = subprocess.Popen([binary, "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def manifest_puts(self) -> list[tuple[str, str]]:
        """(repository, tag) of every manifest pushed so far, in order."""
        self._log.flush()
        return re.findall(r'"PUT /v2/(\S+)/manifests/(\S+) HTTP/[\d.]+" 201', self._log_path.read_text())

    def log_text(self) -> str:
        """The registry's access log so far (flushed)."""
        self._log.flush()
        return self._log_path.read_text()

    def blob_gets(self) -> list[tuple[str, str]]:
        """(repository, digest) of every blob (layer or image config) served so far, in order."""
        self._log.flush()
        return re.findall(r'"GET /v2/(\S+)/blobs/(sha256:[0-9a-f]{64}) HTTP/[\d.]+" 200', self._log_path.read_text())

    def __exit__(self, *exc: object) -> None:
        if self._proc:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        self._log.close()


def blob_uploads(log: str) -> list[tuple[str, str]]:
    """(repository, digest) of every completed blob upload (`PUT .../blobs/uploads/<id>?digest=`) in
    a registry's access log."""
    return [
        (repo, urllib.parse.unquote(digest))
        for repo, digest in re.findall(r'"PUT /v2/(\S+)/blobs/uploads/\S*[?&]digest=(sha256(?:%3A|:)[0-9a-f]{64})\S* HTTP/[\d.]+" 201', log)
    ]


def blob_mounts(log: str) -> list[tuple[str, str, str]]:
    """(repository, digest, from) of every cross-repository mount the registry did (201)."""
    mounts = []
    for repo, query in re.findall(r'"POST /v2/(\S+)/blobs/uploads/\?(\S+) HTTP/[\d.]+" 201', log):
        params = urllib.parse.parse_qs(query)
        mounts.append((repo, params["mount"][0], params["from"][0]))
    return mounts


def manifest_puts(log: str) -> list[tuple[str, str]]:
    """(repository, reference) of every manifest put (201) in a registry's access log."""
    return re.findall(r'"PUT /v2/(\S+)/manifests/(\S+) HTTP/[\d.]+" 201', log)


class BuildGrid:
    """A REAPI cache server (BuildGrid, via build-support/bootstrap/buildgrid.sh) on loopback."""

    def __init__(self, root: Path, script: Path) -> None:
        self.port = free_port()
        self._root = root
        self._script = script
        self.address = ""

    def __enter__(self) -> "BuildGrid":
        started = subprocess.run(
            [str(self._script), "start", str(self._root), str(self.port)], capture_output=True, text=True, timeout=600
        )
        assert started.returncode == 0, f"BuildGrid did not start:\n{started.stderr}"
        self.address = started.stdout.strip()
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run([str(self._script), "stop", str(self._root)], check=False, timeout=60)


class DockerEngine:
    """A second, empty Docker engine (own data root, bridge and socket): a new CI runner."""

    def __init__(self, root: Path, bridge: str = "cl-e2e0", subnet: str = "172.31.250.1/24") -> None:
        # Unix socket paths are limited to 108 bytes: keep the run-time files short.
        self.run_dir = Path(tempfile.mkdtemp(prefix="cl-eng-", dir="/tmp"))
        self.host = f"unix://{self.run_dir}/docker.sock"
        self._root = root
        self._bridge = bridge
        self._subnet = subnet
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "DockerEngine":
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> "DockerEngine":
        # Its own bridge: the default `docker0` belongs to the first engine. A bridge left by a killed
        # run is replaced.
        self._root.mkdir(parents=True, exist_ok=True)
        self._log = open(self._root / "dockerd.log", "w")
        subprocess.run(["ip", "link", "delete", self._bridge], check=False, capture_output=True)
        subprocess.run(["ip", "link", "add", self._bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", self._subnet, "dev", self._bridge], check=True)
        subprocess.run(["ip", "link", "set", self._bridge, "up"], check=True)
        self._proc = subprocess.Popen(
            [
                shutil.which("dockerd") or "/usr/sbin/dockerd",
                "--data-root", str(self._root / "data"),
                "--exec-root", str(self.run_dir / "exec"),
                "--pidfile", str(self.run_dir / "docker.pid"),
                "-H", self.host,
                "--bridge", self._bridge,
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `kill` takes containerd down with it
        )
        for _ in range(120):
            if docker("-H", self.host, "version", check=False).returncode == 0:
                return self
            time.sleep(0.25)
        raise AssertionError(f"second engine did not start: {(self._root / 'dockerd.log').read_text()}")

    def kill(self) -> None:
        """The engine dies: SIGKILL to dockerd and its containerd, no clean shutdown."""
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=60)

    def __exit__(self, *exc: object) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=60)
        if hasattr(self, "_log"):
            self._log.close()
        # A killed engine leaves the overlay mounts of the containers it ran (builds' RUN steps).
        unmount_below(self._root)
        subprocess.run(["ip", "link", "delete", self._bridge], check=False, capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def unmount_below(root: Path) -> None:
    """Lazily unmounts every mount point under `root`, deepest first."""
    prefix = f"{os.path.realpath(root)}/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Waits until `text` is in the log file that `proc` writes; fails if `proc` exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, f"exited before {text!r}:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} after {timeout} s:\n{log.read_text()}")


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextmanager
def receipt_aws(table: str, bucket: str, credentials: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """A real AWS API endpoint (moto server over HTTP on loopback) holding the example's receipt table and
    bucket; this process' environment points at it (endpoint, `credentials`, table and bucket names) until
    the block ends. Yields that environment."""
    import boto3
    from moto.server import ThreadedMotoServer
    from receipt_dynamo import create_table

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        **credentials,
        "RECEIPT_TABLE": table,
        "RECEIPT_BUCKET": bucket,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        create_table(table)
        boto3.client("s3").create_bucket(Bucket=bucket)
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
