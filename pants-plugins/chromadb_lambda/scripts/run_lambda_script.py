"""What `pants run <chromadb_lambda>` runs on the host, on Pants' own Python (3.9), standard library
only: `run_lambda_script.py SPEC_JSON [--event ...] [--env ...] [--endpoint-url ...] [--timeout ...]`.

It starts the image with `runtime_api.py` (beside this file in the run's chroot) as the container's
process: that server serves the event on the container's own loopback, starts the image's own
entrypoint + command with `AWS_LAMBDA_RUNTIME_API` set, and prints the outcome. With the default
`--network none` the function reaches nothing: no network, no credentials. `--endpoint-url` (a local
moto server, say) gives it the host's network. Environment values are copied from the caller by name
(`--env AWS_ACCESS_KEY_ID`): the docker CLI inherits them and gets only `-e NAME`, so a secret is never
on a command line. stdout: the handler's JSON response. stderr: the function's logs, the duration, the
error. Exit code: 0 answered, 1 the handler raised (or the runtime exited without answering),
2 bad arguments, 124 timed out, 125 the container could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

RESULT_MARKER = "CHROMADB_LAMBDA_RESULT"
RUNTIME_API_FILE = "runtime_api.py"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_DOCKER = 125
# Seconds the host waits beyond the function's timeout for the container to report and stop.
GRACE = 60
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UsageError(Exception):
    """A `pants run` argument that cannot be used (exit code 2)."""


@dataclass(frozen=True)
class RunOptions:
    event: Any
    # (name, value or None): None copies the caller's value by name.
    env: tuple[tuple[str, str | None], ...]
    endpoint_url: str | None
    network: str
    timeout: float


def parse_event(value: str | None) -> Any:
    """`--event`: JSON text, or the path of a JSON file (relative to the build root); `{}` if absent."""
    if value is None:
        return {}
    text = value
    if not value.lstrip().startswith(("{", "[", '"')) and os.path.isfile(value):
        with open(value) as f:
            text = f.read()
    try:
        return json.loads(text)
    except ValueError as e:
        where = f"the file {value}" if text is not value else repr(value)
        raise UsageError(f"`--event` must be JSON or the path of a JSON file, but {where} is not JSON: {e}") from e


def parse_env(values: Sequence[str]) -> tuple[tuple[str, str | None], ...]:
    """`--env NAME` (the caller's value, copied by name) or `--env NAME=VALUE` (not for secrets)."""
    parsed = []
    for value in values:
        name, sep, given = value.partition("=")
        if not _ENV_NAME.match(name):
            raise UsageError(f"`--env {value}`: {name!r} is not an environment variable name.")
        parsed.append((name, given if sep else None))
    return tuple(parsed)


def parse_args(argv: Sequence[str], default_timeout: float) -> RunOptions:
    parser = argparse.ArgumentParser(prog="pants run <chromadb_lambda> --", add_help=True)
    parser.add_argument("--event", help="the event: JSON text or a JSON file's path (default: {})")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set a variable in the function: NAME copies the caller's value (use this for secrets)",
    )
    parser.add_argument("--endpoint-url", help="AWS_ENDPOINT_URL of the function (gives it the host's network)")
    parser.add_argument("--network", choices=("none", "host"), default=None, help="the container's network")
    parser.add_argument("--timeout", type=float, default=None, help=f"seconds (default: {default_timeout:g})")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:
        if e.code in (0, None):
            raise  # --help
        # argparse printed the usage and what is wrong.
        raise UsageError("") from e
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"`--timeout` must be a positive number of seconds, but it is {args.timeout:g}.")
    if args.network == "none" and args.endpoint_url:
        raise UsageError("`--endpoint-url` needs the host's network: drop `--network none`.")
    network = args.network or ("host" if args.endpoint_url else "none")
    return RunOptions(
        event=parse_event(args.event),
        env=parse_env(args.env),
        endpoint_url=args.endpoint_url,
        network=network,
        timeout=args.timeout if args.timeout is not None else default_timeout,
    )


def container_env_args(
    options: RunOptions, caller_env: Mapping[str, str], function_name: str
) -> tuple[str, ...]:
    """The `-e` arguments: values given on the command line as `NAME=VALUE`, the caller's by name."""
    args = [
        "-e", f"AWS_LAMBDA_FUNCTION_NAME={function_name}",
        "-e", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
        "-e", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
    ]
    if options.endpoint_url:
        args += ["-e", f"AWS_ENDPOINT_URL={options.endpoint_url}"]
    missing = [name for name, value in options.env if value is None and name not in caller_env]
    if missing:
        raise UsageError(
            f"`--env {missing[0]}` copies the value of {missing[0]} from your environment, where it is not "
            f"set: export it, or give a value that is no secret as `--env {missing[0]}=VALUE`."
        )
    for name, value in options.env:
        # By name, docker reads the value from its own environment (the caller's): not in any argv.
        args += ["-e", name if value is None else f"{name}={value}"]
    return tuple(args)


