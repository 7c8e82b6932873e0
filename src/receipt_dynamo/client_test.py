import boto3
from moto import mock_aws

from receipt_dynamo import DynamoClient, EmbeddingBatch, ReceiptWord, create_table
from receipt_dynamo.queries import pending_batches, unembedded_words


@mock_aws
def test_unembedded_words_and_pending_batches_round_trip() -> None:
    resource = boto3.resource("dynamodb", region_name="us-east-1")
    create_table("receipts", resource)
    client = DynamoClient("receipts", resource)
    words = [
        ReceiptWord("img", 1, 1, 2, "TOTAL"),
        ReceiptWord("img", 1, 1, 1, "MILK", embedding_status="SUCCESS"),
        ReceiptWord("img", 1, 2, 1, "4.99"),
    ]
    assert client.put_words(words) == 3
    client.put_batch(EmbeddingBatch("b1", "word", "PENDING", "batches/b1.jsonl"))
    client.put_batch(EmbeddingBatch("b2", "line", "PENDING", "batches/b2.jsonl"))
    client.set_batch_status("b2", "COMPLETED")

    assert [w.text for w in unembedded_words(client)] == ["TOTAL", "4.99"]
    assert [b.batch_id for b in pending_batches(client)] == ["b1"]
    assert pending_batches(client, kind="line") == []
