"""The benchmark's results as tables, plots and target verdicts: everything shown is rendered from the
results JSON of one run (benchmarks/bench.py), and into docs/benchmarks.md between its markers."""
from __future__ import annotations

import json
from pathlib import Path

from warm_calls import OVERHEAD_STATISTIC

SCENARIOS = ["fresh", "noop", "handler", "shared", "base"]
PLUGIN = "plugin-warm"
HAND = "hand-written-buildkit"
# Tables and plots list repos and builders in this order (the JSON's keys are sorted).
REPO_ORDER = ["seed", "large"]
BUILDER_ORDER = ["seed", HAND, "scoped", "pants-docker", PLUGIN, "plugin-warm-docker-build", "plugin-cold"]


def ordered(mapping: dict, order: list[str]) -> list[tuple[str, dict]]:
    return sorted(mapping.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))


def ratios(builders: dict[str, dict], ours: str = PLUGIN) -> dict[str, dict[str, float]]:
    """How many times faster the plugin is than each builder (their seconds / the plugin's)."""
    out: dict[str, dict[str, float]] = {}
    for name, scenarios in builders.items():
        if name == ours or ours not in builders:
            continue
        for scenario, r in scenarios.items():
            mine = builders[ours].get(scenario, {})
            if "seconds" in r and "seconds" in mine and mine["seconds"] > 0:
                out.setdefault(name, {})[scenario] = round(r["seconds"] / mine["seconds"], 2)
    return out


def publish_markdown(publish: dict) -> list[str]:
    """The publish measurement of one repo: both runs, and the repositories grouped by what they got."""
    lines = [f"`pants publish lambdas::` ({publish['builder']}, after its scenarios) to a local `docker-registry`, twice; "
             "counts from the registry's access log:", "",
             "| publish | wall time | blob uploads | cross-repository mounts | manifest puts | pushed by the registry API "
             "| already published |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, run in zip(("first", "second"), publish["runs"]):
        lines.append(f"| {label} | {run['seconds']:.2f} s | {run['uploads']} | {run['mounts']} | {run['manifest_puts']} "
                     f"| {run['by_registry_api']} | {run['already_published']} |")
    groups: dict[tuple[int, int], int] = {}
    for counts in publish["runs"][0]["repositories"].values():
        key = (counts["uploads"], counts["mounts"])
        groups[key] = groups.get(key, 0) + 1
    described = ", ".join(f"{n} with {u} upload{'' if u == 1 else 's'} and {m} mount{'' if m == 1 else 's'}"
                          for (u, m), n in sorted(groups.items(), key=lambda item: -item[1]))
    lines += ["", f"Repositories on the first publish: {described or 'none'}.", ""]
    return lines


# Issue #13's targets: (label, repo, scenario, wanted ratio of the hand-written builder's time to the
# plugin-warm's: `speedup >= n`, or for "at most Nx the hand-written time" speedup >= 1/N).
TARGETS = [
    ("No-op: plugin-warm at most 0.5x the hand-written BuildKit time", "seed", "noop", 2.0, ">="),
    ("One handler edited: plugin-warm at most 0.8x the hand-written BuildKit time", "seed", "handler", 1.25, ">="),
    ("No-op: plugin-warm at least 30x faster than hand-written BuildKit", "large", "noop", 30.0, ">="),
    ("One handler edited: plugin-warm at least 25x faster than hand-written BuildKit", "large", "handler", 25.0, ">="),
    ("Fresh clone: plugin-warm faster than hand-written BuildKit", "large", "fresh", 1.0, ">"),
]
WRAPPER_TARGET_MS = 50.0


def targets(results: dict) -> list[dict]:
    """Each target of issues #13 and #14 (publish) this run can score, met or missed, with the numbers it is scored on."""
    rows = []
    for label, kind, scenario, wanted, op in TARGETS:
        repo = results["repos"].get(kind)
        if not repo:
            continue
        mine = repo["builders"].get(PLUGIN, {}).get(scenario, {})
        theirs = repo["builders"].get(HAND, {}).get(scenario, {})
        if "seconds" not in mine or "seconds" not in theirs:
            continue
        speedup = theirs["seconds"] / mine["seconds"]
        met = speedup >= wanted if op == ">=" else speedup > wanted
        rows.append({"target": f"{label} ({repo['lambdas']} Lambdas)", "repo": kind, "scenario": scenario,
                     "plugin_seconds": mine["seconds"], "hand_written_seconds": theirs["seconds"],
                     "plugin_over_hand_written": round(mine["seconds"] / theirs["seconds"], 3),
                     "speedup": round(speedup, 2), "met": met})
    for kind, repo in ordered(results["repos"], REPO_ORDER):
        publish = repo.get("publish")
        if not publish:
            continue
        first, second = publish["runs"]
        twice = publish["blobs_uploaded_twice_into_a_repository"]
        rows.append({"target": f"Publish of {publish['lambdas']} Lambdas: base layers uploaded at most once per repository "
                               "(no blob uploaded twice into one repository)",
                     "repo": kind, "scenario": "publish", "publish_seconds": [first["seconds"], second["seconds"]],
                     "uploads": [first["uploads"], second["uploads"]], "met": not twice})
        rows.append({"target": f"Second publish of {publish['lambdas']} Lambdas: no blob uploaded, no manifest put",
                     "repo": kind, "scenario": "publish", "publish_seconds": [first["seconds"], second["seconds"]],
                     "uploads": [first["uploads"], second["uploads"]],
                     "met": second["uploads"] == 0 and second["manifest_puts"] == 0})
    warm = results.get("warm_calls")
    if warm:
        overhead = warm["wrapper_overhead_ms_median"]
        rows.append({"target": f"Wrapper overhead on a warm call under {WRAPPER_TARGET_MS:.0f} ms",
                     "wrapper_overhead_ms": overhead, "met": overhead < WRAPPER_TARGET_MS})
    return rows


def plot(results: dict, out_dir: Path, config: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for repo_kind, repo in ordered(results["repos"], REPO_ORDER):
        builders = repo["builders"]
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / max(1, len(builders))
        for i, (name, scenarios) in enumerate(ordered(builders, BUILDER_ORDER)):
            xs, ys = [], []
            for j, scenario in enumerate(SCENARIOS):
                if "seconds" in scenarios.get(scenario, {}):
                    xs.append(j + i * width)
                    ys.append(scenarios[scenario]["seconds"])
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(SCENARIOS))], SCENARIOS)
        ax.set_yscale("log")
        ax.set_ylabel("wall time (s, log scale)")
        ax.set_title(f"{repo_kind} repo: {repo['lambdas']} Lambdas, {repo['repo_bytes'] / 2**20:.0f} MiB "
                     f"({config}, {results['commit']})")
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


