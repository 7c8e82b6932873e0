import json

import pytest

from receipt_dynamo import ReceiptWord
from receipt_label.batch import batch_request_lines, parse_batch_result
from receipt_label.records import parse_key, word_record
from receipt_label.schema import normalize_label


def test_normalize_label_uses_the_packaged_schema() -> None:
    assert normalize_label("grand total") == "GRAND_TOTAL"
    assert normalize_label("not-a-label") == "OTHER"
    assert normalize_label(None) == "OTHER"


def test_word_record_key_round_trips() -> None:
    record = word_record(ReceiptWord("img", 3, 2, 7, "MILK"), label="product name")
    assert record.metadata["label"] == "PRODUCT_NAME"
    assert parse_key(record.id) == {"image_id": "img", "receipt_id": 3, "line_id": 2, "word_id": 7}


def test_batch_request_and_result_formats() -> None:
    record = word_record(ReceiptWord("img", 1, 1, 1, "MILK"))
    request = json.loads(batch_request_lines([record]))
    assert request["custom_id"] == record.id and request["body"]["input"] == "MILK"
    result = "\n".join(
        [
            json.dumps({"custom_id": "a", "response": {"body": {"data": [{"embedding": [1, 2]}]}}}),
            json.dumps({"custom_id": "b", "error": {"message": "rate limited"}}),
        ]
    )
    assert parse_batch_result(result) == {"a": [1.0, 2.0]}
    with pytest.raises(ValueError, match="line 1"):
        parse_batch_result(json.dumps({"custom_id": "c", "response": {}}))
