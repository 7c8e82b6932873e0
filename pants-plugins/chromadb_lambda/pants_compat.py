"""Fixes of Pants bugs that cost this backend time, applied only where the running Pants has them.

1. Pants before 2.25 gives every `Collection` the same hash (pantsbuild/pants#18250, fixed by
pantsbuild/pants#21725): `__hash__ = Tuple.__hash__` binds the hash of `typing.Tuple` itself, not
tuple's. The engine interns every `Get` input in one dict for the life of pantsd, so each
`CreateDigest`, `Addresses`, ... interned walks every Collection interned before it, calling `__eq__`
on each: the cost of a `Get(Digest, CreateDigest(...))` grows with the number of Lambdas and with the
age of pantsd. The first no-op after a fresh build of 200 Lambdas spent about 0.5 s of its ~2 s there
(docs/benchmarks.md).

2. Pants (2.17 to today, pantsbuild/pants#21223) never finds two runs' `SessionValues` equal, so every
run parses every BUILD file and the options again, and reruns what awaits them: each run's
environment holds the client's start time (`PANTSD_RUNTRACKER_CLIENT_START_TIME`), the
`OptionsBootstrapper`'s `Config` compares by identity, and `CurrentExecutingGoals` holds the goals
running now in the new session against none in the finished one. `SessionValues` here compare by
what rules can read from them: the environment less the variables by which a client tells pantsd about
itself and its run, the options' arguments, environment and config files' contents; not the executing
goals, which rules get from Pants' own `CurrentExecutingGoals` rule, uncacheable, so it runs again in
every run anyway. A run through the Python client (the one that starts pantsd) and the next one
through the native client compare equal too. Runs whose options read a file (`@path` values) never
do: the file may have changed. A rule reading one of the client's variables (none in Pants does; pantsd
reads them before the session) would get the value of an earlier run of equal inputs.

3. pantsd (2.17 to today) loads every backend again, twice, at the start of each run: it builds the
run's `BuildConfiguration` (calling each backend's `rules()`, `target_types()`, ...) to parse its options,
in `PantsDaemonCore.prepare` and again in `LocalPantsRunner.create`, about 40 ms of every warm run on
a 2-core machine. With the bootstrap options that make it (backends, pythonpath; no `[GLOBAL].plugins`
to resolve) equal, it is equal: pantsd keeps the scheduler built from the first one for as long as
they stay so. Each run after the first of equal inputs gets that one.
"""
from __future__ import annotations

import dataclasses
import typing
from types import SimpleNamespace
from typing import Any, Mapping

from pants.engine.collection import Collection
from pants.engine.env_vars import CompleteEnvironmentVars
from pants.engine.goal import CurrentExecutingGoals
from pants.engine.internals.session import SessionValues
from pants.init.options_initializer import OptionsInitializer
from pants.option.config import Config
from pants.option.options_bootstrapper import OptionsBootstrapper
from pants.util.frozendict import FrozenDict

# What every Collection hashed to with the bug: kept for one whose items cannot be hashed, which the
# fix would otherwise turn from hashable into a TypeError.
_UNHASHABLE_ITEMS_HASH = hash(typing.Tuple)


def collection_hash_is_constant() -> bool:
    """True when this Pants hashes Collections of different items alike (pantsbuild/pants#18250)."""
    return hash(Collection((1,))) == hash(Collection((2,)))


def collection_hash(self: Collection) -> int:
    """A Collection's hash as Pants 2.25 computes it (the tuple of its items'), or, when an item cannot
    be hashed, the constant it had before (equal Collections still hash alike: their items compare
    equal, so they are unhashable alike)."""
    try:
        return tuple.__hash__(self)
    except TypeError:
        return _UNHASHABLE_ITEMS_HASH


def fix_collection_hash() -> bool:
    """Give Collection (and every subclass that inherits its hash) the fixed hash when this Pants has
    the bug; a no-op otherwise and when already fixed. True when it changed the hash."""
    if not collection_hash_is_constant():
        return False
    Collection.__hash__ = collection_hash  # type: ignore[assignment]
    return True


# Set by the client for its run, and read by pantsd before the run's session or by no rule: Pants'
# clients pass their start time to pantsd's run tracker and the lock timeout to pantsd ("60" from the
# native client, "60.0" from the Python client), the Python client alone sets the name help texts give
# Pants, and this repo's `pants` wrapper passes its own start to its fallback to the Python client
# (build-support/bootstrap/python-client.sh).
CLIENT_ENV_VARS = frozenset(
    {
        "PANTSD_RUNTRACKER_CLIENT_START_TIME",
        "PANTSD_REQUEST_TIMEOUT_LIMIT",
        "__PANTS_BIN_NAME",
        "_CHROMADB_LAMBDA_NATIVE_CLIENT_START",
    }
)


def _env_without_client_vars(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in CLIENT_ENV_VARS}


def _config_inputs(config: Config) -> tuple[tuple[str, Any, dict[str, Any]], ...]:
    """What a Config holds (each file's path, sections and seed values), with the environment it may
    interpolate (its `env` seed) less the client's variables."""
    inputs = []
    for values in config.values:
        seeds = dict(values.seed_values)
        if isinstance(seeds.get("env"), SimpleNamespace):
            seeds["env"] = _env_without_client_vars(vars(seeds["env"]))
        inputs.append((values.path, values.section_to_values, seeds))
    return tuple(inputs)