def time_cell(r: dict) -> str:
    if "seconds" not in r:
        return "n/a"
    check = r["import_check"]
    ok = f"{check['checked'] - len(check['failed'])}/{check['checked']} import"
    exact = "" if r["exact"] else f", expected {len(r['expected'])}"
    return f"{r['seconds']:.2f} s ({len(r['rebuilt'])} rebuilt{exact}; {ok})"


def markdown(results: dict, plot_dir: str = "") -> str:
    """The results as Markdown: what ran, per repo builder x scenario tables, the targets, warm calls."""
    lines = [
        f"Generated by `benchmarks/run --config {results['config']}` at commit {results['commit']}, "
        f"{results['date']}, in {results['total_seconds']:.0f} s on {results['machine'].get('cpus')} CPUs "
        f"({results['machine'].get('platform')}, Docker engine {results['machine'].get('docker', '?')}). "
        "Every number below is from this run's JSON.",
        "",
    ]
    for name, reason in results.get("skipped_builders", {}).items():
        lines += [f"Not measured: `{name}` ({reason}).", ""]
    for kind, repo in ordered(results["repos"], REPO_ORDER):
        scenarios = [s for s in SCENARIOS if any(s in b for b in repo["builders"].values())]
        lines += [f"### {kind} repo: {repo['lambdas']} Lambdas, {human_bytes(repo['repo_bytes'])}", ""]
        if plot_dir:
            lines += [f"![{kind} repo]({plot_dir}/{results['config']}-{kind}-time.png)", ""]
        lines += ["Wall time (images whose id changed, and how many the edit affects when that differs; "
                  "handler import check on the rebuilt images checked):", ""]
        lines += ["| builder | " + " | ".join(scenarios) + " |", "| --- |" + " --- |" * len(scenarios)]
        for name, b in ordered(repo["builders"], BUILDER_ORDER):
            lines.append(f"| {name} | " + " | ".join(time_cell(b.get(s, {})) for s in scenarios) + " |")
        lines += ["", "Bytes the Docker engine received for builds and loads (summed over the images of the step), "
                  "and the mean bytes an image adds over the base:", ""]
        lines += ["| builder | " + " | ".join(scenarios) + " | added over base |",
                  "| --- |" + " --- |" * (len(scenarios) + 1)]
        for name, b in ordered(repo["builders"], BUILDER_ORDER):
            cells = [human_bytes(b[s]["docker_received_bytes"]) if "seconds" in b.get(s, {}) else "n/a" for s in scenarios]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {human_bytes(b.get('fresh', {}).get('added_bytes_mean'))} |")
        affected = repo["shared_affected"]
        lines += ["", f"Handler edited: `{repo['handler_module']}`. Shared module edited: `{repo['shared_module']}`, "
                  f"imported by {len(affected)} Lambda{'' if len(affected) == 1 else 's'} ({', '.join(affected[:8])}{'...' if len(affected) > 8 else ''}).", ""]
        skipped = sorted({r["skipped"] for b in repo["builders"].values() for r in b.values() if "skipped" in r})
        if skipped:
            lines += ["n/a: " + "; ".join(skipped) + ".", ""]
        publish = repo.get("publish")
        if publish:
            lines += publish_markdown(publish)
        if repo["speedup_of_plugin_warm"]:
            lines += ["plugin-warm, times faster than each builder (their time / its time):", ""]
            lines += ["| builder | " + " | ".join(scenarios) + " |", "| --- |" + " --- |" * len(scenarios)]
            for name, r in ordered(repo["speedup_of_plugin_warm"], BUILDER_ORDER):
                lines.append(f"| {name} | " + " | ".join(f"{r[s]:.2f}" if s in r else "n/a" for s in scenarios) + " |")
            lines.append("")
    lines += ["### Targets (issues #13 and #14)", ""]
    if not results["targets"]:
        lines += ["None can be scored: this run measured neither plugin-warm and hand-written-buildkit side by "
                  "side nor the warm calls.", ""]
    else:
        lines += ["| target | plugin-warm | hand-written BuildKit | ratio | |", "| --- | --- | --- | --- | --- |"]
    for t in results["targets"]:
        verdict = "**met**" if t["met"] else "**missed**"
        if "wrapper_overhead_ms" in t:
            lines.append(f"| {t['target']} | {t['wrapper_overhead_ms']:.1f} ms | | | {verdict} |")
        elif "publish_seconds" in t:
            first, second = t["publish_seconds"]
            lines.append(f"| {t['target']} | {first:.2f} s then {second:.2f} s | | {t['uploads'][0]} then "
                         f"{t['uploads'][1]} blob uploads | {verdict} |")
        else:
            lines.append(f"| {t['target']} | {t['plugin_seconds']:.2f} s | {t['hand_written_seconds']:.2f} s "
                         f"| {t['plugin_over_hand_written']:.2f}x the time ({t['speedup']:.1f}x faster) | {verdict} |")
    lines.append("")
    warm = results.get("warm_calls")
    if warm:
        m = warm["medians"]
        lines += ["### Warm `./pants` calls", "",
                  f"Before {warm['before']} / after {warm['after']}, {warm['runs']} runs each, medians (benchmarks/warm_calls.py):", "",
                  "| call | before | after |", "| --- | --- | --- |"]
        for label, key in (("no-op `package lambdas::`", "noop_package"),
                           ("one handler edited, `package lambdas::`", "handler_edit_package"), ("`--version`", "version")):
            lines.append(f"| {label} | {m['before'][key]:.2f} s | {m['after'][key]:.2f} s |")
        lines += [f"| one handler edited, import check off | n/a | {m['after']['handler_edit_package_import_check_off']:.2f} s |",
                  "", f"Wrapper overhead: {warm['wrapper_overhead_ms_median']} ms ({OVERHEAD_STATISTIC}).", ""]
    return "\n".join(lines)


