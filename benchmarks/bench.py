"""Benchmark: the chromadb_lambda plugin side by side with the builds it replaces, in one run.

Generates two monorepos (seed-shaped: this repo plus an unrelated bulk tree; large: N Lambdas over M
generated shared modules), builds every Lambda image with each builder through the same scenarios on
the same engine and base image, and writes results JSON plus PNG plots. Run it with `benchmarks/run`.

Builders:
  naive-buildkit, naive-legacy  repo root as context, a Dockerfile per Lambda with a COPY list of the
                                packages it uses (as a person keeps it), BuildKit / legacy builder
  scoped                        the Lambda's folder as context (shared modules cannot be included)
  pants-docker                  Pants `docker_image` targets with hand-declared `files` targets
  plugin-warm, plugin-cold      `pants package lambdas::` with this plugin, pantsd on / off
Scenarios: fresh clone (new path and mtimes, empty build cache, engine holds the base image), no-op,
one handler edited, one shared module edited, base image inputs edited.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
SEED_ENTRIES = ("pants", "pants.toml", "BUILD", "build-support", "3rdparty", "base", "lambdas", "src", "pants-plugins")
CONFIGS = {
    # What CI runs so that the benchmark cannot rot (a couple of minutes): small repos, fewer builders.
    "ci": {"bulk_mb": 20, "large_lambdas": 12, "large_modules": 120, "check_sample": 2,
           "seed_builders": ["naive-buildkit", "scoped", "plugin-warm"],
           "large_builders": ["naive-buildkit", "plugin-warm"],
           "scenarios": ["fresh", "noop", "handler", "shared"]},
    "full": {"bulk_mb": 2900, "large_lambdas": 200, "large_modules": 2000, "check_sample": 6,
             "seed_builders": ["naive-buildkit", "naive-legacy", "scoped", "pants-docker", "plugin-warm", "plugin-cold"],
             "large_builders": ["naive-buildkit", "plugin-warm", "plugin-cold"],
             "scenarios": ["fresh", "noop", "handler", "shared", "base"]},
}
SCENARIOS = ["fresh", "noop", "handler", "shared", "base"]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], cwd: Path | None = None, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, text=True, capture_output=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def docker(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run([os.environ.get("BENCH_DOCKER", "docker"), *args], env=env, check=check)


_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_TRANSFER_RE = re.compile(r"(?:transferring context:|Sending build context to Docker daemon)\s+([\d.]+)\s*([kKMG]?i?B)")


def sent_context_bytes(output: str) -> int:
    """What Docker says it sent as build context: BuildKit's `transferring context: 7.08kB` (only the
    paths the Dockerfile's COPY lines use, and only what changed since the last build in this
    checkout) or the legacy builder's `Sending build context to Docker daemon 2.9GB` (everything)."""
    return int(sum(float(n) * _UNITS[u] for n, u in _TRANSFER_RE.findall(output)))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- repos --------------------------------------------------------------------------------------


@dataclass
class Lambda:
    name: str
    folder: str  # lambdas/<name>
    module: str  # the handler's module, e.g. list_pending.handler
    copy_dirs: list[str] = field(default_factory=list)  # what a person lists in COPY lines
    context_files: list[str] = field(default_factory=list)


@dataclass
class Repo:
    kind: str
    origin: Path
    lambdas: list[Lambda]
    handler_edit: str  # a handler file
    shared_edit: str  # a shared module some Lambdas import
    shared_affected: set[str] = field(default_factory=set)


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
    return Repo("large", origin, lambdas, "lambdas/fn_000/handler.py", "src/lib00/m000.py")


def describe_contexts(repo: Repo) -> None:
    """The plugin's inferred contexts: the COPY lists a careful person would keep, package by package."""
    out = run([str(repo.origin / "pants"), "--no-pantsd", "lambda-context", "--lambda-context-format=json", "lambdas::"],
              cwd=repo.origin).stdout
    by_address = {entry["address"].rsplit(":", 1)[1]: entry for entry in json.loads(out)}
    if repo.kind == "large":
        # A shared module that about a quarter of the Lambdas reach: edits must rebuild exactly those.
        counts: dict[str, int] = {}
        for entry in by_address.values():
            for f in entry["files"]:
                if f["path"].startswith("lib") and not f["path"].endswith("__init__.py"):
                    counts[f["path"]] = counts.get(f["path"], 0) + 1
        target = len(repo.lambdas) / 4
        repo.shared_edit = "src/" + min(sorted(counts), key=lambda p: abs(counts[p] - target))
    shared_module = repo.shared_edit.split("/", 1)[1]
    for lam in repo.lambdas:
        files = [f["path"] for f in by_address[lam.name]["files"]]
        lam.context_files = files
        tops = sorted({f.split("/")[0] for f in files})
        lam.copy_dirs = [f"src/{t}" if (repo.origin / "src" / t).is_dir() else f"lambdas/{t}" for t in tops]
        if shared_module in files:
            repo.shared_affected.add(lam.name)


