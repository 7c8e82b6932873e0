"""The fixes of pants_compat, against Pants' own types and a real engine (RuleRunner)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pants.build_graph.address import Address
from pants.core.goals.package import Package
from pants.core.goals.publish import Publish
from pants.core.target_types import GenericTarget
from pants.engine.addresses import Addresses
from pants.engine.collection import Collection
from pants.engine.env_vars import CompleteEnvironmentVars
from pants.engine.fs import CreateDigest, FileContent
from pants.engine.goal import CurrentExecutingGoals
from pants.engine.internals.session import SessionValues
from pants.engine.rules import rule
from pants.engine.target import DescriptionField, Targets
from pants.init.options_initializer import OptionsInitializer
from pants.option.options_bootstrapper import OptionsBootstrapper
from pants.testutil.rule_runner import QueryRule, RuleRunner

from chromadb_lambda import register
from chromadb_lambda.pants_compat import (
    build_config_inputs,
    collection_hash_is_constant,
    compare_sessions_by_their_inputs,
    fix_collection_hash,
    reuse_build_configuration,
    sessions_of_equal_inputs_differ,
)


def test_this_pants_has_the_bug_until_the_backend_loads() -> None:
    # A fresh interpreter: nothing has loaded the backend (whose rules() applies the fix) yet.
    probe = (
        "from pants.engine.fs import CreateDigest, FileContent\n"
        "print(hash(CreateDigest([FileContent('a', b'1')])) == hash(CreateDigest([FileContent('b', b'2')])))\n"
        f"from {register.__name__} import rules\n"
        "rules()\n"
        "print(hash(CreateDigest([FileContent('a', b'1')])) == hash(CreateDigest([FileContent('b', b'2')])))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["True", "False"], result.stderr


def test_this_pants_finds_runs_of_equal_inputs_unequal_until_the_backend_loads(tmp_path: Path) -> None:
    (tmp_path / "BUILDROOT").touch()
    probe = (
        "from pants.option.options_bootstrapper import OptionsBootstrapper\n"
        "from pants.engine.internals.session import SessionValues\n"
        "def session(start):\n"
        "    env = {'HOME': '/h', 'PANTSD_RUNTRACKER_CLIENT_START_TIME': start}\n"
        "    args = ['pants', '--pants-config-files=[]', 'package', 'lambdas::']\n"
        "    return SessionValues({OptionsBootstrapper: OptionsBootstrapper.create(env=env, args=args, allow_pantsrc=False)})\n"
        "print(session('1.0') == session('1.0'))\n"
        f"from {register.__name__} import rules\n"
        "rules()\n"
        "print(session('1.0') == session('2.0'))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path)
    # Even the same inputs to the same second: the options' Config compares by identity.
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_a_run_of_equal_inputs_loads_no_backend_again(tmp_path: Path) -> None:
    # What pantsd does at the start of each run (PantsDaemonCore.prepare), in a fresh interpreter,
    # counting the loads of backends, before and after this backend's rules() applied the fix.
    (tmp_path / "BUILDROOT").touch()
    probe = (
        "import pants.init.options_initializer as oi\n"
        "from pants.engine.env_vars import CompleteEnvironmentVars\n"
        "from pants.engine.internals.native_engine import PyExecutor\n"
        "from pants.option.options_bootstrapper import OptionsBootstrapper\n"
        "loads = []\n"
        "load = oi.load_backends_and_plugins\n"
        "oi.load_backends_and_plugins = lambda *a: loads.append(a[2]) or load(*a)\n"
        "def run(*backends):\n"
        "    env = {'HOME': '/h', 'PANTSD_RUNTRACKER_CLIENT_START_TIME': str(len(loads))}\n"
        "    args = ['pants', '--pants-config-files=[]', f'--backend-packages={list(backends)}', 'package', '::']\n"
        "    ob = OptionsBootstrapper.create(env=env, args=args, allow_pantsrc=False)\n"
        "    return initializer.build_config(ob, CompleteEnvironmentVars(env))\n"
        "first = OptionsBootstrapper.create(env={}, args=['pants', '--pants-config-files=[]'], allow_pantsrc=False)\n"
        "initializer = oi.OptionsInitializer(first, PyExecutor(core_threads=2, max_threads=4))\n"
        "a, b = run('pants.backend.python'), run('pants.backend.python')\n"
        "print(len(loads), a is b)\n"
        f"from {register.__name__} import rules\n"
        "rules()\n"
        "c, d = run('pants.backend.python'), run('pants.backend.python')\n"
        "print(len(loads), c is d, {t.alias for t in d.target_types} == {t.alias for t in a.target_types})\n"
        "e = run('pants.backend.python', 'pants.backend.shell')\n"
        "f = run('pants.backend.python')\n"
        "print(len(loads), e is not d, f is not d, 'shell_source' in {t.alias for t in e.target_types})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path)
    lines = [line.split() for line in result.stdout.splitlines()]
    # Before: every run loads the backends again. After: the first run of new inputs loads them, the
    # next run of equal inputs gets that configuration; other backends load theirs.
    assert lines == [["2", "False"], ["3", "True", "True"], ["5", "True", "True", "True"]], result.stderr


def test_the_build_configuration_is_wrapped_once() -> None:
    reuse_build_configuration()
    wrapped = OptionsInitializer.build_config
    assert reuse_build_configuration() is False
    assert OptionsInitializer.build_config is wrapped


def test_build_config_inputs_are_the_backends_and_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BUILDROOT").touch()

    def inputs(*args: str) -> object:
        bootstrapper = OptionsBootstrapper.create(env={}, args=["pants", "--pants-config-files=[]", *args], allow_pantsrc=False)
        return build_config_inputs(bootstrapper)

    assert inputs("--backend-packages=['a.b']", "--pythonpath=['p']") == (("a.b",), ("p",))
    assert inputs("--backend-packages=['a.b']", "--level=debug", "package", "::") == (("a.b",), ())
    # Another pythonpath alone is other inputs.
    assert inputs("--backend-packages=['a.b']", "--pythonpath=['q']") == (("a.b",), ("q",))
    # Plugins are resolved (from an index, by requirement): never reused.
    assert inputs("--plugins=['acme-pants-plugin==1.0']") is None


@pytest.fixture(autouse=True)
def fixed() -> None:
    fix_collection_hash()
    compare_sessions_by_their_inputs()


def test_fixed_hash_follows_the_items() -> None:
    assert not collection_hash_is_constant()
    one = CreateDigest([FileContent("dist/a.json", b"{}")])
    assert hash(one) == hash(CreateDigest([FileContent("dist/a.json", b"{}")]))
    assert hash(one) != hash(CreateDigest([FileContent("dist/a.json", b"{ }")]))
    # A subclass that inherits Collection's hash gets the fix too.
    assert hash(Addresses([Address("a")])) != hash(Addresses([Address("b")]))
    assert fix_collection_hash() is False  # already fixed: nothing to do


def test_unhashable_items_still_hash() -> None:
    # Before the fix any Collection hashed, whatever its items; it still does, and equal ones alike.
    assert hash(Collection([[1, 2]])) == hash(Collection([[1, 2]]))


def test_an_interned_collection_is_compared_with_its_equals_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine interns Get inputs in one dict for the life of pantsd: inserting one more must not
    # compare it with the thousands already there.
    interned = {CreateDigest([FileContent(f"dist/{i}.json", b"{}")]): i for i in range(2000)}
    compared = []
    original_eq = Collection.__eq__

    def counting_eq(self: Collection, other: object) -> bool:
        compared.append(other)
        return original_eq(self, other)

    monkeypatch.setattr(Collection, "__eq__", counting_eq)
    interned[CreateDigest([FileContent("dist/new.json", b"{}")])] = 2000
    assert CreateDigest([FileContent("dist/7.json", b"{}")]) in interned
    assert len(compared) <= 1


NATIVE_CLIENT = ("/home/u/.cache/pants/bin/native_client", {"PANTSD_REQUEST_TIMEOUT_LIMIT": "60"})
PYTHON_CLIENT = ("/home/u/.cache/pants/bin/pants", {"PANTSD_REQUEST_TIMEOUT_LIMIT": "60.0", "__PANTS_BIN_NAME": "pants"})


def session(
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    config: Path | None = None,
    goals: dict | None = None,
    client: tuple[str, dict[str, str]] = NATIVE_CLIENT,
) -> SessionValues:
    """A session's values as pantsd makes them for a run of `pants [args] package lambdas::`."""
    executable, client_env = client
    env = {"HOME": "/home/u", "PANTSD_RUNTRACKER_CLIENT_START_TIME": "1764560000.1", **client_env, **(env or {})}
    config_files = f"--pants-config-files=['{config}']" if config else "--pants-config-files=[]"
    bootstrapper = OptionsBootstrapper.create(
        env=env, args=[executable, config_files, *args, "package", "lambdas::"], allow_pantsrc=False
    )
    return SessionValues(
        {
            OptionsBootstrapper: bootstrapper,
            CompleteEnvironmentVars: CompleteEnvironmentVars(env),
            CurrentExecutingGoals: CurrentExecutingGoals(goals or {}),
        }
    )


