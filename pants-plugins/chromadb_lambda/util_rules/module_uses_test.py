from pants.engine.addresses import Address

from chromadb_lambda.util_rules.module_uses import DynamicImport

from chromadb_lambda.util_rules.module_uses import (
    ModuleOwners,
    ModuleUse,
    ambiguous_imports_message,
    computed_dynamic_imports,
    module_uses,
    resolve_module_uses,
    syntax_problems,
)

EXTRA = Address("src/pkg", relative_file_path="extra.py")
ALPHA = Address("src/plug", relative_file_path="alpha.py")
PYTEST = Address("3rdparty/python", target_name="reqs", generated_name="pytest")
SRC_HELPER = Address("src/coll", relative_file_path="helper.py")
LAMBDAS_HELPER = Address("lambdas/coll", relative_file_path="helper.py")

REPORT = {
    "files": [
        {"path": "src/pkg/__init__.py", "module": "pkg", "all": ["extra", "func"], "imports": [], "star_imports": [], "dynamic": []},
        {
            "path": "lambdas/fn/handler.py",
            "module": "fn.handler",
            "all": None,
            "imports": [
                {"module": "pkg", "names": [], "line": 1, "type_checking": False},
                {"module": "pytest", "names": [], "line": 4, "type_checking": True},
                {"module": "coll", "names": ["helper"], "line": 5, "type_checking": False},
            ],
            "star_imports": [{"module": "pkg", "line": 1}],
            "dynamic": [
                {"call": "importlib.import_module", "line": 7, "module": "plug.alpha", "type_checking": False},
                {"call": "__import__", "line": 8, "module": None, "type_checking": False},
            ],
        },
        {"path": "src/pkg/bad.py", "module": "pkg.bad", "error": {"line": 3, "offset": 7, "msg": "invalid syntax"}},
    ]
}


def test_module_uses_follow_all_of_star_imported_packages() -> None:
    assert module_uses(REPORT) == (
        ModuleUse("pkg", "lambdas/fn/handler.py", 1, "import"),
        ModuleUse("pytest", "lambdas/fn/handler.py", 4, "import", True),
        ModuleUse("coll.helper", "lambdas/fn/handler.py", 5, "import"),
        ModuleUse("pkg.extra", "lambdas/fn/handler.py", 1, "star"),
        ModuleUse("pkg.func", "lambdas/fn/handler.py", 1, "star"),
        ModuleUse("plug.alpha", "lambdas/fn/handler.py", 7, "dynamic"),
    )
    assert computed_dynamic_imports(REPORT) == (DynamicImport("lambdas/fn/handler.py", 8, "__import__"),)
    assert [str(p) for p in syntax_problems(REPORT)] == ["src/pkg/bad.py:3: invalid syntax"]


def test_resolution() -> None:
    pkg_init = Address("src/pkg", relative_file_path="__init__.py")
    owners = {
        "pkg": ModuleOwners((pkg_init,)),
        "pkg.extra": ModuleOwners((EXTRA,)),
        # `func` is a name in pkg/__init__.py: Pants' lookup falls back to the package's owner.
        "pkg.func": ModuleOwners((pkg_init,)),
        "plug.alpha": ModuleOwners((ALPHA,)),
        "pytest": ModuleOwners((PYTEST,)),
        "coll.helper": ModuleOwners((), (SRC_HELPER, LAMBDAS_HELPER)),
    }
    resolution = resolve_module_uses(module_uses(REPORT), owners, frozenset({pkg_init}))
    assert set(resolution.extra) == {EXTRA, ALPHA}
    assert resolution.extra[ALPHA].describe() == "lambdas/fn/handler.py:7 loads by name `plug.alpha`"
    assert resolution.type_checking_only == frozenset({PYTEST})
    assert [(u.module, o) for u, o in resolution.ambiguous] == [("coll.helper", (SRC_HELPER, LAMBDAS_HELPER))]
    message = ambiguous_imports_message(Address("lambdas/fn", target_name="fn"), resolution.ambiguous)
    assert "lambdas/fn/handler.py:5 imports `coll.helper`, provided by lambdas/coll/helper.py and src/coll/helper.py" in message
    assert '`dependencies=["lambdas/coll/helper.py"]`' in message and '`dependencies=["!src/coll/helper.py"]`' in message


def test_an_owner_in_the_closure_settles_ambiguity_and_imports_are_not_added() -> None:
    owners = {"coll.helper": ModuleOwners((), (SRC_HELPER, LAMBDAS_HELPER)), "pkg.extra": ModuleOwners((EXTRA,))}
    uses = (ModuleUse("coll.helper", "h.py", 1, "import"), ModuleUse("pkg.extra", "h.py", 2, "import"))
    resolution = resolve_module_uses(uses, owners, frozenset({SRC_HELPER}))
    assert resolution.ambiguous == () and dict(resolution.extra) == {}
    assert resolution.needed == frozenset({EXTRA})
