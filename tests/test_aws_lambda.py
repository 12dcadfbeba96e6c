"""The Lambda handler, driven with real event payloads, against MariaDB or DynamoDB (moto's
server) and Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from tests.conftest import database_url, drop_table, make_key, settings_for
from twotier import aws_lambda
from twotier.aws_lambda import Runtime
from twotier.config import Settings
from twotier.store.dynamo import DynamoStore


class Context:
    """The fields of a LambdaContext that handlers read."""

    function_name = "twotier"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:twotier"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    log_group_name = "/aws/lambda/twotier"
    log_stream_name = "2026/11/23/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def rest_v1(
    method: str,
    path: str,
    resource: str,
    *,
    body: bytes | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    b64: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST API (payload v1.0) proxy event, as API Gateway sends it."""
    headers = {
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "Accept": "*/*",
        "User-Agent": "curl/8.5.0",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
        **(headers or {}),
    }
    text = None if body is None else (base64.b64encode(body).decode() if b64 else body.decode())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "2gxmpl",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "JJbxmHc1IAMFfYA=",
            "requestTime": "23/Nov/2026:19:00:00 +0000",
            "path": f"/prod{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1795460400000,
            "requestId": "e0a8bd4e-0000-4000-8000-0123456789ab",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": text,
        "isBase64Encoded": b64,
    }