def test_sessions_compare_by_what_their_rules_can_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "BUILDROOT").touch()
    monkeypatch.chdir(tmp_path)
    assert not sessions_of_equal_inputs_differ()
    toml = tmp_path / "pants.toml"
    toml.write_text('[GLOBAL]\nlevel = "info"\n')
    run = session(config=toml)
    # Another run of the same command: another client start time, and the goal running now.
    again = session(env={"PANTSD_RUNTRACKER_CLIENT_START_TIME": "1764560042.7"}, config=toml, goals={"package": Package})
    assert run == again and hash(run) == hash(again)
    assert run == session(env={"_CHROMADB_LAMBDA_NATIVE_CLIENT_START": "1764560042.700001 1234"}, config=toml)
    # The Python client started pantsd for the run before: its executable and variables differ.
    assert run == session(config=toml, client=PYTHON_CLIENT)
    # What rules can read differs: an environment variable, a flag, a config file's contents.
    assert run != session(env={"AWS_PROFILE": "prod"}, config=toml)
    assert run != session(args=("--level=debug",), config=toml)
    toml.write_text('[GLOBAL]\nlevel = "debug"\n')
    assert run != session(config=toml)
    # pants.toml may interpolate any environment variable, %(env.NAME)s: one only it sees differs too.
    assert session(env={"PANTS_X": "1"}) != session(env={"PANTS_X": "2"})


