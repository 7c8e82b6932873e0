"""The plugin's Lambda Runtime API server (pants-plugins/chromadb_lambda/scripts/runtime_api.py), which
`pants run` serves inside a Lambda's container, loaded from its file: the tests run on Python 3.11 in
the default resolve and cannot depend on the plugin's targets (Pants' Python 3.9, its own resolve)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).absolute().parents[2] / "pants-plugins" / "chromadb_lambda" / "scripts" / "runtime_api.py"
_spec = importlib.util.spec_from_file_location("chromadb_lambda_runtime_api", _PATH)
assert _spec and _spec.loader, _PATH
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module
_spec.loader.exec_module(_module)

RuntimeApi = _module.RuntimeApi
PREFIX = _module.PREFIX
RESULT_MARKER = _module.RESULT_MARKER

__all__ = ["PREFIX", "RESULT_MARKER", "RuntimeApi"]
