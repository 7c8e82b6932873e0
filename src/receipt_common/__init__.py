"""Settings and logging shared by every Lambda; baked into the base image."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

__all__ = ["Settings", "get_logger", "json_log"]


@dataclass(frozen=True)
class Settings:
    """Names of the AWS resources a Lambda works on, read from its environment."""

    table_name: str
    bucket: str
    chroma_root: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            table_name=env.get("RECEIPT_TABLE", "receipts"),
            bucket=env.get("RECEIPT_BUCKET", "receipt-embeddings"),
            chroma_root=env.get("CHROMA_ROOT", "/tmp/chroma"),
        )


def get_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    return logger


def json_log(logger: logging.Logger, event: str, **fields: object) -> None:
    """Logs one structured line, the shape CloudWatch Logs Insights queries expect."""
    logger.info(json.dumps({"event": event, **fields}, sort_keys=True, default=str))