# --- builders -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    seconds: float
    images: dict[str, str]  # Lambda name -> image id
    context_bytes: int


class Builder:
    name = ""
    builds_base = False

    def __init__(self, repo: Repo, base_ref: str, work: Path) -> None:
        self.repo, self.base_ref, self.work = repo, base_ref, work

    def prepare(self, root: Path) -> None:  # noqa: B027 - optional hook
        pass

    def build(self, root: Path) -> Outcome:
        raise NotImplementedError

    def image(self, lam: Lambda) -> str:
        return f"bench-{self.name}/{lam.name.replace('_', '-')}:latest"

    def image_ids(self) -> dict[str, str]:
        ids = {}
        for lam in self.repo.lambdas:
            result = docker("image", "inspect", "--format", "{{.Id}}", self.image(lam), check=False)
            if result.returncode == 0:
                ids[lam.name] = result.stdout.strip()
        return ids


class NaiveBuilder(Builder):
    """The original system: the repo root as context, one hand-kept Dockerfile per Lambda, one by one."""

    def __init__(self, repo: Repo, base_ref: str, work: Path, buildkit: bool) -> None:
        super().__init__(repo, base_ref, work)
        self.buildkit = buildkit
        self.name = "naive-buildkit" if buildkit else "naive-legacy"
        self.dockerfiles = work / f"dockerfiles-{self.name}"

    def prepare(self, root: Path) -> None:
        self.dockerfiles.mkdir(parents=True, exist_ok=True)
        for lam in self.repo.lambdas:
            copies = "".join(f"COPY {d} /var/task/{d.split('/', 1)[1]}\n" for d in lam.copy_dirs)
            (self.dockerfiles / f"{lam.name}.Dockerfile").write_text(
                f"FROM {self.base_ref}\n{copies}CMD [\"{lam.module}.handle\"]\n"
            )

    def build(self, root: Path) -> Outcome:
        start = time.monotonic()
        sent = 0
        progress = ("--progress=plain",) if self.buildkit else ()
        for lam in self.repo.lambdas:
            result = docker("build", *progress, "-f", str(self.dockerfiles / f"{lam.name}.Dockerfile"), "-t",
                            self.image(lam), str(root), env={"DOCKER_BUILDKIT": "1" if self.buildkit else "0"})
            sent += sent_context_bytes(result.stdout + result.stderr)
        seconds = time.monotonic() - start
        return Outcome(seconds, self.image_ids(), sent)


class ScopedBuilder(Builder):
    """The original proposed fix: each Lambda's folder as context. Shared modules are outside it."""

    name = "scoped"

    def prepare(self, root: Path) -> None:
        self.dockerfile = self.work / "scoped.Dockerfile"
        self.dockerfile.write_text(f"FROM {self.base_ref}\nARG NAME\nCOPY . /var/task/${{NAME}}/\n")

    def build(self, root: Path) -> Outcome:
        start = time.monotonic()
        sent = 0
        for lam in self.repo.lambdas:
            result = docker("build", "--progress=plain", "-f", str(self.dockerfile), "--build-arg", f"NAME={lam.name}",
                            "-t", self.image(lam), str(root / lam.folder), env={"DOCKER_BUILDKIT": "1"})
            sent += sent_context_bytes(result.stdout + result.stderr)
        return Outcome(time.monotonic() - start, self.image_ids(), sent)


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
                f'repository="bench-pants-docker/{lam.name.replace("_", "-")}", image_tags=["latest"], skip_push=True)'
            )
        with open(root / "BUILD", "a") as f:
            f.write("\n# benchmark: plain Pants docker_image targets\n" + "\n".join(lines) + "\n")

    def build(self, root: Path) -> Outcome:
        targets = [f"//:bench_image_{lam.name}" for lam in self.repo.lambdas]
        start = time.monotonic()
        run([str(root / "pants"), "package", *targets], cwd=root)
        seconds = time.monotonic() - start
        total = sum(dir_bytes(root / d) for lam in self.repo.lambdas for d in lam.copy_dirs)
        return Outcome(seconds, self.image_ids(), total)


