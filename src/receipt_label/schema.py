"""The label vocabulary, shipped as a resource (`label_schema.json`) beside this module."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def label_schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("label_schema.json").read_text())


def normalize_label(label: str | None) -> str:
    schema = label_schema()
    value = (label or "").strip().upper().replace(" ", "_")
    return value if value in schema["labels"] else schema["default"]
