"""One Lambda made both ways, side by side in one run, on the engine of DOCKER_HOST: the assembler
(CPU of layer + config + archive in Python, wall of `docker load`) against `docker build` of the
generated Dockerfile (wall), each round with a new edit of the handler (a changed Lambda).

    python3 benchmarks/assembler_vs_build.py [--lambda word_polling] [--rounds 7]

Needs `./pants package lambdas/<name>:<name>` first (it reads dist/'s context and docker-info).
Run it with Pants' own interpreter (the plugin's modules import `pants`), e.g. the one the `./pants`
wrapper installed: `~/.cache/chromadb-lambda/pants-*/bin/python3.9 benchmarks/assembler_vs_build.py`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pants-plugins"))

from pants.engine.addresses import Address  # noqa: E402

from chromadb_lambda.util_rules.assemble import AssembledMember, chunk_archive  # noqa: E402
from chromadb_lambda.util_rules.context import generate_dockerfile  # noqa: E402
from chromadb_lambda.util_rules.image_config import INSPECT_FORMAT, lambda_image_config  # noqa: E402
from chromadb_lambda.util_rules.image_layer import LayerFile, lambda_layer, sha256_digest  # noqa: E402

SOURCE_ROOTS = ("lambdas", "src")
TASK_ROOT = "/var/task"


def closure_files(name: str) -> tuple[dict, list[tuple[str, bytes]]]:
    info = json.loads(next((ROOT / "dist").glob(f"**/{name}.docker-info.json")).read_text())
    context = json.loads(next((ROOT / "dist").glob(f"**/{name}.context.json")).read_text())
    files = []
    for entry in context["files"]:
        path = next(ROOT / r / entry["path"] for r in SOURCE_ROOTS if (ROOT / r / entry["path"]).is_file())
        files.append((entry["path"], path.read_bytes()))
    return info, files


def run(argv: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lambda", dest="name", default="word_polling")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    docker = shutil.which("docker", path="/usr/bin") or "docker"
    info, files = closure_files(args.name)
    handler_path = info["handler"].rsplit(".", 1)[0].replace(".", "/") + ".py"
    base_ref = info["base_image"]["ref"]
    repository = f"asm-bench-{uuid.uuid4().hex[:8]}/{args.name}"
    start = time.perf_counter()
    inspect = subprocess.run([docker, "image", "inspect", "--format", INSPECT_FORMAT, base_ref],
                             check=True, capture_output=True, text=True).stdout
    inspect_s = time.perf_counter() - start
    cpu, load, build = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            edit = f"\n# benchmark edit {uuid.uuid4().hex}\n".encode()
            edited = [(p, c + edit if p == handler_path else c) for p, c in files]
            # The assembler, as assemble.py runs it (its inputs already in memory).
            t0 = time.process_time()
            layer = lambda_layer([LayerFile(p, c) for p, c in edited], TASK_ROOT)
            config = lambda_image_config(json.loads(inspect), layer.diff_id, TASK_ROOT, info["handler"])
            member = AssembledMember(
                address=Address(f"lambdas/{args.name}", target_name=args.name), key_ref=f"{repository}:a{round_}",
                refs=(f"{repository}:a{round_}",), base_image_id=info["base_image"]["ref"], task_root=TASK_ROOT,
                module=handler_path, function="", config=config, layer=layer, image_id=sha256_digest(config),
            )
            archive = chunk_archive([member])
            cpu.append(time.process_time() - t0)
            archive_path = os.path.join(tmp, f"a{round_}.tar")
            Path(archive_path).write_bytes(archive)
            # docker build of the generated Dockerfile, as the docker-build builder runs it.
            context = Path(tmp) / f"ctx{round_}"
            for p, c in edited:
                (context / "app" / p).parent.mkdir(parents=True, exist_ok=True)
                (context / "app" / p).write_bytes(c)
            (context / "Dockerfile").write_text(generate_dockerfile(base_ref, TASK_ROOT, info["handler"], True))
            build_argv = [docker, "build", "--iidfile", str(context / "iid"), "--tag", f"{repository}:b{round_}", str(context)]
            load_argv = [docker, "load", "--input", archive_path]
            env = {**os.environ, "DOCKER_BUILDKIT": "1"}
            # Alternate which goes first, so neither always runs on a warmer engine.
            if round_ % 2:
                build.append(run(build_argv, env=env))
                load.append(run(load_argv))
            else:
                load.append(run(load_argv))
                build.append(run(build_argv, env=env))
        tags = [f"{repository}:{kind}{r}" for r in range(args.rounds) for kind in "ab"]
        subprocess.run([docker, "image", "rm", *tags], check=False, capture_output=True)
    ms = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    result = {
        "lambda": args.name,
        "files": len(files),
        "bytes": sum(len(c) for _, c in files),
        "rounds": args.rounds,
        "base_inspect_ms": round(1000 * inspect_s, 1),
        "assemble_cpu_ms_median": ms(cpu),
        "assemble_cpu_ms_max": round(1000 * max(cpu), 1),
        "docker_load_wall_ms_median": ms(load),
        "assembled_total_ms_median": ms([c + l for c, l in zip(cpu, load)]),
        "docker_build_wall_ms_median": ms(build),
        "docker_build_wall_ms_all": [round(1000 * b, 1) for b in build],
        "docker_load_wall_ms_all": [round(1000 * x, 1) for x in load],
    }
    result["build_over_assembled"] = round(result["docker_build_wall_ms_median"] / result["assembled_total_ms_median"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
