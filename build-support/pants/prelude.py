# Symbols every BUILD file can use (`[GLOBAL].build_file_prelude_globs` in pants.toml).

# What a test that runs Pants itself (RuleRunner or a real `./pants`) needs from the caller's
# environment: the interpreters and the machine-specific options the `./pants` wrapper exports
# (the locally built pex tool, the CA bundle). One list, used by the BUILD files of such tests.
PANTS_BOOTSTRAP_ENV = (
    "HOME",
    "PATH",
    "PYENV_ROOT",
    "PANTS_PEX_CLI_VERSION",
    "PANTS_PEX_CLI_KNOWN_VERSIONS",
    "PANTS_PEX_CLI_URL_TEMPLATE",
    "PANTS_CA_CERTS_PATH",
)

# What a copy of this repo needs to bootstrap Pants and package every Lambda (a trailing `/` marks a
# folder, copied whole): the root `files` target globs it, the end-to-end tests' scratch repos
# (tests/e2e/harness.py) and the benchmark's repos (benchmarks/bench.py) copy it. One list.
REPO_COPY_ENTRIES = (
    "pants",
    "pants.toml",
    "pants.ci.toml",
    "BUILD",
    "build-support/",
    "3rdparty/",
    "base/",
    "lambdas/",
    "src/",
    "pants-plugins/",
)
