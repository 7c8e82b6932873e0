"""Benchmark: the chromadb_lambda plugin side by side with the builds it replaces, in one run.

Generates two monorepos (seed-shaped: this repo plus an unrelated bulk tree; large: N Lambdas over M
generated shared modules), builds every Lambda image with each builder through the same scenarios on
the same engine, and writes one results JSON, its Markdown tables (naming the commit and the config)
and PNG plots; with `--config full` it also measures warm `./pants` calls (benchmarks/warm_calls.py)
and renders the tables into docs/benchmarks.md. Run it with `benchmarks/run`.

Builders (every one but `seed` builds FROM the same base image):
  seed                      the original system as its guide describes it: the repo root sent whole
                            as context by the legacy builder (`DOCKER_BUILDKIT=0`), one Dockerfile per
                            Lambda that installs the third-party requirements itself (FROM the upstream
                            Python image the base uses, the same locked PEX the base installs, expanded
                            into a venv in a RUN step), no layer cache (`--no-cache`). It has no cache,
                            so every run is a full rebuild: measured in `fresh` only.
  hand-written-buildkit     the repo root as context, one Dockerfile per Lambda FROM the base with the
                            COPY lines a person writes: the Lambda's folder and every first-party
                            top-level package its code imports, whole (and the packages those import),
                            found by reading import statements, not from the plugin; packages the base
                            image provides are left out. Built one by one with BuildKit.
  scoped                    the Lambda's folder as context (shared modules cannot be included)
  pants-docker              plain Pants `docker_image` targets over `files` targets of the same lists
  plugin-warm, plugin-cold  `pants package lambdas::` with this plugin, pantsd on / off
  plugin-warm-docker-build  plugin-warm with `--lambda-image-builder=docker-build` (skipped, with a
                            log line, when this checkout's plugin has no such option)
Scenarios: fresh clone (new path and mtimes, empty build cache, engine holds the base image), no-op,
one handler edited, one shared module edited, base image inputs edited.

Publish (large repo, plugin-warm, after its scenarios): `pants publish lambdas::` to a local registry
(Debian's `docker-registry`, started by the e2e harness's `Registry`), twice. Recorded: the seconds of
each, and per repository the blob uploads, cross-repository mounts and manifest puts, read from the
registry's access log. With `--config ci` the run fails unless no blob is uploaded twice into one
repository (so base layers at most once per repository) and the second publish uploads nothing and
puts no manifest (issue #14).

The context column is the bytes the Docker engine received for builds and loads in that step, counted
by a relay in front of the engine's socket (benchmarks/engine_meter.py), the same way for every builder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import runpy
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the e2e harness: its registry and access-log readers

from code_imports import base_provided_packages, hand_written_copy_list, module_closure, module_index
from e2e.harness import Registry, blob_mounts, blob_uploads, manifest_puts
from engine_meter import EngineMeter
from report import (
    HAND, RESULTS_MARKERS, TWO_RUNNERS_MARKERS, markdown, plot, plot_two_runners, ratios, render_into_doc, targets,
    two_runners_markdown,
)

# What a copy of the repo needs: the BUILD prelude's list, which the e2e tests copy too.
SEED_ENTRIES = tuple(e.rstrip("/") for e in runpy.run_path(str(REPO / "build-support/pants/prelude.py"))["REPO_COPY_ENTRIES"])
CONFIGS = {
    # What CI runs so that the benchmark cannot rot (a few minutes): small repos, fewer builders, and
    # every rebuilt image's handler import checked.
    "ci": {"bulk_mb": 20, "large_lambdas": 12, "large_modules": 120, "check_sample": None,
           "seed_builders": ["hand-written-buildkit", "scoped", "plugin-warm"],
           "large_builders": ["hand-written-buildkit", "plugin-warm"],
           "scenarios": ["fresh", "noop", "handler", "shared"], "warm_calls_runs": 0,
           "publish": True, "publish_must_hold": True},
    "full": {"bulk_mb": 2900, "large_lambdas": 200, "large_modules": 2000, "check_sample": 6,
             "seed_builders": ["seed", "hand-written-buildkit", "scoped", "pants-docker", "plugin-warm",
                               "plugin-warm-docker-build", "plugin-cold"],
             "large_builders": ["hand-written-buildkit", "plugin-warm", "plugin-warm-docker-build", "plugin-cold"],
             "scenarios": ["fresh", "noop", "handler", "shared", "base"], "warm_calls_runs": 5,
             "publish": True, "publish_must_hold": False},
}
# Image repositories are <prefix>-<builder>/...: unique per run, so runs on a shared engine never
# touch each other's images (`--image-prefix`).
IMAGE_PREFIX = f"bench{os.getpid()}"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], cwd: Path | None = None, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, text=True, capture_output=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def docker(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run([os.environ.get("BENCH_DOCKER", "docker"), *args], env=env, check=check)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- repos --------------------------------------------------------------------------------------


@dataclass
class Lambda:
    name: str
    folder: str  # lambdas/<name>
    module: str  # the handler's module, e.g. list_pending.handler
    closure: set[str] = field(default_factory=set)  # files importing the handler loads (read, not inferred)
    copy_dirs: list[str] = field(default_factory=list)  # what a person lists in COPY lines


@dataclass
class Repo:
    kind: str
    origin: Path
    lambdas: list[Lambda]
    handler_edit: str  # a handler file
    shared_edit: str  # a shared module some Lambdas import

    def affected(self, path: str) -> list[str]:
        return sorted(lam.name for lam in self.lambdas if path in lam.closure)

    def expected(self, scenario: str) -> list[str]:
        """The Lambdas a scenario's edit affects: the images an exact builder rebuilds."""
        if scenario in ("fresh", "base"):
            return sorted(lam.name for lam in self.lambdas)
        if scenario == "handler":
            return self.affected(self.handler_edit)
        if scenario == "shared":
            return self.affected(self.shared_edit)
        return []