class PluginBuilder(Builder):
    builds_base = True

    def __init__(self, repo: Repo, base_ref: str, work: Path, pantsd: bool) -> None:
        super().__init__(repo, base_ref, work)
        self.pantsd = pantsd
        self.name = "plugin-warm" if pantsd else "plugin-cold"

    def image(self, lam: Lambda) -> str:
        return f"bench-{self.name}/{lam.name}:latest"

    def build(self, root: Path) -> Outcome:
        shutil.rmtree(root / "dist", ignore_errors=True)
        start = time.monotonic()
        run([str(root / "pants"), "--pantsd" if self.pantsd else "--no-pantsd",
             f"--docker-default-repository=bench-{self.name}/{{name}}", "package", "lambdas::"], cwd=root)
        seconds = time.monotonic() - start
        total = sum(json.loads(p.read_text())["total_bytes"] for p in (root / "dist").glob("**/*.context.json"))
        return Outcome(seconds, self.image_ids(), total)


def make_builder(name: str, repo: Repo, base_ref: str, work: Path) -> Builder:
    return {
        "naive-buildkit": lambda: NaiveBuilder(repo, base_ref, work, buildkit=True),
        "naive-legacy": lambda: NaiveBuilder(repo, base_ref, work, buildkit=False),
        "scoped": lambda: ScopedBuilder(repo, base_ref, work),
        "pants-docker": lambda: PantsDockerBuilder(repo, base_ref, work),
        "plugin-warm": lambda: PluginBuilder(repo, base_ref, work, pantsd=True),
        "plugin-cold": lambda: PluginBuilder(repo, base_ref, work, pantsd=False),
    }[name]()


# --- measuring ----------------------------------------------------------------------------------


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def imports_ok(image: str, lam: Lambda) -> bool:
    """Does the image import its handler module (and so everything the module imports)?"""
    result = docker("run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python3", "-w", "/var/task",
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


def measure_builder(builder: Builder, repo: Repo, run_dir: Path, sample: int, scenarios: list[str]) -> dict:
    root = run_dir / builder.name / "repo"
    results: dict[str, dict] = {}
    remove_images(f"bench-{builder.name}/")  # every tag, content key tags included
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
        "handler": lambda: append(root / repo.handler_edit, "\n# benchmark edit\n"),
        "shared": lambda: append(root / repo.shared_edit, "\n# benchmark edit\n"),
        "base": lambda: append(root / "base/Dockerfile", f"\nLABEL benchmark.edit=\"{time.time()}\"\n"),
    }
    try:
        for scenario in scenarios:
            if scenario == "base" and not builder.builds_base:
                results[scenario] = {"skipped": "this builder does not build the base image"}
                continue
            edit = edits[scenario]
            if edit:
                edit()
            log(f"{repo.kind} {builder.name} {scenario}")
            outcome = builder.build(root)
            rebuilt = sorted(n for n, i in outcome.images.items() if previous.get(n) != i)
            checked = [lam for lam in repo.lambdas if lam.name in rebuilt][:sample]
            works = sum(imports_ok(builder.image(lam), lam) for lam in checked)
            added = [image_size(builder.image(lam)) - base_size for lam in repo.lambdas if lam.name in outcome.images][:sample]
            results[scenario] = {
                "seconds": round(outcome.seconds, 2),
                "rebuilt": len(rebuilt),
                "rebuilt_names": rebuilt if len(rebuilt) <= 10 else rebuilt[:10] + ["..."],
                # Exactly the Lambdas whose closure holds the edited module (or handler) were rebuilt.
                "exact": (set(rebuilt) == repo.shared_affected) if scenario == "shared"
                else (rebuilt == [repo.handler_edit.split("/")[1]]) if scenario == "handler"
                else (rebuilt == []) if scenario == "noop" else None,
                "context_bytes": outcome.context_bytes,
                "added_bytes_mean": int(sum(added) / len(added)) if added else None,
                "import_check": f"{works}/{len(checked)}",
                "works": works == len(checked),
            }
            previous = outcome.images
    finally:
        stop_pantsd(root)
    shutil.rmtree(root, ignore_errors=True)
    return results


