"""The CDK app: `cdk deploy` from this folder.

kind=serverless (default; after `make lambda`) or kind=container (with image=URI of the
image built from infra/Dockerfile, and HTTPS: certificateArn=<ACM certificate>, or
domainName with hostedZoneId and hostedZoneName to have one made; wafRateLimit: requests per
address per five minutes). With Aurora, both run the change-log follower as a small
Fargate service from that image (serverless: only when image= is given). Sizes, counts and
names come from context (cdk.json, or -c key=value), with sane defaults: lambdaZip,
memoryMb, reservedConcurrency (default: what maxDatabaseConnections, the cluster's
max_connections, allows), throttleRate, throttleBurst, image, cpu, minTasks, maxTasks,
auroraMinAcu, auroraMaxAcu, auroraReaders, cacheNodeType, cacheReplicas, natGateways,
stackName; cacheShards=N (N > 1: ElastiCache with cluster mode enabled, N shards of a primary
and cacheReplicas replicas each) or cache=serverless (ElastiCache Serverless);
database=aurora-postgresql (Aurora PostgreSQL instead of Aurora MySQL) or database=dynamodb
(no Aurora: a table per declared resource) with resources=<declaration.toml> (default: the
heroes) and tablePrefix (default: the stack's name and '-').
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Stack
from twotier_infra.container import ContainerProps, ContainerStack
from twotier_infra.data_tier import DataTierProps
from twotier_infra.serverless import ServerlessProps, ServerlessStack


def _number(context: Mapping[str, Any], key: str, default: float) -> float:
    return float(context.get(key, default))


def data_props(context: Mapping[str, Any]) -> DataTierProps:
    return DataTierProps(
        nat_gateways=int(_number(context, "natGateways", 1)),
        aurora_min_acu=_number(context, "auroraMinAcu", 0.5),
        aurora_max_acu=_number(context, "auroraMaxAcu", 4),
        aurora_readers=int(_number(context, "auroraReaders", 0)),
        cache_node_type=str(context.get("cacheNodeType", "cache.t4g.small")),
        cache_replicas=int(_number(context, "cacheReplicas", 1)),
        cache_shards=int(_number(context, "cacheShards", 1)),
        cache=str(context.get("cache", "nodes")),
        database=str(context.get("database", "aurora")),
        resources=context.get("resources"),
        table_prefix=context.get("tablePrefix"),
    )


def container_props(context: Mapping[str, Any]) -> ContainerProps:
    if not context.get("image"):
        raise ValueError("kind=container needs -c image=<URI of the twotier image>")
    return ContainerProps(
        image=str(context["image"]),
        cpu=int(_number(context, "cpu", 1024)),
        min_tasks=int(_number(context, "minTasks", 2)),
        max_tasks=int(_number(context, "maxTasks", 10)),
        certificate_arn=context.get("certificateArn"),
        domain_name=context.get("domainName"),
        hosted_zone_id=context.get("hostedZoneId"),
        hosted_zone_name=context.get("hostedZoneName"),
        waf_rate_limit=int(_number(context, "wafRateLimit", 2000)),
        data=data_props(context),
    )


def serverless_props(context: Mapping[str, Any]) -> ServerlessProps:
    def number(key: str, default: float) -> float:
        return _number(context, key, default)

    reserved = context.get("reservedConcurrency")
    return ServerlessProps(
        lambda_zip=str(context.get("lambdaZip", "../../dist/twotier-lambda.zip")),
        memory_mb=int(number("memoryMb", 1024)),
        reserved_concurrency=int(reserved) if reserved is not None else None,
        throttle_rate=number("throttleRate", 500),
        throttle_burst=int(number("throttleBurst", 1000)),
        max_database_connections=int(number("maxDatabaseConnections", 100)),
        follower_image=context.get("image"),
        data=data_props(context),
    )


_KEYS = (
    "lambdaZip",
    "memoryMb",
    "reservedConcurrency",
    "throttleRate",
    "throttleBurst",
    "image",
    "cpu",
    "minTasks",
    "maxTasks",
    "certificateArn",
    "domainName",
    "hostedZoneId",
    "hostedZoneName",
    "wafRateLimit",
    "maxDatabaseConnections",
    "auroraMinAcu",
    "auroraMaxAcu",
    "auroraReaders",
    "cacheNodeType",
    "cacheReplicas",
    "cacheShards",
    "cache",
    "natGateways",
    "database",
    "resources",
    "tablePrefix",
)


def build(app: App) -> Stack:
    found = {key: app.node.try_get_context(key) for key in _KEYS}
    context = {key: value for key, value in found.items() if value is not None}
    env = Environment()  # account and region from the deploying credentials
    if app.node.try_get_context("kind") == "container":
        name = app.node.try_get_context("stackName") or "TwotierContainer"
        return ContainerStack(app, name, container_props(context), env=env)
    name = app.node.try_get_context("stackName") or "TwotierServerless"
    return ServerlessStack(app, name, serverless_props(context), env=env)


if __name__ == "__main__":
    application = App()
    build(application)
    application.synth()