def copy_seed(dest: Path) -> None:
    dest.mkdir(parents=True)
    for entry in SEED_ENTRIES:
        src = REPO / entry
        if src.is_dir():
            shutil.copytree(src, dest / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / entry)
    (dest / "dist").mkdir()


def make_bulk(root: Path, megabytes: int) -> None:
    """An unrelated tree (data, notebooks, assets) as big as the original repo: incompressible bytes."""
    bulk = root / "bulk"
    bulk.mkdir()
    chunk = 64 * 1024 * 1024
    left = megabytes * 1024 * 1024
    index = 0
    while left > 0:
        size = min(chunk, left)
        (bulk / f"blob-{index:03d}.bin").write_bytes(os.urandom(size))
        left -= size
        index += 1


def seed_repo(work: Path, bulk_mb: int) -> Repo:
    origin = work / "seed-origin"
    copy_seed(origin)
    make_bulk(origin, bulk_mb)
    names = sorted(p.name for p in (origin / "lambdas").iterdir() if (p / "BUILD").exists())
    lambdas = [Lambda(n, f"lambdas/{n}", f"{n}.handler") for n in names]
    return Repo("seed", origin, lambdas, "lambdas/list_pending/handler.py", "src/receipt_chroma/delta.py")


def large_repo(work: Path, n_lambdas: int, n_modules: int, seed: int = 7) -> Repo:
    """N Lambdas over M modules in M/100 packages: modules import lower ones in their package and a
    few from the `core` package; each Lambda imports a handful of modules from two packages."""
    rng = random.Random(seed)
    origin = work / "large-origin"
    copy_seed(origin)
    shutil.rmtree(origin / "lambdas")
    for lib in ("receipt_chroma", "receipt_dynamo", "receipt_label"):
        shutil.rmtree(origin / "src" / lib)
    per_package = 100
    packages = max(1, n_modules // per_package)
    for p in range(packages):
        pkg = origin / "src" / f"lib{p:02d}"
        pkg.mkdir(parents=True)
        (pkg / "BUILD").write_text("python_sources()\n")
        (pkg / "__init__.py").write_text("")
        for m in range(per_package):
            imports = []
            if m:
                imports += [f"from lib{p:02d} import m{i:03d}" for i in sorted(rng.sample(range(m), min(2, m)))]
            if p and rng.random() < 0.2:
                imports.append(f"from lib00 import m{rng.randrange(per_package):03d}")
            body = "\n".join(imports) + f"\n\n\ndef f{m}(x: int) -> int:\n    return x + {m}\n" + "# padding\n" * 40
            (pkg / f"m{m:03d}.py").write_text(body)
    lambdas = []
    for i in range(n_lambdas):
        name = f"fn_{i:03d}"
        folder = origin / "lambdas" / name
        folder.mkdir(parents=True)
        chosen = rng.sample(range(packages), min(2, packages))
        imports = [f"from lib{p:02d} import m{rng.randrange(per_package):03d}" for p in chosen for _ in range(3)]
        (folder / "__init__.py").write_text("")
        (folder / "handler.py").write_text(
            "\n".join(sorted(set(imports))) + "\n\n\ndef handle(event, context):\n    return {'ok': True}\n"
        )
        (folder / "BUILD").write_text(
            f'python_sources(name="sources")\n\nchromadb_lambda(name="{name}", handler="handler.py:handle", '
            'base_image="//base:lambda-base")\n'
        )
        lambdas.append(Lambda(name, f"lambdas/{name}", f"{name}.handler"))
    return Repo("large", origin, lambdas, "lambdas/fn_000/handler.py", "")


def read_imports(repo: Repo) -> None:
    """Each Lambda's import closure and hand-written COPY list; the large repo's shared edit is the
    module closest to being in a quarter of the closures."""
    index = module_index(repo.origin)
    provided = base_provided_packages(repo.origin)
    for lam in repo.lambdas:
        lam.closure = module_closure(repo.origin, index, lam.module)
        lam.copy_dirs = hand_written_copy_list(lam.closure, provided)
    if not repo.shared_edit:
        counts: dict[str, int] = {}
        for lam in repo.lambdas:
            for path in lam.closure:
                if path.startswith("src/") and not path.endswith("__init__.py"):
                    counts[path] = counts.get(path, 0) + 1
        target = len(repo.lambdas) / 4
        repo.shared_edit = min(sorted(counts), key=lambda p: abs(counts[p] - target))


# --- builders -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    seconds: float
    images: dict[str, str]  # Lambda name -> image id
    reported_built: list[str] | None = None  # the plugin's docker-info `built: true` Lambdas


class Builder:
    name = ""
    builds_base = False
    # Scenarios this builder is measured in (None: all); the others are recorded as skipped.
    only_scenarios: tuple[str, ...] | None = None
    skip_reason = ""

    def __init__(self, repo: Repo, base_ref: str, work: Path) -> None:
        self.repo, self.base_ref, self.work = repo, base_ref, work

    def prepare(self, root: Path) -> None:  # noqa: B027 - optional hook
        pass

    def build(self, root: Path) -> Outcome:
        raise NotImplementedError

    def image(self, lam: Lambda) -> str:
        return f"{IMAGE_PREFIX}-{self.name}/{lam.name.replace('_', '-')}:latest"

    def image_ids(self) -> dict[str, str]:
        ids = {}
        for lam in self.repo.lambdas:
            result = docker("image", "inspect", "--format", "{{.Id}}", self.image(lam), check=False)
            if result.returncode == 0:
                ids[lam.name] = result.stdout.strip()
        return ids


def copy_lines(lam: Lambda) -> str:
    return "".join(f"COPY {d} /var/task/{d.split('/', 1)[1]}\n" for d in lam.copy_dirs)


class SeedBuilder(Builder):
    """The original system: legacy builder, repo root sent whole, per-image dependency install, no cache."""

    name = "seed"
    only_scenarios = ("fresh",)
    skip_reason = "no layer cache: every run rebuilds every image, as in `fresh`"

    def __init__(self, repo: Repo, base_ref: str, work: Path, upstream: str, deps_pex: Path) -> None:
        super().__init__(repo, base_ref, work)
        self.upstream, self.deps_pex = upstream, deps_pex

    def prepare(self, root: Path) -> None:
        # The locked third-party requirements (and receipt_common) as the base build installs them.
        shutil.copytree(self.deps_pex, root / "build" / "deps.pex")
        for lam in self.repo.lambdas:
            (root / lam.folder / "Dockerfile").write_text(
                f"FROM {self.upstream}\n"
                "COPY build/deps.pex /opt/deps.pex\n"
                "RUN PEX_TOOLS=1 python3 /opt/deps.pex venv --compile /opt/venv\n"
                "ENV PATH=/opt/venv/bin:$PATH LAMBDA_TASK_ROOT=/var/task PYTHONDONTWRITEBYTECODE=1\n"
                "WORKDIR /var/task\n"
                f"{copy_lines(lam)}"
                'ENTRYPOINT ["/opt/venv/bin/python3", "-m", "awslambdaric"]\n'
                f'CMD ["{lam.module}.handle"]\n'
            )

    def build(self, root: Path) -> Outcome:
        start = time.monotonic()
        for lam in self.repo.lambdas:
            docker("build", "--no-cache", "-q", "-f", str(root / lam.folder / "Dockerfile"), "-t", self.image(lam),
                   str(root), env={"DOCKER_BUILDKIT": "0"})
        return Outcome(time.monotonic() - start, self.image_ids())


class HandWrittenBuilder(Builder):
    """Repo root as context, a person's COPY list per Lambda, BuildKit, one build after another."""

    name = HAND

    def prepare(self, root: Path) -> None:
        self.dockerfiles = self.work / f"dockerfiles-{self.repo.kind}-{self.name}"
        self.dockerfiles.mkdir(parents=True, exist_ok=True)
        for lam in self.repo.lambdas:
            (self.dockerfiles / f"{lam.name}.Dockerfile").write_text(
                f"FROM {self.base_ref}\n{copy_lines(lam)}CMD [\"{lam.module}.handle\"]\n"
            )

    def build(self, root: Path) -> Outcome:
        start = time.monotonic()
        for lam in self.repo.lambdas:
            docker("build", "--progress=plain", "-f", str(self.dockerfiles / f"{lam.name}.Dockerfile"), "-t",
                   self.image(lam), str(root), env={"DOCKER_BUILDKIT": "1"})
        return Outcome(time.monotonic() - start, self.image_ids())


class ScopedBuilder(Builder):
    """The original proposed fix: each Lambda's folder as context. Shared modules are outside it."""

    name = "scoped"

    def prepare(self, root: Path) -> None:
        self.dockerfile = self.work / f"scoped-{self.repo.kind}.Dockerfile"
        self.dockerfile.write_text(f"FROM {self.base_ref}\nARG NAME\nCOPY . /var/task/${{NAME}}/\n")

    def build(self, root: Path) -> Outcome:
        start = time.monotonic()
        for lam in self.repo.lambdas:
            docker("build", "--progress=plain", "-f", str(self.dockerfile), "--build-arg", f"NAME={lam.name}",
                   "-t", self.image(lam), str(root / lam.folder), env={"DOCKER_BUILDKIT": "1"})
        return Outcome(time.monotonic() - start, self.image_ids())


class PantsDockerBuilder(Builder):
    """Plain Pants: a `docker_image` per Lambda over hand-declared `files` targets (Pants builds them all)."""

    name = "pants-docker"

    def prepare(self, root: Path) -> None:
        lines = []
        for lam in self.repo.lambdas:
            globs = [f"{d}/**/*.py" for d in lam.copy_dirs] + ([f"{d}/**/*.json" for d in lam.copy_dirs])
            copies = [f"COPY {d} /var/task/{d.split('/', 1)[1]}" for d in lam.copy_dirs]
            lines.append(f'files(name="bench_files_{lam.name}", sources={globs!r})')
            lines.append(
                f'docker_image(name="bench_image_{lam.name}", dependencies=[":bench_files_{lam.name}"], '
                f'instructions={["FROM " + self.base_ref, *copies]!r}, '
                f'repository="{IMAGE_PREFIX}-pants-docker/{lam.name.replace("_", "-")}", image_tags=["latest"], skip_push=True)'
            )
        with open(root / "BUILD", "a") as f:
            f.write("\n# benchmark: plain Pants docker_image targets\n" + "\n".join(lines) + "\n")

    def build(self, root: Path) -> Outcome:
        targets = [f"//:bench_image_{lam.name}" for lam in self.repo.lambdas]
        start = time.monotonic()
        run([str(root / "pants"), "package", *targets], cwd=root)
        return Outcome(time.monotonic() - start, self.image_ids())


class PluginBuilder(Builder):
    builds_base = True

    def __init__(
        self, repo: Repo, base_ref: str, work: Path, name: str, pantsd: bool, extra_args: tuple[str, ...] = (),
        only_scenarios: tuple[str, ...] | None = None, skip_reason: str = "",
    ) -> None:
        super().__init__(repo, base_ref, work)
        self.name, self.pantsd, self.extra_args = name, pantsd, extra_args
        self.only_scenarios, self.skip_reason = only_scenarios, skip_reason

    def image(self, lam: Lambda) -> str:
        return f"{IMAGE_PREFIX}-{self.name}/{lam.name}:latest"

    def build(self, root: Path) -> Outcome:
        shutil.rmtree(root / "dist", ignore_errors=True)
        start = time.monotonic()
        run([str(root / "pants"), "--pantsd" if self.pantsd else "--no-pantsd", *self.extra_args,
             f"--docker-default-repository={IMAGE_PREFIX}-{self.name}/{{name}}", "package", "lambdas::"], cwd=root)
        seconds = time.monotonic() - start
        infos = [json.loads(p.read_text()) for p in (root / "dist").glob("**/*.docker-info.json")]
        built = sorted(info["address"].rsplit(":", 1)[1] for info in infos if info["built"])
        return Outcome(seconds, self.image_ids(), built)


DOCKER_BUILD_OPTION = "--lambda-image-builder"


def make_builder(name: str, repo: Repo, base_ref: str, work: Path, seed_inputs: tuple[str, Path]) -> Builder:
    return {
        "seed": lambda: SeedBuilder(repo, base_ref, work, *seed_inputs),
        HAND: lambda: HandWrittenBuilder(repo, base_ref, work),
        "scoped": lambda: ScopedBuilder(repo, base_ref, work),
        "pants-docker": lambda: PantsDockerBuilder(repo, base_ref, work),
        "plugin-warm": lambda: PluginBuilder(repo, base_ref, work, "plugin-warm", pantsd=True),
        "plugin-cold": lambda: PluginBuilder(repo, base_ref, work, "plugin-cold", pantsd=False),
        "plugin-warm-docker-build": lambda: PluginBuilder(
            repo, base_ref, work, "plugin-warm-docker-build", pantsd=True,
            extra_args=(f"{DOCKER_BUILD_OPTION}=docker-build",),
            # Beside plugin-warm where images are made; a no-op makes none, and a base edit remakes
            # every image as `fresh` does.
            only_scenarios=("fresh", "handler", "shared"),
            skip_reason="measured where Lambda images are made: fresh, handler, shared",
        ),
    }[name]()


_LISTED_OPTIONS: list[str] = []  # `help-advanced lambda-image`, read once: every repo has the same plugin


def unavailable_builders(names: list[str], origin: Path) -> dict[str, str]:
    """Builders this checkout cannot run, with the reason (logged and recorded in the results)."""
    if "plugin-warm-docker-build" not in names:
        return {}
    if not _LISTED_OPTIONS:
        _LISTED_OPTIONS.append(
            run([str(origin / "pants"), "--no-pantsd", "help-advanced", "lambda-image"], cwd=origin).stdout
        )
    if DOCKER_BUILD_OPTION in _LISTED_OPTIONS[0]:
        return {}
    reason = f"`./pants help-advanced lambda-image` lists no `{DOCKER_BUILD_OPTION}`: this plugin has one builder"
    log(f"skipping plugin-warm-docker-build: {reason}")
    return {"plugin-warm-docker-build": reason}


# --- measuring ----------------------------------------------------------------------------------


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def imports_ok(image: str, lam: Lambda) -> bool:
    """Does the image import its handler module (and so everything the module imports)?"""
    result = docker("run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "python3",
                    image, "-c", f"import {lam.module}", check=False)
    return result.returncode == 0


def stop_pantsd(root: Path) -> None:
    for pid_file in (root / ".pids").glob("*/pantsd/pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
        except (ValueError, ProcessLookupError):
            pass


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def remove_images(prefix: str) -> None:
    refs = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    doomed = [r for r in refs if r.startswith(prefix)]
    if doomed:
        docker("image", "rm", "-f", *doomed, check=False)


def measure_builder(builder: Builder, repo: Repo, run_dir: Path, sample: int | None, scenarios: list[str],
                    meter: EngineMeter, publish: bool = False) -> dict:
    root = run_dir / builder.name / "repo"
    results: dict[str, dict] = {}
    remove_images(f"{IMAGE_PREFIX}-{builder.name}/")  # every tag, content key tags included
    # Fresh clone: a new path and new mtimes (cp, not cp -p), and an empty BuildKit cache; the engine
    # keeps its images, so the base image is there.
    root.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-r", str(repo.origin), str(root)])
    builder.prepare(root)
    docker("builder", "prune", "-af")
    previous: dict[str, str] = {}
    base_size = image_size(builder.base_ref)
    edits: dict[str, Callable[[], None] | None] = {
        "fresh": None,
        "noop": None,
        # Each edit is new text (never built or checked before, as a developer's edit), so an image
        # id, and its import check's record, from an earlier run or builder is never reused.
        "handler": lambda: append(root / repo.handler_edit, f"\n# benchmark edit {time.time_ns()}\n"),
        "shared": lambda: append(root / repo.shared_edit, f"\n# benchmark edit {time.time_ns()}\n"),
        "base": lambda: append(root / "base/Dockerfile", f"\nLABEL benchmark.edit=\"{time.time()}\"\n"),
    }
    try:
        for scenario in scenarios:
            if scenario == "base" and not builder.builds_base:
                results[scenario] = {"skipped": "this builder does not build the base image"}
                continue
            if builder.only_scenarios and scenario not in builder.only_scenarios:
                results[scenario] = {"skipped": builder.skip_reason}
                continue
            edit = edits[scenario]
            if edit:
                edit()
            log(f"{repo.kind} {builder.name} {scenario}")
            meter.take()
            outcome = builder.build(root)
            received = meter.take()
            rebuilt = sorted(n for n, i in outcome.images.items() if previous.get(n) != i)
            expected = repo.expected(scenario)
            checked = [lam for lam in repo.lambdas if lam.name in rebuilt][:sample]
            failed = [lam.name for lam in checked if not imports_ok(builder.image(lam), lam)]
            added = [image_size(builder.image(lam)) - base_size for lam in repo.lambdas if lam.name in outcome.images][:sample]
            results[scenario] = {
                "seconds": round(outcome.seconds, 2),
                "rebuilt": rebuilt,
                "expected": expected,
                # Exactly the Lambdas whose imports reach the edited file were rebuilt.
                "exact": rebuilt == expected,
                "missing": sorted(lam.name for lam in repo.lambdas if lam.name not in outcome.images),
                "docker_received_bytes": received,
                "added_bytes_mean": int(sum(added) / len(added)) if added else None,
                "import_check": {"checked": len(checked), "failed": failed},
            }
            if outcome.reported_built is not None:
                results[scenario]["reported_built"] = outcome.reported_built
            # Images this step replaced and left untagged (the seed's are ~850 MB each): not kept.
            replaced = {previous[n] for n in rebuilt if n in previous} - set(outcome.images.values())
            if replaced:
                docker("image", "rm", *sorted(replaced), check=False)
            previous = outcome.images
        if publish:
            results["publish"] = measure_publish(builder, root, run_dir)
    finally:
        stop_pantsd(root)
        remove_images(f"{IMAGE_PREFIX}-{builder.name}/")
    shutil.rmtree(root, ignore_errors=True)
    return results


def publish_counts(log: str, seconds: float, output: str) -> dict:
    """What one `pants publish` did to the registry, read from the access log of that run."""
    per_repo: dict[str, dict[str, int]] = {}

    def bump(repository: str, what: str) -> None:
        per_repo.setdefault(repository, {"uploads": 0, "mounts": 0, "manifest_puts": 0})[what] += 1

    uploads = blob_uploads(log)
    for repository, _ in uploads:
        bump(repository, "uploads")
    for repository, _, _ in blob_mounts(log):
        bump(repository, "mounts")
    for repository, _ in manifest_puts(log):
        bump(repository, "manifest_puts")
    return {
        "seconds": round(seconds, 2),
        "uploads": len(uploads),
        "mounts": sum(r["mounts"] for r in per_repo.values()),
        "manifest_puts": sum(r["manifest_puts"] for r in per_repo.values()),
        "repositories": dict(sorted(per_repo.items())),
        # What the publish reported per Lambda (its report lines, see scripts/deploy_manifest.py).
        "by_registry_api": output.count("by the registry API"),
        "already_published": output.count("already published, nothing pushed"),
    }


def measure_publish(builder: Builder, root: Path, run_dir: Path) -> dict:
    """`pants publish lambdas::` to a fresh local registry, twice (see the module docstring)."""
    assert isinstance(builder, PluginBuilder), builder.name
    runs = []
    with Registry(run_dir / f"registry-{builder.name}") as registry:
        try:
            for attempt in ("first", "second"):
                log(f"{builder.repo.kind} {builder.name} publish ({attempt})")
                before = len(registry.log_text())
                start = time.monotonic()
                done = run([str(root / "pants"), "--pantsd",
                            f"--docker-registries={{'bench': {{'address': '{registry.address}', 'default': True}}}}",
                            f"--docker-default-repository={IMAGE_PREFIX}-{builder.name}/{{name}}", "publish", "lambdas::"],
                           cwd=root)
                runs.append(publish_counts(registry.log_text()[before:], time.monotonic() - start, done.stdout + done.stderr))
            whole = registry.log_text()
        finally:
            remove_images(f"{registry.address}/")  # the tags an engine push made
    counts = Counter(blob_uploads(whole))
    twice = sorted(f"{r}@{d}" for (r, d), n in counts.items() if n > 1)
    return {"lambdas": len(builder.repo.lambdas), "runs": runs, "blobs_uploaded_twice_into_a_repository": twice}


def publish_failures(results: dict) -> list[str]:
    """What the publish measurement must show (issue #14) and did not."""
    problems = []
    for kind, repo in results["repos"].items():
        publish = repo.get("publish")
        if not publish:
            continue
        name = publish["builder"]
        if publish["blobs_uploaded_twice_into_a_repository"]:
            problems.append(f"{kind} {name}: blobs uploaded twice into one repository: "
                            f"{publish['blobs_uploaded_twice_into_a_repository']}")
        second = publish["runs"][1]
        if second["uploads"] or second["manifest_puts"]:
            problems.append(f"{kind} {name}: the second publish uploaded {second['uploads']} blobs and put "
                            f"{second['manifest_puts']} manifests (wanted none)")
    return problems


# chunk_images.VERDICT_CACHE: Pants' named cache of the handler import checks that passed (by image id).
VERDICT_CACHE = "chromadb_lambda_import_checks"


def forget_import_checks() -> None:
    """Empties the plugin's record of passing import checks (Pants' default named caches folder, or
    PANTS_NAMED_CACHES_DIR), so that the run's first fresh step checks every image it makes, as a
    package of changed Lambdas does, whatever earlier runs of the same code recorded."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    named = Path(os.environ.get("PANTS_NAMED_CACHES_DIR") or cache_home / "pants" / "named_caches")
    shutil.rmtree(named / VERDICT_CACHE, ignore_errors=True)


def prepare_inputs(repo: Repo, work: Path, with_deps: bool) -> tuple[str, Path]:
    """Builds, once and not timed, the base image every builder but `seed` builds FROM (with the
    plugin), and the locked dependency PEX the base installs (for `seed`, which installs it per image)."""
    run([str(repo.origin / "pants"), "--no-pantsd", f"--docker-default-repository={IMAGE_PREFIX}-prep/{{name}}", "package",
         *(["base:deps"] if with_deps else []), f"lambdas/{repo.lambdas[0].name}:{repo.lambdas[0].name}"],
        cwd=repo.origin)
    (info,) = [json.loads(p.read_text()) for p in (repo.origin / "dist").glob("**/*.docker-info.json")]
    deps = work / f"{repo.kind}-deps.pex"
    if with_deps:
        shutil.rmtree(deps, ignore_errors=True)
        shutil.move(str(repo.origin / "dist" / "base" / "deps.pex"), deps)
    shutil.rmtree(repo.origin / "dist")
    (repo.origin / "dist").mkdir()
    remove_images(f"{IMAGE_PREFIX}-prep/")
    return info["base_image"]["ref"], deps


def base_inputs(origin: Path) -> str:
    """A digest of what the base image is built from, to build it once for repos that share it."""
    digest = hashlib.sha256()
    paths = [origin / "pants.toml", *sorted((origin / "base").rglob("*")), *sorted((origin / "3rdparty").rglob("*"))]
    paths += [p for package in sorted(base_provided_packages(origin)) for p in sorted((origin / "src" / package).rglob("*"))]
    for path in paths:
        if path.is_file():
            digest.update(str(path.relative_to(origin)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def upstream_image(origin: Path) -> str:
    return run([str(origin / "build-support/bootstrap/upstream-image.sh"), "name"], cwd=origin).stdout.strip()


def git_commit() -> str:
    head = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=False)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, check=False).stdout.strip()
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["docker"] = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    except (ValueError, OSError, RuntimeError):
        pass
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="ci")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "chromadb-lambda-bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--repos", default="seed,large")
    parser.add_argument("--bulk-mb", type=int, help="size of the seed repo's unrelated tree (default: per config)")
    parser.add_argument("--large-lambdas", type=int, help="Lambdas in the large repo (default: per config)")
    parser.add_argument("--builders", help="only these builders (comma-separated), e.g. to try one out")
    parser.add_argument("--doc", type=Path, help="render the tables into this file between its markers "
                        "(default with --config full and with --plot-two-runners: docs/benchmarks.md)")
    parser.add_argument("--image-prefix", help="prefix of the image repositories (default: bench<pid>)")
    parser.add_argument("--plot-two-runners", type=Path, metavar="JSON",
                        help="only plot a report of tests/e2e/two_runners_e2e_test.py (PNG beside it)")
    args = parser.parse_args()
    if args.plot_two_runners:
        log(f"wrote {plot_two_runners(args.plot_two_runners)}")
        doc = args.doc or REPO / "docs" / "benchmarks.md"
        render_into_doc(doc, two_runners_markdown(json.loads(args.plot_two_runners.read_text())), TWO_RUNNERS_MARKERS)
        log(f"rendered its table into {doc}")
        return 0
    config = dict(CONFIGS[args.config])
    global IMAGE_PREFIX
    IMAGE_PREFIX = args.image_prefix or IMAGE_PREFIX
    if args.bulk_mb is not None:
        config["bulk_mb"] = args.bulk_mb
    if args.large_lambdas is not None:
        config["large_lambdas"] = args.large_lambdas
    only = set(args.builders.split(",")) if args.builders else None
    doc = args.doc or (REPO / "docs" / "benchmarks.md" if args.config == "full" and not only else None)
    publishes = config.get("publish") and "large" in args.repos.split(",") and (not only or "plugin-warm" in only)
    if publishes and shutil.which("docker-registry") is None:
        # Found before the half hour of builds that precede the publish measurement, not after it.
        raise SystemExit(f"--config {args.config} measures `pants publish` to a local docker-registry, which is not "
                         "installed: run the benchmark through benchmarks/run (it installs it, as .ci/run does)")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    engine_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not engine_host.startswith("unix://"):
        raise SystemExit(f"DOCKER_HOST={engine_host}: the benchmark meters a unix socket engine only")
    meter = EngineMeter(engine_host[len("unix://"):], args.work / "engine.sock")
    os.environ["DOCKER_HOST"] = meter.start()
    started = time.time()
    results: dict = {"config": args.config, "settings": config, "machine": machine(), "repos": {},
                     "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "skipped_builders": {}}
    prepared: dict[str, tuple[str, Path]] = {}
    forget_import_checks()
    try:
        for kind in args.repos.split(","):
            if kind == "seed":
                repo, builders = seed_repo(args.work, config["bulk_mb"]), config["seed_builders"]
            else:
                repo, builders = large_repo(args.work, config["large_lambdas"], config["large_modules"]), config["large_builders"]
            if only:  # any builder, also one the config leaves out
                builders = [b for b in CONFIGS["full"][f"{kind}_builders"] if b in only]
            log(f"{kind}: preparing ({len(repo.lambdas)} Lambdas)")
            read_imports(repo)
            skipped = unavailable_builders(builders, repo.origin)
            results["skipped_builders"].update(skipped)
            builders = [b for b in builders if b not in skipped]
            if not builders:
                shutil.rmtree(repo.origin, ignore_errors=True)
                continue
            # The large repo has the seed repo's base inputs: the base is built once.
            key, with_deps = base_inputs(repo.origin), "seed" in builders
            if key not in prepared or (with_deps and not prepared[key][1].exists()):
                prepared[key] = prepare_inputs(repo, args.work, with_deps)
            base_ref, deps_pex = prepared[key]
            seed_inputs = (upstream_image(repo.origin), deps_pex)
            measured, published = {}, None
            for name in builders:
                builder = make_builder(name, repo, base_ref, args.work, seed_inputs)
                publish = config.get("publish", False) and kind == "large" and name == "plugin-warm"
                measured[name] = measure_builder(builder, repo, args.work / kind, config["check_sample"],
                                                 config["scenarios"], meter, publish)
                if "publish" in measured[name]:  # beside the scenarios, not one of them
                    published = {"builder": name, **measured[name].pop("publish")}
            results["repos"][kind] = {
                "lambdas": len(repo.lambdas),
                "repo_bytes": dir_bytes(repo.origin),
                "handler_module": repo.handler_edit,
                "shared_module": repo.shared_edit,
                "shared_affected": repo.affected(repo.shared_edit),
                "copy_lists": {lam.name: lam.copy_dirs for lam in repo.lambdas[:10]},
                "builders": measured,
                "speedup_of_plugin_warm": ratios(measured),
                **({"publish": published} if published else {}),
            }
            shutil.rmtree(repo.origin, ignore_errors=True)
    finally:
        meter.stop()
        os.environ["DOCKER_HOST"] = engine_host
        shutil.rmtree(args.work, ignore_errors=True)  # the repos, the seed's dependency PEX
    if config["warm_calls_runs"] and not only:
        import warm_calls

        log("warm ./pants calls (benchmarks/warm_calls.py)")
        results["warm_calls"] = warm_calls.measure(warm_calls.DEFAULT_BEFORE, config["warm_calls_runs"])
        warm_calls.write(results["warm_calls"], args.out / "warm-calls.json")
    results["total_seconds"] = round(time.time() - started, 1)
    results["targets"] = targets(results)
    results["plots"] = plot(results, args.out, args.config)
    out_json = args.out / f"{args.config}.json"
    out_json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    written = json.loads(out_json.read_text())  # the tables are rendered from the JSON as written
    (args.out / f"{args.config}.md").write_text(markdown(written))
    if doc:
        render_into_doc(doc, markdown(written, os.path.relpath(args.out, doc.parent)), RESULTS_MARKERS)
        log(f"rendered the tables into {doc}")
    log(f"wrote {out_json} and {', '.join(results['plots'])} in {results['total_seconds']} s")
    problems = publish_failures(written)
    for problem in problems:
        log(f"publish: {problem}")
    return 1 if problems and config.get("publish_must_hold") else 0


if __name__ == "__main__":
    sys.exit(main())
