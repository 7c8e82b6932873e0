"""Warm `./pants` calls, before and after a change, side by side in one run on one machine.

    python3 benchmarks/warm_calls.py [--before REV] [--runs N] [--out benchmarks/results/warm-calls.json]

Clones this repo twice (REV and HEAD) into a scratch folder, warms each (pantsd up, every Lambda image
in the engine), then, interleaving the two clones call by call: a no-op `package lambdas::`, one
handler edited and packaged (HEAD also with `--lambda-image-check-handler-import=false`, which gives
the import check's cost), `--version`; and, for HEAD, the wrapper's own time: the median difference of
`./pants --version` and the native client run directly (with the environment the wrapper exports) right
before or after it, each after an untimed call of its own kind. Each clone edits the handler with its own
text, so no clone finds the other's image. Writes JSON and a Markdown table.
`benchmarks/run --config full` runs it too (`measure`), and keeps its report in the same results JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HANDLER = "lambdas/list_pending/handler.py"


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {cwd} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def edit(clone: Path, text: str) -> None:
    with open(clone / HANDLER, "a") as f:
        f.write(f"# {text}\n")


def native_client_argv(clone: Path) -> tuple[list[str], dict[str, str]]:
    """The native client and the environment the wrapper would export (read from the wrapper's files)."""
    script = (
        "source build-support/bootstrap/common.sh; source \"$BOOTSTRAP_ENV_FILE\"; "
        "source .pants.d/chromadb-lambda-wrapper/engine-state.sh; engine_state_exports; "
        "export PIP_CONFIG_FILE=/dev/null NO_SCIE_WARNING=1; echo \"$PANTS_NATIVE_CLIENT\"; env -0"
    )
    out = subprocess.run(["bash", "-c", script], cwd=clone, capture_output=True, check=True).stdout
    client, _, env = out.partition(b"\n")
    pairs = (item.split(b"=", 1) for item in env.split(b"\0") if b"=" in item)
    return [client.decode()], {k.decode(): v.decode() for k, v in pairs}


# What wrapper_overhead_ms_median is, as this report and benchmarks/report.py's table say it.
OVERHEAD_STATISTIC = (
    "median of paired differences: `./pants --version` minus the native client run directly right before or "
    "after it, each timed after an untimed call of its own kind"
)
DEFAULT_BEFORE = "d930c4e"  # the wrapper before it used Pants' native client


def side_env(side: str) -> dict[str, str]:
    """Each clone tags its images in repositories of its own. Sharing `list_pending:latest` and the
    other tags, each run of one clone moved tags that the other clone's next run moved back, timed as
    part of that run (a before clone whose images differ moved every image's tags)."""
    return {"PANTS_DOCKER_DEFAULT_REPOSITORY": f"warm-calls-{os.getpid()}-{side}/{{name}}"}


def remove_side_images(clone: Path) -> None:
    """The clones' images (their own repositories), removed from the engine the wrapper found."""
    try:
        env = {**os.environ, **native_client_argv(clone)[1]}
        refs = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], env=env,
                              capture_output=True, text=True, check=True).stdout.split()
        doomed = [r for r in refs if r.startswith(f"warm-calls-{os.getpid()}-")]
        if doomed:
            subprocess.run(["docker", "image", "rm", "-f", *doomed], env=env, capture_output=True, check=False)
    except (OSError, subprocess.CalledProcessError):
        pass


