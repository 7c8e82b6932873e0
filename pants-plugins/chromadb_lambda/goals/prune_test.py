from __future__ import annotations

from chromadb_lambda.goals.prune import PrunePlan, StaleImage, parse_tag_times, plan_lines, provers_of, prune_plan, stale_images

OLD = "sha256:" + "1" * 64
OLDER = "sha256:" + "2" * 64
NEW = "sha256:" + "3" * 64
BASE_OLD = "sha256:" + "4" * 64
BASE_NEW = "sha256:" + "5" * 64
OTHER = "sha256:" + "6" * 64

ENGINE = {
    "r/word_polling:latest": NEW,
    "r/word_polling:ck-new": NEW,
    "r/word_polling:ck-old": OLD,
    "r/word_polling:ck-older": OLDER,
    "r/word_polling:hand-made": OLDER,
    "chromadb-lambda/base:ck-bnew": BASE_NEW,
    "chromadb-lambda/base:ck-bold": BASE_OLD,
    "chromadb-lambda/base:0a1b2c": BASE_OLD,
    # Another repository: never touched.
    "r/other:ck-stale": OTHER,
    # Same prefix, other repository.
    "r/word_polling2:ck-x": OTHER,
}
CURRENT = ("r/word_polling:ck-new", "chromadb-lambda/base:ck-bnew", "r/absent:ck-zzz")


def test_stale_images_are_those_a_stale_key_names_with_every_tag_of_their_repository() -> None:
    assert stale_images(["r/word_polling", "chromadb-lambda/base"], ENGINE, CURRENT) == (
        StaleImage("chromadb-lambda/base", BASE_OLD, ("chromadb-lambda/base:0a1b2c", "chromadb-lambda/base:ck-bold")),
        StaleImage("r/word_polling", OLD, ("r/word_polling:ck-old",)),
        StaleImage("r/word_polling", OLDER, ("r/word_polling:ck-older", "r/word_polling:hand-made")),
    )


def test_a_stale_key_on_the_current_image_is_left_alone() -> None:
    engine = {"r/a:ck-new": NEW, "r/a:ck-old": NEW}
    assert stale_images(["r/a"], engine, ["r/a:ck-new"]) == ()


def test_an_image_without_a_key_tag_is_not_stale() -> None:
    assert stale_images(["r/a"], {"r/a:latest": OLD, "r/a:v1": OLDER}, []) == ()


def test_keep_keeps_the_most_recently_tagged_per_repository() -> None:
    stale = stale_images(["r/word_polling", "chromadb-lambda/base"], ENGINE, CURRENT)
    times = {OLD: "2026-11-30T02:00:00Z", OLDER: "2026-11-29T02:00:00Z", BASE_OLD: "2026-11-28T00:00:00Z"}
    plan = prune_plan(stale, times, keep=1)
    assert [i.image_id for i in plan.kept] == [BASE_OLD, OLD]
    assert [i.image_id for i in plan.remove] == [OLDER]
    assert [i.image_id for i in prune_plan(stale, times, keep=0).remove] == [BASE_OLD, OLD, OLDER]
    assert prune_plan(stale, times, keep=5).remove == ()


def test_tag_times_fall_back_to_creation_for_an_image_never_tagged_here() -> None:
    out = (
        f'["{OLD}", "2026-11-30T01:02:03.5Z", "1970-01-01T00:00:00Z"]\n'
        f'["{OLDER}", "0001-01-01T00:00:00Z", "2026-11-01T00:00:00Z"]\n'
    )
    assert parse_tag_times(out) == {OLD: "2026-11-30T01:02:03.5Z", OLDER: "2026-11-01T00:00:00Z"}


def test_plan_lines() -> None:
    plan = PrunePlan(
        remove=(StaleImage("r/a", OLD, ("r/a:ck-old", "r/a:v1")),),
        kept=(StaleImage("r/a", OLDER, ("r/a:ck-older",)),),
    )
    assert plan_lines(plan, dry_run=True, keep=1) == [
        f"Would remove r/a:ck-old (image {OLD[:19]})",
        f"Would remove r/a:v1 (image {OLD[:19]})",
        f"Keeping r/a:ck-older (image {OLDER[:19]}): one of the 1 most recently tagged unused images of its "
        "repository (`--lambda-prune-keep`)",
    ]
    assert plan_lines(plan, dry_run=False, keep=1)[0] == f"Removing r/a:ck-old (image {OLD[:19]})"


def test_provers_of_the_images_to_remove() -> None:
    output = (
        "c1 sha256:old-base\n"
        "c2 sha256:current-base\n"
        "c3 sha256:old-base\n"
        "c4\n"
    )
    assert provers_of(output, ["sha256:old-base", "sha256:lambda"]) == ["c1", "c3"]
    assert provers_of(output, []) == []
