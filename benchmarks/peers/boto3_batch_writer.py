"""The bulk load a user would write for DynamoDB: boto3's own ``Table.batch_writer()`` over
the seed's CSV (``twotier bench load`` runs it beside ``twotier load``, on the same file).

    python boto3_batch_writer.py FILE TABLE ENDPOINT_URL REGION

It writes the items twotier writes (the fields, the version, the xp index attribute), and
prints one JSON line: the rows written and the seconds taken (from the first write to the
last, the client made before).
"""

from __future__ import annotations

import csv
import json
import sys
import time

import boto3


def main(path: str, table_name: str, endpoint_url: str, region: str) -> None:
    resource = boto3.resource("dynamodb", endpoint_url=endpoint_url or None, region_name=region)
    table = resource.Table(table_name)
    version = time.time_ns() // 1000
    written = 0
    started = time.perf_counter()
    with (
        open(path, newline="", encoding="utf-8") as file,
        table.batch_writer(overwrite_by_pkeys=["id"]) as writer,
    ):
        for row in csv.DictReader(file):
            writer.put_item(
                Item={
                    "id": int(row["id"]),
                    "name": row["name"],
                    "hero": row["hero"],
                    "power": row["power"],
                    "xp": int(row["xp"]),
                    "color": row["color"],
                    "version": version,
                    "_by_xp": "=" + row["xp"],
                }
            )
            written += 1
    print(json.dumps({"rows": written, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