def measure(before_rev: str, runs: int) -> dict:
    """Clones `before_rev` and HEAD, warms both, and times their calls interleaved; returns the report."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    before = subprocess.run(["git", "rev-parse", "--short", before_rev], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="warm-calls-"))
    clones = {"before": scratch / "before", "after": scratch / "after"}
    for side, rev in (("before", before), ("after", head)):
        subprocess.run(["git", "clone", "-q", str(REPO), str(clones[side])], check=True)
        subprocess.run(["git", "checkout", "-q", rev], cwd=clones[side], check=True)
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}

    def record(side: str, name: str, seconds: float) -> None:
        results[side].setdefault(name, []).append(round(seconds, 3))

    try:
        for side, clone in clones.items():
            for _ in range(2):  # starts pantsd, builds or finds every image, then a clean no-op
                timed(["./pants", "package", "lambdas::"], clone, side_env(side))
        for i in range(runs):
            for side, clone in clones.items():
                record(side, "noop_package", timed(["./pants", "package", "lambdas::"], clone, side_env(side)))
            # Check off first: the check-on run after it leaves every image checked, so the next
            # no-op is one.
            edit(clones["after"], f"after check-off edit {i} {time.time()}")
            record(
                "after",
                "handler_edit_package_import_check_off",
                timed(["./pants", "--lambda-image-check-handler-import=false", "package", "lambdas::"], clones["after"],
                      side_env("after")),
            )
            for side, clone in clones.items():
                edit(clone, f"{side} edit {i} {time.time()}")
                record(side, "handler_edit_package", timed(["./pants", "package", "lambdas::"], clone, side_env(side)))
            for side, clone in clones.items():
                record(side, "version", timed(["./pants", "--version"], clone, side_env(side)))
        # The wrapper's own time: pairs of `./pants --version` and the native client run directly, one
        # right after the other (in turn first), so each difference leaves out the same pantsd work;
        # their median. A difference of the two medians would mix in this machine's swings between runs.
        # Each timed call follows an untimed call of its own kind: the two environments differ (the
        # shell's own variables), and pantsd reads the options and BUILD files again in a run whose
        # environment differs from the last run's, which a call right after the other kind would pay
        # (pants_compat, 5294ca5; in the a8ef2a9 run the second call of each pair was ~25 ms slower, -18 ms).
        client, env = native_client_argv(clones["after"])
        for i in range(max(25, runs)):
            calls = [
                ("wrapper_version", ["./pants", "--version"], side_env("after")),
                ("native_client_version", [*client, "--version"], {**env, **side_env("after")}),
            ]
            for name, argv, call_env in calls if i % 2 == 0 else calls[::-1]:
                timed(argv, clones["after"], call_env)
                record("after", name, timed(argv, clones["after"], call_env))
    finally:
        remove_side_images(clones["after"])
        for clone in clones.values():
            for pid_file in clone.glob(".pids/*/pantsd/pid"):
                subprocess.run(["kill", pid_file.read_text().strip()], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {side: {k: statistics.median(v) for k, v in r.items()} for side, r in results.items()}
    pairs = zip(results["after"]["wrapper_version"], results["after"]["native_client_version"])
    overhead_ms = round(1000 * statistics.median(w - n for w, n in pairs), 1)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "before": before,
        "after": head,
        "runs": runs,
        "seconds": results,
        "medians": medians,
        "wrapper_overhead_ms_median": overhead_ms,
        "import_check_cost_s_median": round(
            medians["after"]["handler_edit_package"] - medians["after"]["handler_edit_package_import_check_off"], 3
        ),
    }


def markdown(report: dict) -> str:
    medians = report["medians"]
    rows = [
        ("no-op `package lambdas::`", "noop_package"),
        ("one handler edited, `package lambdas::`", "handler_edit_package"),
        ("`--version`", "version"),
    ]
    lines = [
        f"Warm calls, {report['when']}, before {report['before']} / after {report['after']}, {report['runs']} runs "
        "each (median; all runs in the JSON).",
        "",
        "| call | before | after |",
        "| --- | --- | --- |",
        *(f"| {label} | {medians['before'][k]:.2f} s | {medians['after'][k]:.2f} s |" for label, k in rows),
        f"| one handler edited, import check off | n/a | {medians['after']['handler_edit_package_import_check_off']:.2f} s |",
        "",
        f"Wrapper overhead (after): {report['wrapper_overhead_ms_median']} ms ({OVERHEAD_STATISTIC}).",
    ]
    return "\n".join(lines) + "\n"


def write(report: dict, out: Path) -> None:
    """The report as JSON at `out` and its Markdown table beside it (`.md`)."""
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=DEFAULT_BEFORE)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/warm-calls.json"))
    args = parser.parse_args()
    report = measure(args.before, args.runs)
    write(report, Path(args.out))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