def _names_a_file(value: Any) -> bool:
    """True for an option value Pants reads from a file (`@path`, but not the literal `@@...`), at any
    depth of a config value."""
    if isinstance(value, str):
        return value.startswith("@") and not value.startswith("@@")
    if isinstance(value, dict):
        return any(_names_a_file(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_names_a_file(item) for item in value)
    return False


def options_read_files(bootstrapper: OptionsBootstrapper) -> bool:
    """True when an option's value comes from a file (`--opt=@path`, `PANTS_OPT=@path`, `opt = "@path"`
    in a config file): Pants reads the file when it parses the options, and pantsd does not watch it, so
    equal arguments do not mean equal options."""
    flags = (arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg for arg in bootstrapper.args[1:])
    env_values = (value for _, value in bootstrapper.env_tuples)
    config_values = (values.section_to_values for values in bootstrapper.config.values)
    return any(_names_a_file(value) for value in (*flags, *env_values, *config_values))


def _comparable(value: Any) -> Any:
    if isinstance(value, CompleteEnvironmentVars):
        return _env_without_client_vars(value)
    if isinstance(value, OptionsBootstrapper) and isinstance(value.config, Config) and not options_read_files(value):
        # Options parsing skips the first argument: the client's executable, which differs between
        # the native and the Python client.
        comparable = {"config": _config_inputs(value.config), "args": value.args[1:]}
        return tuple(comparable.get(field.name, getattr(value, field.name)) for field in dataclasses.fields(value))
    # Anything else compares as it does in Pants (by identity if it has no __eq__: never equal), and
    # so does an OptionsBootstrapper whose options read files (its Config compares by identity).
    return value


def session_inputs(values: SessionValues) -> dict[type, Any]:
    """What the rules of a session can read from its values, as values that compare equal between
    runs that read the same."""
    return {key: _comparable(value) for key, value in values.items() if key is not CurrentExecutingGoals}


def session_values_eq(self: SessionValues, other: Any) -> bool:
    if not isinstance(other, SessionValues):
        return FrozenDict.__eq__(self, other)
    try:
        return session_inputs(self) == session_inputs(other)
    except Exception:
        # The engine turns an exception here into a panic after it reset the node: unequal is safe.
        return False


def session_values_hash(self: SessionValues) -> int:
    return hash(frozenset(key for key in self if key is not CurrentExecutingGoals))


def sessions_of_equal_inputs_differ() -> bool:
    """True when this Pants finds two sessions unequal that differ only by their run: the client's
    start time and the goals executing."""

    def session(start: str, goals: dict) -> SessionValues:
        return SessionValues(
            {
                CompleteEnvironmentVars: CompleteEnvironmentVars({"PANTSD_RUNTRACKER_CLIENT_START_TIME": start}),
                CurrentExecutingGoals: CurrentExecutingGoals(goals),
            }
        )

    return session("1.0", {}) != session("2.0", {"package": object})


def compare_sessions_by_their_inputs() -> bool:
    """Make SessionValues compare by `session_inputs` when this Pants has the bug; a no-op otherwise,
    when already done, and when a Pants makes `CurrentExecutingGoals` cacheable (its rule would then
    keep the goals of an earlier run). True when it changed the comparison."""
    if not sessions_of_equal_inputs_differ() or CurrentExecutingGoals().cacheable():
        return False
    SessionValues.__eq__ = session_values_eq  # type: ignore[assignment]
    SessionValues.__hash__ = session_values_hash  # type: ignore[assignment]
    return True


def build_config_inputs(options_bootstrapper: OptionsBootstrapper) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """What a run's BuildConfiguration is made of: its backends and pythonpath. None when it also
    depends on plugins resolved from `[GLOBAL].plugins` (they may resolve differently)."""
    bootstrap = options_bootstrapper.get_bootstrap_options().for_global_scope()
    if bootstrap.plugins:
        return None
    return tuple(bootstrap.backend_packages), tuple(bootstrap.pythonpath)


def reuse_build_configuration() -> bool:
    """Make OptionsInitializer.build_config return the configuration it built for the same inputs
    (build_config_inputs) instead of loading every backend again; a no-op when already done. True when
    it changed the method."""
    build_config = OptionsInitializer.build_config
    if getattr(build_config, "_reuses_equal_inputs", False):
        return False
    built: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}

    def reusing_build_config(self: OptionsInitializer, options_bootstrapper: OptionsBootstrapper, env: Any) -> Any:
        inputs = build_config_inputs(options_bootstrapper)
        if inputs is None:
            return build_config(self, options_bootstrapper, env)
        if inputs not in built:
            # One configuration per distinct inputs: pantsd reinitializes when they change.
            built.clear()
            built[inputs] = build_config(self, options_bootstrapper, env)
        return built[inputs]

    reusing_build_config._reuses_equal_inputs = True  # type: ignore[attr-defined]
    OptionsInitializer.build_config = reusing_build_config  # type: ignore[assignment]
    return True