def base_image_ref(repo: Repo) -> str:
    """Builds the base once with the plugin (not timed): every builder builds FROM the same image."""
    run([str(repo.origin / "pants"), "--no-pantsd", "--docker-default-repository=bench-prep/{name}",
         "package", f"lambdas/{repo.lambdas[0].name}:{repo.lambdas[0].name}"], cwd=repo.origin)
    (info,) = [json.loads(p.read_text()) for p in (repo.origin / "dist").glob("**/*.docker-info.json")]
    shutil.rmtree(repo.origin / "dist")
    (repo.origin / "dist").mkdir()
    remove_images("bench-prep/")
    return info["base_image"]["ref"]


def ratios(builders: dict[str, dict], ours: str = "plugin-warm") -> dict[str, dict[str, float]]:
    """How many times faster (seconds) and smaller (context bytes) the plugin is than each builder."""
    out: dict[str, dict[str, float]] = {}
    for name, scenarios in builders.items():
        if name == ours:
            continue
        for scenario, r in scenarios.items():
            mine = builders[ours].get(scenario, {})
            if "seconds" in r and "seconds" in mine and mine["seconds"] > 0:
                out.setdefault(name, {})[f"{scenario}_speedup"] = round(r["seconds"] / mine["seconds"], 2)
            if r.get("context_bytes") and mine.get("context_bytes"):
                out.setdefault(name, {})[f"{scenario}_context_ratio"] = round(r["context_bytes"] / mine["context_bytes"], 1)
    return out


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["docker"] = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    except (ValueError, OSError, RuntimeError):
        pass
    return info


def plot(results: dict, out_dir: Path, config: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for repo_kind, repo in results["repos"].items():
        builders = repo["builders"]
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / max(1, len(builders))
        for i, (name, scenarios) in enumerate(builders.items()):
            xs, ys = [], []
            for j, scenario in enumerate(SCENARIOS):
                if "seconds" in scenarios.get(scenario, {}):
                    xs.append(j + i * width)
                    ys.append(scenarios[scenario]["seconds"])
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(SCENARIOS))], SCENARIOS)
        ax.set_yscale("log")
        ax.set_ylabel("wall time (s, log scale)")
        ax.set_title(f"{repo_kind} repo: {repo['lambdas']} Lambdas, {repo['repo_bytes'] / 2**20:.0f} MiB ({config})")
        ax.legend(fontsize=8)
        path = out_dir / f"{config}-{repo_kind}-time.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


