"""A thin DynamoDB client for the receipt table (one table, PK/SK, a TYPE attribute)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import boto3
from boto3.dynamodb.conditions import Attr

from .entities import EmbeddingBatch, ReceiptLine, ReceiptWord, batch_from_item, word_from_item


class DynamoClient:
    def __init__(self, table_name: str, resource: Any = None) -> None:
        self._table = (resource or boto3.resource("dynamodb")).Table(table_name)

    def put_words(self, words: Iterable[ReceiptWord | ReceiptLine]) -> int:
        count = 0
        with self._table.batch_writer() as writer:
            for word in words:
                writer.put_item(Item=word.to_item())
                count += 1
        return count

    def put_batch(self, batch: EmbeddingBatch) -> None:
        self._table.put_item(Item=batch.to_item())

    def set_batch_status(self, batch_id: str, status: str) -> None:
        self._table.update_item(
            Key={"PK": f"BATCH#{batch_id}", "SK": "BATCH"},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": status},
        )

    def scan(self, type_: str, **conditions: str) -> Iterator[dict[str, Any]]:
        expr = Attr("TYPE").eq(type_)
        for name, value in conditions.items():
            expr = expr & Attr(name).eq(value)
        kwargs: dict[str, Any] = {"FilterExpression": expr}
        while True:
            page = self._table.scan(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def words(self, **conditions: str) -> list[ReceiptWord]:
        return sorted((word_from_item(i) for i in self.scan("WORD", **conditions)), key=lambda w: w.key)

    def batches(self, **conditions: str) -> list[EmbeddingBatch]:
        return sorted((batch_from_item(i) for i in self.scan("BATCH", **conditions)), key=lambda b: b.batch_id)


def create_table(table_name: str, resource: Any = None) -> None:
    """Creates the receipt table (tests and local setups; production uses IaC)."""
    (resource or boto3.resource("dynamodb")).create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
