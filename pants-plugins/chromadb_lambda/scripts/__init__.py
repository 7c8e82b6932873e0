"""Plugin modules that processes run as scripts: `registry_client.py` (with its sibling registry_*.py
and deploy_manifest.py), `engine_lock.py` (Pants' own interpreter), `source_scan.py` (the Lambda's interpreter), `import_check_script.py` (the image's),
`run_lambda_script.py` (Pants' interpreter, for `pants run`) and `runtime_api.py` (the image's)."""
from __future__ import annotations

import pkgutil


def script_source(filename: str) -> bytes:
    """The text of the plugin module `filename`, read as package data: found the same way whether the
    plugin loads from `pants-plugins/` or from its wheel."""
    source = pkgutil.get_data(__package__, filename)
    assert source is not None, filename
    return source
