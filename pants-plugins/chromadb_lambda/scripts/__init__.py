"""Plugin modules that processes run as scripts, by interpreter: Pants' own (`registry_client.py` with
its sibling registry_*.py and deploy_manifest.py, `registry_push.py`, `deploy_functions.py`,
`engine_lock.py`, `chunk_load.py`, `run_lambda_script.py`), the Lambda's (`source_scan.py`) and the
image's (`import_check_script.py`, `chunk_import_check.py`, `runtime_api.py`)."""
from __future__ import annotations

import pkgutil


def script_source(filename: str) -> bytes:
    """The text of the plugin module `filename`, read as package data: found the same way whether the
    plugin loads from `pants-plugins/` or from its wheel."""
    source = pkgutil.get_data(__package__, filename)
    assert source is not None, filename
    return source