@pytest.mark.parametrize(
    "args, env, toml",
    [
        (("--docker-build-args=@args.txt",), {}, ""),
        (("--docker-build-args", "@args.txt"), {}, ""),
        ((), {"PANTS_DOCKER_BUILD_ARGS": "@args.txt"}, ""),
        ((), {}, '[docker]\nbuild_args = "@args.txt"\n'),
        ((), {}, '[docker]\nbuild_args.add = ["@args.txt"]\n'),
    ],
)
def test_options_read_from_a_file_are_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], env: dict[str, str], toml: str
) -> None:
    # Pants reads `@path` values when it parses the options, and pantsd does not watch the file.
    (tmp_path / "BUILDROOT").touch()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pants.toml").write_text(toml)
    config = tmp_path / "pants.toml"
    assert session(env=env, args=args, config=config) != session(env=env, args=args, config=config)
    # A literal leading @ (written @@) names no file.
    literal = ("--docker-build-args=@@literal",)
    assert session(args=literal) == session(args=literal)


def test_a_comparison_that_raises_finds_the_sessions_unequal() -> None:
    class Raises:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no comparing")

        __hash__ = object.__hash__

    values = {CompleteEnvironmentVars: CompleteEnvironmentVars({}), str: Raises()}
    assert SessionValues(values) != SessionValues({**values, str: Raises()})


@dataclass(frozen=True)
class SeenEnv:
    value: str | None


@dataclass(frozen=True)
class SeenGoals:
    names: tuple[str, ...]


RUNS: list[str] = []


@rule
def seen_env(values: SessionValues) -> SeenEnv:
    RUNS.append("env")
    return SeenEnv(values[CompleteEnvironmentVars].get("PROBE"))


@rule
def seen_goals(goals: CurrentExecutingGoals) -> SeenGoals:
    return SeenGoals(tuple(goals.executing))


@pytest.fixture
def rule_runner() -> RuleRunner:
    RUNS.clear()
    return RuleRunner(
        rules=[
            seen_env,
            seen_goals,
            QueryRule(SeenEnv, []),
            QueryRule(SeenGoals, []),
            QueryRule(Targets, [Addresses]),
        ],
        target_types=[GenericTarget],
    )


def test_the_engine_reuses_what_a_run_of_equal_inputs_computed(rule_runner: RuleRunner) -> None:
    start = "PANTSD_RUNTRACKER_CLIENT_START_TIME"
    rule_runner.set_options([], env={"PROBE": "a", start: "1.0"})
    assert rule_runner.request(SeenEnv, []) == SeenEnv("a")
    rule_runner.set_options([], env={"PROBE": "a", start: "2.0"})
    assert rule_runner.request(SeenEnv, []) == SeenEnv("a")
    assert RUNS == ["env"]  # the second session's values equalled the first's: not run again
    rule_runner.set_options([], env={"PROBE": "b", start: "3.0"})
    assert rule_runner.request(SeenEnv, []) == SeenEnv("b")
    rule_runner.set_options(["--level=debug"], env={"PROBE": "b", start: "4.0"})
    assert rule_runner.request(SeenEnv, []) == SeenEnv("b")
    assert RUNS == ["env", "env", "env"]


def test_rules_see_the_goals_of_their_own_run(rule_runner: RuleRunner) -> None:
    # Sessions equal but for their goals: Pants' own CurrentExecutingGoals rule runs again in each.
    rule_runner.set_session_values({CurrentExecutingGoals: CurrentExecutingGoals({"package": Package})})
    assert rule_runner.request(SeenGoals, []) == SeenGoals(("package",))
    rule_runner.set_session_values({CurrentExecutingGoals: CurrentExecutingGoals({"publish": Publish})})
    assert rule_runner.request(SeenGoals, []) == SeenGoals(("publish",))
    rule_runner.set_session_values({CurrentExecutingGoals: CurrentExecutingGoals()})
    assert rule_runner.request(SeenGoals, []) == SeenGoals(())


def test_a_build_file_reads_the_environment_of_its_run(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"src/BUILD": 'target(name="t", description=env("PROBE", "unset"))'})
    address = Addresses([Address("src", target_name="t")])

    def description(env: dict[str, str]) -> str:
        rule_runner.set_options([], env=env)
        return rule_runner.request(Targets, [address])[0][DescriptionField].value

    assert description({}) == "unset"
    assert description({"PROBE": "a", "PANTSD_RUNTRACKER_CLIENT_START_TIME": "1.0"}) == "a"
    assert description({"PROBE": "a", "PANTSD_RUNTRACKER_CLIENT_START_TIME": "2.0"}) == "a"
    assert description({"PROBE": "b", "PANTSD_RUNTRACKER_CLIENT_START_TIME": "3.0"}) == "b"
    assert description({}) == "unset"
