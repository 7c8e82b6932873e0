"""Each e2e module leaves the engine as it found it: the images it tagged under its own `REPOSITORY`
(`chromadb-lambda-<topic>-<random>`, as local refs or pulled from a test registry) are removed after
its last test. Without this, every test run left ~400 tags (and their images) in the engine, which
slows every tag and load of the runs after it (the engine rewrites its whole tag store on each)."""
from __future__ import annotations

from typing import Iterator

import pytest

from e2e.harness import remove_repository_images


@pytest.fixture(autouse=True, scope="module")
def remove_module_images(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    repository = getattr(request.module, "REPOSITORY", None)
    if isinstance(repository, str) and repository:
        remove_repository_images(repository)