def http_v2(
    method: str,
    path: str,
    route: str,
    *,
    body: bytes | None = None,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    b64: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2.0) event, as API Gateway sends it."""
    headers = {
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "accept": "*/*",
        "user-agent": "curl/8.5.0",
        "x-forwarded-proto": "https",
        **(headers or {}),
    }
    text = None if body is None else (base64.b64encode(body).decode() if b64 else body.decode())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "23/Nov/2026:19:00:00 +0000",
            "timeEpoch": 1795460400000,
        },
        "isBase64Encoded": b64,
    }
    if raw_query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in raw_query.split("&"))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if text is not None:
        event["body"] = text
    return event


HERO = {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 42, "color": "blue"}
JSON_HEADERS = {"Content-Type": "application/json"}


@contextmanager
def lambda_runtime(settings: Settings) -> Iterator[Runtime]:
    """A cold start over an empty table, installed as the handler's runtime; afterwards the
    table, the cache namespace and the logging setup are as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    drop_table(settings.database_url)
    made = Runtime(settings)  # it sets up logging as in Lambda
    aws_lambda._runtime = made
    try:
        yield made
    finally:
        aws_lambda._runtime = None
        made.loop.run_until_complete(made.service.store.drop_schema())  # type: ignore[attr-defined]
        made.loop.run_until_complete(made.service.cache.clear())
        made.close()
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture(scope="module", params=["mysql", "dynamodb"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    settings = settings_for(request.param, "redis", tmp_path_factory.mktemp("lambda"))
    with lambda_runtime(settings) as made:
        made.test_key = make_key(settings.database_url, "write")  # type: ignore[attr-defined]
        yield made


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    return aws_lambda.handler(json.loads(json.dumps(event)), Context())


def header(response: dict[str, Any], name: str) -> str:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    return str(headers.get(name) or multi.get(name, [""])[0])


def body_json(response: dict[str, Any]) -> Any:
    text = response["body"]
    return json.loads(base64.b64decode(text) if response.get("isBase64Encoded") else text)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_api_gateway_crud(runtime: Runtime, version: str) -> None:
    def call(
        method: str,
        path: str,
        route: str,
        body: bytes | None = None,
        query: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        b64: bool = False,
    ) -> dict[str, Any]:
        headers = {"X-API-Key": runtime.test_key} | (headers or {})  # type: ignore[attr-defined]
        if version == "v1":
            return invoke(
                rest_v1(
                    method,
                    path,
                    route,
                    body=body,
                    query=query,
                    headers=headers,
                    path_parameters=params,
                    b64=b64,
                )
            )
        raw_query = "&".join(f"{k}={v}" for k, v in (query or {}).items())
        return invoke(
            http_v2(
                method,
                path,
                route,
                body=body,
                raw_query=raw_query,
                headers=headers,
                path_parameters=params,
                b64=b64,
            )
        )

    anonymous = invoke(rest_v1("POST", "/heroes", "/heroes", body=b"{}", headers=JSON_HEADERS))
    assert anonymous["statusCode"] == 401
    assert header(anonymous, "www-authenticate").startswith("Bearer")
    created = call(
        "POST", "/heroes", "/heroes", json.dumps(HERO).encode(), headers=JSON_HEADERS, b64=True
    )
    assert created["statusCode"] == 201
    hero_id = body_json(created)["id"]
    assert header(created, "location") == f"/heroes/{hero_id}"

    path, route, params = f"/heroes/{hero_id}", "/heroes/{hero_id}", {"hero_id": str(hero_id)}
    got = call("GET", path, route, params=params)
    assert (got["statusCode"], header(got, "x-cache")) == (200, "HIT")
    assert body_json(got) == {"id": hero_id, **HERO}
    bypass = call("GET", path, route, params=params, headers={"Cache-Control": "no-cache"})
    assert header(bypass, "x-cache") == "BYPASS"

    patched = call("PATCH", path, route, b'{"power": "logic"}', params=params, headers=JSON_HEADERS)
    assert body_json(patched)["power"] == "logic"
    listed = call("GET", "/heroes", "/heroes", query={"xp": "42", "name": str(HERO["name"])})
    assert [h["id"] for h in body_json(listed)["items"]] == [hero_id]
    assert header(listed, "x-cache") in {"MISS", "HIT"}

    invalid = call("POST", "/heroes", "/heroes", b'{"name": 1}', headers=JSON_HEADERS)
    assert invalid["statusCode"] == 422
    assert call("DELETE", path, route, params=params)["statusCode"] == 204
    missing = call("GET", path, route, params=params)
    assert (missing["statusCode"], body_json(missing)) == (
        404,
        {"detail": f"hero {hero_id} not found"},
    )


def test_seed_batch_events(runtime: Runtime) -> None:
    heroes = [HERO | {"name": f"s{i}", "xp": 1000 + i % 2} for i in range(4)]
    assert invoke({"USE_CACHE": "True", "REQUEST": "write", "SQLS": heroes}) == {
        "statusCode": 200,
        "body": "write success",
    }
    cold = invoke({"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1001, 1000]})
    assert cold["statusCode"] == 200
    assert [r["name"] for r in cold["body"]] == ["s1", "s3", "s0", "s2"]
    assert invoke({"USE_CACHE": "False", "REQUEST": "read", "SQLS": [1001, 1000]}) == cold
    assert invoke({"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1001, 1000]}) == cold
    ids = [r["id"] for r in cold["body"]]
    by_id = invoke({"USE_CACHE": "True", "REQUEST": "read", "KEY": "id", "SQLS": ids[:2]})
    assert by_id["body"] == cold["body"][:2]

    bad = invoke({"USE_CACHE": "True", "REQUEST": "write", "SQLS": [HERO, HERO | {"xp": -1}]})
    assert bad["statusCode"] == 400
    assert "SQLS.1.xp" in bad["body"]["detail"]
    assert invoke({"USE_CACHE": "False", "REQUEST": "read", "SQLS": [42]})["body"] == []
    assert invoke({"nothing": "here"})["statusCode"] == 400


def test_the_near_cache_is_off_in_lambda(runtime: Runtime) -> None:
    from twotier.cache.redis import RedisCache

    assert isinstance(runtime.service.cache.inner, RedisCache)


def test_warm_invocations_reuse_connections(runtime: Runtime) -> None:
    store: Any = runtime.service.store
    if isinstance(store, DynamoStore):
        invoke({"USE_CACHE": "False", "REQUEST": "read", "SQLS": [1000]})
        client = store.client._client  # made once per container, by the first invocation
        assert client is not None
        for _ in range(20):
            invoke({"USE_CACHE": "False", "REQUEST": "read", "SQLS": [1000]})
            invoke(http_v2("GET", "/heroes", "/heroes", raw_query="xp=1000"))
        assert store.client._client is client
        return
    engine = store.engine
    opened = {"count": 0}

    @sa_event.listens_for(engine.sync_engine, "connect")
    def count(*_args: object) -> None:
        opened["count"] += 1

    redis_pool = runtime.service.cache.inner._redis.connection_pool  # type: ignore[attr-defined]
    read = {"USE_CACHE": "False", "REQUEST": "read", "SQLS": [1000]}
    get = http_v2("GET", "/heroes", "/heroes", raw_query="xp=1000")
    for _ in range(5):
        invoke(read)
        invoke(get)
    warm_db, warm_redis = (
        opened["count"],
        len(redis_pool._available_connections) + len(redis_pool._in_use_connections),
    )
    for _ in range(50):
        invoke(read)
        invoke(get)
    assert opened["count"] == warm_db
    assert (
        len(redis_pool._available_connections) + len(redis_pool._in_use_connections) == warm_redis
    )
    sa_event.remove(engine.sync_engine, "connect", count)


def test_keys_are_managed_by_direct_invocation(runtime: Runtime) -> None:
    made = invoke({"KEYS": "create", "ROLE": "admin", "NAME": "ops"})
    assert made["statusCode"] == 201
    key, key_id = made["body"]["key"], made["body"]["id"]
    listed = invoke({"KEYS": "list"})["body"]
    assert {"id": key_id, "name": "ops", "role": "admin", "active": True} in listed
    create = rest_v1(
        "POST",
        "/heroes",
        "/heroes",
        body=json.dumps(HERO).encode(),
        headers=JSON_HEADERS | {"X-API-Key": key},
    )
    assert invoke(create)["statusCode"] == 201
    assert invoke({"KEYS": "revoke", "ID": key_id}) == {
        "statusCode": 200,
        "body": {"revoked": True},
    }
    assert invoke({"KEYS": "revoke", "ID": key_id})["statusCode"] == 404
    assert invoke({"KEYS": "create", "ROLE": "root"})["statusCode"] == 400
    assert invoke({"KEYS": "rotate"})["statusCode"] == 400


def test_direct_invocations_never_raise(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    for sqls in (["²"], ["9" * 5000], [["a", "h", "p", "①", "c"]]):
        request = "write" if isinstance(sqls[0], list) else "read"
        answer = invoke({"USE_CACHE": "True", "REQUEST": request, "SQLS": sqls})
        assert answer["statusCode"] == 400
        assert "set_int_max_str_digits" not in answer["body"]["detail"]

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runtime.service.resource("heroes"), "lookup", broken)
    answer = invoke({"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1]})
    assert answer == {"statusCode": 500, "body": {"detail": "internal server error"}}
    monkeypatch.setattr(aws_lambda, "manage_keys", broken)
    answer = invoke({"KEYS": "list"})
    assert answer == {"statusCode": 500, "body": {"detail": "internal server error"}}


def test_keys_by_direct_invocation_refuse_control_characters(runtime: Runtime) -> None:
    answer = invoke({"KEYS": "create", "ROLE": "read", "NAME": "\u001b[2Jpwned"})
    assert answer["statusCode"] == 400
    assert "cannot hold control" in answer["body"]["detail"]


def test_dynamodb_stream_records_reach_the_cache(runtime: Runtime) -> None:
    """What an event source mapping on a table's stream delivers: real records, read from
    moto's stream after a write beside twotier, in the Lambda event's shape."""
    store = runtime.service.store
    if not isinstance(store, DynamoStore):
        pytest.skip("stream records come from DynamoDB")
    import boto3

    from tests.conftest import dynamodb_endpoint

    heroes = runtime.service.resource("heroes")
    table = store.rows("heroes").table
    clients = {
        name: boto3.client(
            name,
            endpoint_url=dynamodb_endpoint(),
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        for name in ("dynamodb", "dynamodbstreams")
    }
    described = clients["dynamodb"].describe_table(TableName=table)["Table"]
    if not described.get("StreamSpecification", {}).get("StreamEnabled"):  # the CDK's job
        clients["dynamodb"].update_table(
            TableName=table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    arn = clients["dynamodb"].describe_table(TableName=table)["Table"]["LatestStreamArn"]
    made = runtime.loop.run_until_complete(heroes.create(HERO | {"name": "Streamed"}))
    assert runtime.loop.run_until_complete(heroes.read(made["id"])).body == made.to_json()
    clients["dynamodb"].update_item(  # another service: neither version nor index attribute
        TableName=table,
        Key={"id": {"N": str(made["id"])}},
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues={":n": {"S": "Renamed"}},
    )
    shard = clients["dynamodbstreams"].describe_stream(StreamArn=arn)["StreamDescription"][
        "Shards"
    ][0]["ShardId"]
    iterator = clients["dynamodbstreams"].get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

    def moment(record: dict[str, Any]) -> float:  # as Lambda gives it: epoch seconds
        return float(record["dynamodb"]["ApproximateCreationDateTime"].timestamp())

    def delivered(iterator: str) -> tuple[dict[str, Any], str]:
        """The stream's next records as the Lambda event a mapping delivers."""
        answer = clients["dynamodbstreams"].get_records(ShardIterator=iterator)
        records = [
            {
                "eventID": record["eventID"],
                "eventName": record["eventName"],
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": record["dynamodb"]
                | {
                    "ApproximateCreationDateTime": record["dynamodb"][
                        "ApproximateCreationDateTime"
                    ].timestamp()
                },
                "eventSourceARN": arn,
            }
            for record in answer["Records"]
        ]
        return {"Records": records}, answer["NextShardIterator"]

    event, iterator = delivered(iterator)
    assert invoke(event) == {"batchItemFailures": []}
    # The handler gave the item its next version: that update is the stream's next record,
    # which the mapping delivers next, and which carries the row to the cache.
    stored = clients["dynamodb"].get_item(TableName=table, Key={"id": {"N": str(made["id"])}})
    assert int(stored["Item"]["version"]["N"]) == made.version + 1
    event, iterator = delivered(iterator)
    assert invoke(event) == {"batchItemFailures": []}
    served = runtime.loop.run_until_complete(heroes.read(made["id"]))
    assert b'"Renamed"' in (served.body or b"")
    assert served.version == made.version + 1


# A fresh interpreter's cold start: what each kind of event made it import.
_COLD_START = """
import json, sys
from twotier.aws_lambda import handler
seen = []
for event in json.load(sys.stdin):
    answer = handler(event, None)
    seen.append([answer["statusCode"], sorted(
        name for name in ("fastapi", "mangum") if name in sys.modules
    )])
print(json.dumps(seen))
"""


def test_a_cold_start_imports_what_its_events_need(tmp_path: Path) -> None:
    """A seed event needs neither the HTTP app nor Mangum; a resource request needs Mangum
    but not FastAPI, which only the paths outside the endpoint table (health, docs, admin,
    metrics) build."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    environment |= {
        "TWOTIER_DATABASE_URL": f"sqlite:///{tmp_path}/cold.sqlite3",
        "TWOTIER_CACHE_URL": "memory://",
        "TWOTIER_LOG_LEVEL": "WARNING",
    }
    events = [
        {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [1]},
        http_v2("GET", "/heroes/1", "/heroes/{id}"),
        http_v2("GET", "/healthz", "/healthz"),
    ]
    seed, resource, health = _in_a_fresh_interpreter(_COLD_START, events, environment)
    assert seed == [200, []]
    assert resource == [404, ["mangum"]]  # no such hero yet: answered by the table
    assert health == [200, ["fastapi", "mangum"]]


# A cold start over a schema already made: what the process imported, and its answers.
_COLD_OVER_MADE = """
import json, sys
from twotier.aws_lambda import handler
statuses = [handler(event, None)["statusCode"] for event in json.load(sys.stdin)]
print(json.dumps([statuses, "sqlalchemy" in sys.modules]))
"""

_DECLARED = """
[resources.crew]
table = "{table}"
lookups = [{lookups}]

[resources.crew.fields]
name = {{ type = "string", max_length = 20 }}
level = {{ type = "integer", minimum = 0, maximum = 100 }}
"""


@pytest.mark.parametrize("store_kind", ["mysql", "postgres"])
def test_a_cold_start_over_a_made_schema_plans_nothing(store_kind: str, tmp_path: Path) -> None:
    """A container whose database records this declaration made by this version answers
    its seed events and resource requests with the statements kept for it, without the
    schema's plan (its lock, the engine) and without importing SQLAlchemy at all; once
    the declaration changes, the next cold start plans and makes the change (here, a new
    lookup's index)."""
    url = database_url(store_kind, tmp_path)
    table = f"crew_{os.urandom(4).hex()}"
    declaration = tmp_path / "crew.toml"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    environment |= {
        "TWOTIER_DATABASE_URL": url,
        "TWOTIER_CACHE_URL": "memory://",
        "TWOTIER_RESOURCES": str(declaration),
        "TWOTIER_REQUIRE_KEY_FOR_WRITES": "false",
        "TWOTIER_LOG_LEVEL": "WARNING",
    }
    events: list[dict[str, Any]] = [
        {"USE_CACHE": "True", "REQUEST": "write", "SQLS": [{"name": "Ann", "level": 3}]},
        {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [3]},  # by level, the lookup
        http_v2("GET", "/crew/1", "/crew/{id}"),
    ]

    def cold_start() -> tuple[list[int], bool]:
        statuses, planned = _in_a_fresh_interpreter(_COLD_OVER_MADE, events, environment)
        return statuses, planned

    declaration.write_text(_DECLARED.format(table=table, lookups='"level"'))
    try:
        assert cold_start() == ([200, 200, 200], True)  # the first one makes the table
        assert cold_start() == ([200, 200, 200], False)
        declaration.write_text(_DECLARED.format(table=table, lookups='"level", "name"'))
        assert cold_start() == ([200, 200, 200], True)
        assert f"ix_{table}_name_id" in _indexes(url, str(declaration), table)
        assert cold_start() == ([200, 200, 200], False)
    finally:
        drop_table(url, str(declaration))


def _indexes(url: str, declaration: str, table: str) -> set[str]:
    from sqlalchemy import inspect

    from twotier.resources import load_resources
    from twotier.store.sql import SQLStore

    async def read() -> set[str]:
        store = SQLStore(url, load_resources(declaration))
        try:
            async with store.engine.connect() as conn:
                found = await conn.run_sync(lambda sync: inspect(sync).get_indexes(table))
            return {str(index["name"]) for index in found}
        finally:
            await store.close()

    return asyncio.run(read())


def _in_a_fresh_interpreter(
    code: str, events: list[dict[str, Any]], environment: dict[str, str]
) -> Any:
    """What ``code`` prints last (JSON), run in a new interpreter fed ``events``."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(events),
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])
