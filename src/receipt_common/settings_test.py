import logging

from receipt_common import Settings, get_logger, json_log


def test_settings_from_env_overrides_defaults() -> None:
    settings = Settings.from_env({"RECEIPT_TABLE": "t", "CHROMA_ROOT": "/x"})
    assert settings == Settings(table_name="t", bucket="receipt-embeddings", chroma_root="/x")


def test_json_log_is_one_sorted_json_line(caplog) -> None:
    logger = get_logger("receipt-test")
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="receipt-test"):
        json_log(logger, "done", b=2, a=1)
    assert caplog.records[-1].getMessage() == '{"a": 1, "b": 2, "event": "done"}'