def docker_run_argv(
    docker: str,
    image_id: str,
    container: str,
    options: RunOptions,
    env_args: Sequence[str],
    command: Sequence[str],
    function_name: str,
    runtime_api_source: str,
) -> tuple[str, ...]:
    # The image's python3 runs the Runtime API server as the container's process; the image's own
    # entrypoint + command (awslambdaric, or AWS's /lambda-entrypoint.sh) is its child.
    return (
        docker,
        "run",
        "--rm",
        "-i",
        "--name",
        container,
        "--pull",
        "never",
        "--network",
        options.network,
        *env_args,
        "--entrypoint",
        "python3",
        image_id,
        "-B",
        "-c",
        runtime_api_source,
        f"{options.timeout:g}",
        function_name,
        "--",
        *command,
    )


def image_command(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The image's entrypoint + command, as Lambda starts it."""
    return (*(config.get("Entrypoint") or ()), *(config.get("Cmd") or ()))


def parse_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER + " "):
            return json.loads(line[len(RESULT_MARKER) + 1 :])
    return None


def report(result: dict[str, Any] | None, timeout: float, address: str) -> tuple[int, str, list[str]]:
    """(exit code, stdout, stderr lines) for the outcome the container printed."""
    if result is None:
        return EXIT_DOCKER, "", [f"The container of {address} stopped without reporting an outcome (see above)."]
    lines = []
    duration = result.get("duration_ms")
    if duration is not None:
        lines.append(f"Duration: {duration:.1f} ms")
    if result.get("timed_out"):
        lines.append(
            f"Timed out: {address} did not answer within {timeout:g} s and was stopped "
            "(`--timeout SECONDS`, or the target's `timeout` field)."
        )
        return EXIT_TIMEOUT, "", lines
    if "error" in result:
        error = result["error"] or {}
        lines.append(f"Error: {error.get('errorType', 'Unknown')}: {error.get('errorMessage', '')}")
        trace = error.get("stackTrace") or []
        lines.extend(str(frame).rstrip("\n") for frame in (trace if isinstance(trace, list) else [trace]))
        return EXIT_ERROR, "", lines
    if "response" in result:
        return 0, json.dumps(result["response"], sort_keys=True) + "\n", lines
    lines.append(
        f"The runtime of {address} exited (code {result.get('exited')}) without answering the invocation: "
        "does the image's entrypoint run the Lambda runtime client?"
    )
    return EXIT_ERROR, "", lines


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    try:
        options = parse_args(argv[1:], float(spec["timeout"]))
        env_args = container_env_args(options, os.environ, spec["function_name"])
    except UsageError as e:
        if str(e):
            print(str(e), file=sys.stderr)
        return EXIT_USAGE
    docker = spec["docker"]
    inspected = subprocess.run(
        [docker, "image", "inspect", "--format", "{{json .Config}}", spec["image_id"]], capture_output=True, text=True
    )
    if inspected.returncode != 0:
        print(f"Cannot read the image of {spec['address']}: {inspected.stderr.strip()}", file=sys.stderr)
        return EXIT_DOCKER
    command = image_command(json.loads(inspected.stdout))
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), RUNTIME_API_FILE)) as f:
        runtime_api_source = f.read()
    container = f"chromadb-lambda-run-{uuid.uuid4().hex[:12]}"
    run_argv = docker_run_argv(
        docker, spec["image_id"], container, options, env_args, command, spec["function_name"], runtime_api_source
    )
    print(
        f"Invoking {spec['address']} ({' '.join(command)}) in image {spec['image_id'][:19]}, "
        f"network {options.network}, timeout {options.timeout:g} s",
        file=sys.stderr,
        flush=True,
    )
    # The function's logs stream to our stderr as they come; stdout carries only the outcome.
    proc = subprocess.Popen(run_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = proc.communicate(json.dumps(options.event), timeout=options.timeout + GRACE)
    except subprocess.TimeoutExpired:
        subprocess.run([docker, "rm", "-f", container], capture_output=True)
        proc.communicate()
        stdout = ""
        print(f"Timed out: the container of {spec['address']} did not stop; removed it.", file=sys.stderr)
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        subprocess.run([docker, "rm", "-f", container], capture_output=True)
        raise
    code, out, lines = report(parse_result(stdout), options.timeout, spec["address"])
    if code == EXIT_DOCKER and proc.returncode:
        lines.append(f"`docker run` exited {proc.returncode}.")
    for line in lines:
        print(line, file=sys.stderr)
    sys.stdout.write(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
