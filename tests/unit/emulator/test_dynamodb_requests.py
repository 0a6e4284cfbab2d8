"""The emulator's DynamoDB answers concurrent writers of one item as DynamoDB does: each request whole."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from moto import mock_aws

from diskport_emulator.services.dynamodb_writes import serialize_dynamodb_writes

WRITERS = 8
RENEWALS = 50


@mock_aws
def test_workers_renewing_their_own_map_entries_of_one_item_all_land() -> None:
    # Given one job item whose map holds an entry per convert worker, as the leases do
    serialize_dynamodb_writes()
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="jobs", Item={"job_id": {"S": "j"}, "writers": {"M": {}}})
    failures: list[BaseException] = []

    def renew(worker: int) -> None:
        try:
            for renewal in range(RENEWALS):
                # Each answer serializes the whole item, the other workers' entries included
                dynamodb.update_item(
                    TableName="jobs",
                    Key={"job_id": {"S": "j"}},
                    UpdateExpression="SET writers.#w = :lease",
                    ExpressionAttributeNames={"#w": f"w{worker}-{renewal % 20}"},
                    ExpressionAttributeValues={":lease": {"M": {"rate": {"N": str(renewal)}}}},
                    ReturnValues="ALL_NEW",
                )
                dynamodb.get_item(TableName="jobs", Key={"job_id": {"S": "j"}})
        except BaseException as error:  # any failure of a request is what the test looks for
            failures.append(error)

    # When the workers renew at the same time
    threads = [threading.Thread(target=renew, args=(worker,)) for worker in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every request was answered, and every worker's entries are on the item
    assert failures == []
    item: dict[str, Any] = dynamodb.get_item(TableName="jobs", Key={"job_id": {"S": "j"}})["Item"]
    assert len(item["writers"]["M"]) == WRITERS * 20
