"""The `lambda-context` goal: what goes into each Lambda image, and why."""
from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from pants.engine.addresses import Address
from pants.engine.console import Console
from pants.engine.goal import Goal, GoalSubsystem, Outputting
from pants.engine.rules import Get, MultiGet, collect_rules, goal_rule, rule
from pants.engine.target import (
    Dependencies,
    DependenciesRequest,
    Targets,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.option.option_types import EnumOption
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text

from chromadb_lambda.util_rules.closure import LambdaClosure, LambdaClosureRequest
from chromadb_lambda.util_rules.context import context_report
from chromadb_lambda.subsystem import ChromadbLambdaSubsystem
from chromadb_lambda.target_types import ChromadbLambdaHandlerField

class LambdaContextFormat(Enum):
    text = "text"
    json = "json"


class LambdaContextSubsystem(Outputting, GoalSubsystem):
    name = "lambda-context"
    help = help_text(
        """
        Show the build context of `chromadb_lambda` images: every file, its size, and why it is there
        (the dependency chain from the handler), plus what was left out because the base provides it.

        Example: `pants lambda-context lambdas/word_polling:word_polling --lambda-context-format=json`
        """
    )

    format = EnumOption(default=LambdaContextFormat.text, help="Output format: `text` or `json`.")


class LambdaContextGoal(Goal):
    subsystem_cls = LambdaContextSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@dataclass(frozen=True)
class DependencyPathsRequest:
    roots: tuple[Address, ...]


@dataclass(frozen=True)
class DependencyPaths:
    """The parent of each address on a shortest dependency path from the roots (roots map to None)."""

    parents: FrozenDict[Address, Address | None]


def render_text(report: dict) -> str:
    lines = [
        f"{report['address']}: handler {report['handler']}, FROM {report['base_image']}",
        f"  {len(report['files'])} files, {report['total_bytes']} bytes, copied to {report['task_root']}",
    ]
    for f in report["files"]:
        why = " -> ".join(f["why"]) if isinstance(f["why"], list) else f["why"]
        lines.append(f"  {f['size']:>8}  {f['path']}")
        lines.append(f"            why: {why}")
        if "needed_by" in f:
            lines.append(f"            needed by: {f['needed_by']}")
    if report["provided_by_base"]:
        lines.append("  left out, the base image provides them:")
        lines.extend(f"            {p}" for p in report["provided_by_base"])
    return "\n".join(lines) + "\n"


@rule(desc="Tracing dependency paths")
async def trace_dependency_paths(request: DependencyPathsRequest) -> DependencyPaths:
    parents: dict[Address, Address | None] = {root: None for root in request.roots}
    frontier = list(request.roots)
    while frontier:
        wrapped = await MultiGet(
            Get(WrappedTarget, WrappedTargetRequest(a, description_of_origin="<infallible>")) for a in frontier
        )
        dependencies = await MultiGet(
            Get(Targets, DependenciesRequest(w.target.get(Dependencies))) for w in wrapped
        )
        next_frontier = []
        for address, targets in zip(frontier, dependencies):
            for target in targets:
                if target.address not in parents:
                    parents[target.address] = address
                    next_frontier.append(target.address)
        frontier = next_frontier
    return DependencyPaths(FrozenDict(parents))


@goal_rule
async def lambda_context(
    console: Console,
    subsystem: LambdaContextSubsystem,
    lambda_image: ChromadbLambdaSubsystem,
    targets: Targets,
) -> LambdaContextGoal:
    addresses = [t.address for t in targets if t.has_field(ChromadbLambdaHandlerField)]
    closures = await MultiGet(Get(LambdaClosure, LambdaClosureRequest(a)) for a in addresses)
    paths = await MultiGet(Get(DependencyPaths, DependencyPathsRequest(c.roots)) for c in closures)
    reports = [context_report(c, lambda_image.task_root, p.parents) for c, p in zip(closures, paths)]
    with subsystem.output(console) as write_stdout:
        if subsystem.format == LambdaContextFormat.json:
            write_stdout(json.dumps(reports, indent=2) + "\n")
        else:
            write_stdout("".join(render_text(r) for r in reports))
    return LambdaContextGoal(exit_code=0)


def rules():
    return collect_rules()
