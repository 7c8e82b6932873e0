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
