"""Deterministic batch ids: the same words always make the same batch."""
from __future__ import annotations

import hashlib
from typing import Iterable


def batch_id_for(keys: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return f"batch-{digest[:16]}"