def plot_two_runners(report_path: Path) -> Path:
    """A bar chart of a two-runner report (tests/e2e/two_runners_e2e_test.py), beside its JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = json.loads(report_path.read_text())
    goals = ["package", "publish", *(g for g in report["runner_b"] if g not in ("package", "publish"))]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for i, runner in enumerate(("runner_a", "runner_b")):
        xs = [j + i * 0.38 for j, goal in enumerate(goals) if goal in report[runner]]
        seconds = [report[runner][goal]["seconds"] for goal in goals if goal in report[runner]]
        bars = ax.bar(xs, seconds, 0.38, label=runner.replace("_", " "))
        ax.bar_label(bars, [f"{s:.1f} s" for s in seconds], fontsize=8)
    b = report["runner_b"]["package"]
    labels = {"package": "package lambdas::", "publish": "publish lambdas::"}
    ax.set_xticks([j + 0.19 for j in range(len(goals))], [labels.get(g, g.replace("_", " ")) for g in goals], fontsize=8)
    ax.set_ylabel("wall time (s)")
    ax.set_title(
        f"Two CI runners: B's package {b['seconds'] / report['runner_a']['package']['seconds']:.2f}x A's; "
        f"REAPI {b['remote_cache_requests_cached']}/{b['remote_cache_requests']} hits, "
        f"{report['distinct_blobs_served_to_b']} blobs pulled",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    path = report_path.with_suffix(".png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def markdown(results: dict) -> str:
    """The tables of docs/benchmarks.md: per repo, builder x scenario."""
    lines = []
    for kind, repo in results["repos"].items():
        scenarios = [s for s in SCENARIOS if any(s in b for b in repo["builders"].values())]
        lines += [f"### {kind} repo: {repo['lambdas']} Lambdas, {human_bytes(repo['repo_bytes'])}", ""]
        lines += ["Wall time in seconds (images rebuilt; handler import check on rebuilt images):", ""]
        lines += ["| builder | " + " | ".join(scenarios) + " |", "| --- |" + " --- |" * len(scenarios)]
        for name, b in repo["builders"].items():
            cells = []
            for scenario in scenarios:
                r = b.get(scenario, {})
                if "seconds" in r:
                    ok = "ok" if r["works"] else f"BROKEN {r['import_check']}"
                    exact = "; not exact" if r.get("exact") is False else ""
                    cells.append(f"{r['seconds']:.2f} ({r['rebuilt']}; {ok}{exact})")
                else:
                    cells.append("n/a")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "Build context per run (sum over images) and bytes each image adds over the base (mean):", ""]
        lines += ["| builder | context, fresh | context, one handler edited | added over base |", "| --- | --- | --- | --- |"]
        for name, b in repo["builders"].items():
            fresh, handler = b.get("fresh", {}), b.get("handler", {})
            lines.append(f"| {name} | {human_bytes(fresh.get('context_bytes'))} | {human_bytes(handler.get('context_bytes'))} "
                         f"| {human_bytes(fresh.get('added_bytes_mean'))} |")
        lines += ["", f"Shared module edited: `{repo['shared_module']}`, imported by {len(repo['shared_affected'])} "
                  f"Lambdas ({', '.join(repo['shared_affected'][:8])}{'...' if len(repo['shared_affected']) > 8 else ''}).", ""]
        lines += ["Ratios, plugin-warm vs each builder (time: x faster; context: x smaller):", ""]
        for name, r in repo["ratios_vs_plugin_warm"].items():
            lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(r.items())))
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="ci")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "chromadb-lambda-bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--repos", default="seed,large")
    parser.add_argument("--bulk-mb", type=int, help="size of the seed repo's unrelated tree (default: per config)")
    parser.add_argument("--builders", help="only these builders (comma-separated); with --merge, update their results")
    parser.add_argument("--merge", action="store_true", help="keep the other builders' results of an earlier run")
    parser.add_argument("--plot-two-runners", type=Path, metavar="JSON",
                        help="only plot a report of tests/e2e/two_runners_e2e_test.py (PNG beside it)")
    args = parser.parse_args()
    if args.plot_two_runners:
        log(f"wrote {plot_two_runners(args.plot_two_runners)}")
        return 0
    config = dict(CONFIGS[args.config])
    if args.bulk_mb is not None:
        config["bulk_mb"] = args.bulk_mb
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict = {"config": args.config, "settings": config, "machine": machine(), "repos": {},
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out_json = args.out / f"{args.config}.json"
    earlier = json.loads(out_json.read_text()) if args.merge and out_json.exists() else None
    only = set(args.builders.split(",")) if args.builders else None
    for kind in args.repos.split(","):
        if kind == "seed":
            repo, builders = seed_repo(args.work, config["bulk_mb"]), config["seed_builders"]
        else:
            repo, builders = large_repo(args.work, config["large_lambdas"], config["large_modules"]), config["large_builders"]
        if only:
            builders = [b for b in builders if b in only]
        log(f"{kind}: preparing ({len(repo.lambdas)} Lambdas)")
        describe_contexts(repo)
        base_ref = base_image_ref(repo)
        measured = {}
        for name in builders:
            builder = make_builder(name, repo, base_ref, args.work)
            measured[name] = measure_builder(builder, repo, args.work / kind, config["check_sample"], config["scenarios"])
        if earlier and kind in earlier["repos"]:
            measured = {name: measured.get(name, r) for name, r in earlier["repos"][kind]["builders"].items()}
        results["repos"][kind] = {
            "lambdas": len(repo.lambdas),
            "repo_bytes": dir_bytes(repo.origin),
            "shared_module": repo.shared_edit,
            "shared_affected": sorted(repo.shared_affected),
            "builders": measured,
            "ratios_vs_plugin_warm": ratios(measured),
        }
        shutil.rmtree(repo.origin, ignore_errors=True)
    results["total_seconds"] = round(time.time() - started, 1)
    if earlier:
        results["merged"] = {"builders_rerun": sorted(only or []), "earlier_date": earlier["date"],
                             "earlier_total_seconds": earlier["total_seconds"]}
    out_json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    results["plots"] = plot(results, args.out, args.config)
    out_json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (args.out / f"{args.config}.md").write_text(markdown(results))
    log(f"wrote {out_json} and {', '.join(results['plots'])} in {results['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
