from __future__ import annotations

from pants.engine.addresses import Address

from chromadb_lambda.util_rules.image_tag_collisions import all_image_refs, collision_message, tag_collisions

A = Address("lambdas/a", target_name="fn")
B = Address("lambdas/b", target_name="fn")
C = Address("lambdas/c", target_name="other")
# The `image_tags` field's default.
L = ("latest",)


def test_same_name_in_two_folders_collides_under_the_default_repository() -> None:
    names = all_image_refs(((A, None, L), (B, None, ("latest", "v1")), (C, None, L)), "{name}")
    assert names == {A: ("fn:latest",), B: ("fn:latest", "fn:v1"), C: ("other:latest",)}
    assert tag_collisions(names) == {(A, B): ("fn:latest",)}


def test_no_collision_with_directory_repositories_or_an_own_repository() -> None:
    assert tag_collisions(all_image_refs(((A, None, L), (B, None, L)), "{directory}")) == {}
    assert tag_collisions(all_image_refs(((A, None, L), (B, "b-fn", L)), "{name}")) == {}
    # Same repository, different tags: no ref is shared.
    assert tag_collisions(all_image_refs(((A, "fn", ("a",)), (B, "fn", ("b",))), "{name}")) == {}


def test_pants_hash_tags_never_collide_build_arg_tags_do() -> None:
    hashed = all_image_refs(((A, "fn", ("{pants.hash}",)), (B, "fn", ("{pants.hash}",))), "{name}")
    assert tag_collisions(hashed) == {}
    commit = all_image_refs(
        ((A, "fn", ("{build_args.GIT_COMMIT}",)), (B, "fn", ("{build_args.GIT_COMMIT}",))), "{name}", {"GIT_COMMIT": "c1"}
    )
    assert tag_collisions(commit) == {(A, B): ("fn:c1",)}


def test_three_targets_and_two_shared_refs_are_grouped() -> None:
    shared = {A: ("fn:latest", "fn:v1"), B: ("fn:v1", "fn:latest"), C: ("fn:latest",)}
    assert tag_collisions(shared) == {(A, B, C): ("fn:latest",), (A, B): ("fn:v1",)}


def test_a_target_with_an_invalid_repository_is_left_to_its_own_package() -> None:
    assert all_image_refs(((A, "fn..x", L), (B, None, L)), "{name}") == {B: ("fn:latest",)}


def test_message_names_both_targets_the_tag_and_the_fixes() -> None:
    assert collision_message({(A, B): ("fn:latest",)}) == (
        "Two chromadb_lambda targets would get the same image tag: the last one built would take it, "
        "and `pants publish` would push the wrong image under it.\n\n"
        "  * lambdas/a:fn and lambdas/b:fn would each be tagged `fn:latest`\n\n"
        'Give one of them its own repository, e.g. `repository="lambdas-b-{name}"` in the target '
        'lambdas/b:fn, or name every repository by its folder with `[docker].default_repository = '
        '"{directory}"` in pants.toml. Nothing was built.'
    )
