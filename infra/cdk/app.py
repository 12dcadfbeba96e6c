"""The CDK app: `cdk deploy` from this folder (after `make lambda` at the repository root).

Sizes, counts and names come from context (cdk.json, or -c key=value), with sane defaults:
lambdaZip, memoryMb, reservedConcurrency, throttleRate, throttleBurst, auroraMinAcu,
auroraMaxAcu, auroraReaders, cacheNodeType, cacheReplicas, natGateways, stackName.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment
from twotier_infra.data_tier import DataTierProps
from twotier_infra.serverless import ServerlessProps, ServerlessStack


def serverless_props(context: Mapping[str, Any]) -> ServerlessProps:
    def number(key: str, default: float) -> float:
        return float(context.get(key, default))

    reserved = context.get("reservedConcurrency")
    return ServerlessProps(
        lambda_zip=str(context.get("lambdaZip", "../../dist/twotier-lambda.zip")),
        memory_mb=int(number("memoryMb", 1024)),
        reserved_concurrency=int(reserved) if reserved is not None else None,
        throttle_rate=number("throttleRate", 500),
        throttle_burst=int(number("throttleBurst", 1000)),
        data=DataTierProps(
            nat_gateways=int(number("natGateways", 1)),
            aurora_min_acu=number("auroraMinAcu", 0.5),
            aurora_max_acu=number("auroraMaxAcu", 4),
            aurora_readers=int(number("auroraReaders", 0)),
            cache_node_type=str(context.get("cacheNodeType", "cache.t4g.small")),
            cache_replicas=int(number("cacheReplicas", 1)),
        ),
    )


def build(app: App) -> ServerlessStack:
    context = {
        key: app.node.try_get_context(key)
        for key in (
            "lambdaZip",
            "memoryMb",
            "reservedConcurrency",
            "throttleRate",
            "throttleBurst",
            "auroraMinAcu",
            "auroraMaxAcu",
            "auroraReaders",
            "cacheNodeType",
            "cacheReplicas",
            "natGateways",
        )
    }
    name = app.node.try_get_context("stackName") or "TwotierServerless"
    return ServerlessStack(
        app,
        name,
        serverless_props({k: v for k, v in context.items() if v is not None}),
        env=Environment(),  # account and region from the deploying credentials
    )


if __name__ == "__main__":
    application = App()
    build(application)
    application.synth()