RESULTS_MARKERS = ("<!-- benchmark results: generated by benchmarks/bench.py from the JSON; do not edit by hand -->",
                   "<!-- end of benchmark results -->")
TWO_RUNNERS_MARKERS = ("<!-- two-runner results: generated by benchmarks/bench.py from two-runners.json; do not edit by hand -->",
                       "<!-- end of two-runner results -->")


def render_into_doc(doc: Path, text: str, markers: tuple[str, str]) -> None:
    """Replaces what is between the markers of `doc` with `text`."""
    begin, end = markers
    content = doc.read_text()
    if begin not in content or end not in content:
        raise RuntimeError(f"{doc} has no markers {begin!r} ... {end!r}")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{tail}")


def two_runners_markdown(report: dict) -> str:
    """The table of a two-runner report (tests/e2e/two_runners_e2e_test.py)."""
    a, b = report["runner_a"], report["runner_b"]
    lines = [f"Run of {report['date']} on {report['cpus']} CPUs:", "", "| | runner A | runner B | B / A |",
             "| --- | --- | --- | --- |"]
    for goal, label in (("package", "`package lambdas::`"), ("publish", "`publish lambdas::`")):
        lines.append(f"| {label} | {a[goal]['seconds']:.1f} s | {b[goal]['seconds']:.1f} s "
                     f"| {b[goal]['seconds'] / a[goal]['seconds']:.2f} |")
    if "package_one_handler_changed" in b:
        lines.append(f"| one handler changed on B, `package lambdas::` | | {b['package_one_handler_changed']['seconds']:.1f} s | |")
    lines.append(f"| REAPI cache (package) | {a['package']['remote_cache_write_successes']} process results written "
                 f"| {b['package']['remote_cache_requests_cached']}/{b['package']['remote_cache_requests']} hits, "
                 f"{b['package']['remote_cache_total_time_saved_ms'] / 1000:.1f} s of process time saved | |")
    lines.append(f"| registry | | {report['distinct_blobs_served_to_b']} blobs pulled (layers and configs) | |")
    return "\n".join(lines) + "\n"
