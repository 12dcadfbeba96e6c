"""The serverless stack, synthesized offline and checked with aws_cdk.assertions and cfn-lint."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, assertions
from twotier_infra.serverless import ServerlessProps, ServerlessStack

from tests.infra.checks import (
    cfn_lint,
    check_alarms,
    check_data_tier,
    check_follower,
    check_least_privilege,
    resources,
)

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/twotier:1.0"


def stand_in_code(folder: Path) -> Path:
    """Synthesis only stages the code asset; any zip will do (tests/deploy builds the real one)."""
    archive = folder / "twotier-lambda.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("twotier/__init__.py", "")
    return archive


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> assertions.Template:
    archive = stand_in_code(tmp_path_factory.mktemp("asset"))
    app = App()
    props = ServerlessProps(lambda_zip=str(archive), follower_image=IMAGE)
    stack = ServerlessStack(app, "TwotierServerless", props)
    return assertions.Template.from_stack(stack)


def test_the_follower_runs_on_fargate_beside_the_function(
    template: assertions.Template,
) -> None:
    check_follower(template, IMAGE)


def test_the_data_tier_is_private_encrypted_and_admits_only_the_app(
    template: assertions.Template,
) -> None:
    check_data_tier(template)
    check_least_privilege(template)


def test_the_function_runs_in_the_vpc_with_the_secret_not_the_password(
    template: assertions.Template,
) -> None:
    [function] = resources(template, "AWS::Lambda::Function").values()
    properties = function["Properties"]
    assert properties["Runtime"] == "python3.11"
    assert properties["Handler"] == "twotier.aws_lambda.handler"
    assert properties["VpcConfig"]["SubnetIds"]
    variables = properties["Environment"]["Variables"]
    assert {"TWOTIER_DATABASE_URL", "TWOTIER_DATABASE_SECRET_ARN", "TWOTIER_CACHE_URL"} <= set(
        variables
    )
    assert "password" not in json.dumps(variables).lower()


def test_the_api_is_throttled_logged_and_watched(template: assertions.Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "DefaultRouteSettings": {"ThrottlingBurstLimit": 1000, "ThrottlingRateLimit": 500},
        },
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    check_alarms(template)


def test_cfn_lint_passes(template: assertions.Template, tmp_path: Path) -> None:
    result = cfn_lint(template, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_app_reads_sizes_and_counts_from_context(tmp_path: Path) -> None:
    import app as cdk_app

    archive = stand_in_code(tmp_path)
    application = App(
        context={
            "lambdaZip": str(archive),
            "auroraReaders": 2,
            "cacheReplicas": 2,
            "memoryMb": 2048,
            "stackName": "Custom",
        }
    )
    stack = cdk_app.build(application)
    assert stack.stack_name == "Custom"
    template = assertions.Template.from_stack(stack)
    template.resource_count_is("AWS::RDS::DBInstance", 3)  # a writer and two readers
    template.has_resource_properties(
        "AWS::ElastiCache::ReplicationGroup", {"ReplicasPerNodeGroup": 2}
    )
    template.has_resource_properties("AWS::Lambda::Function", {"MemorySize": 2048})


def cache_url_of(template: assertions.Template) -> Any:
    [function] = resources(template, "AWS::Lambda::Function").values()
    return function["Properties"]["Environment"]["Variables"]["TWOTIER_CACHE_URL"]


def test_a_sharded_cache_is_a_cluster_mode_replication_group(tmp_path: Path) -> None:
    """-c cacheShards=3: ElastiCache with cluster mode enabled, three shards of a primary
    and two replicas each; the app reaches it through its configuration endpoint."""
    import app as cdk_app

    context = {"lambdaZip": str(stand_in_code(tmp_path)), "cacheShards": 3, "cacheReplicas": 2}
    template = assertions.Template.from_stack(cdk_app.build(App(context=context)))
    template.has_resource_properties(
        "AWS::ElastiCache::ReplicationGroup",
        {
            "ClusterMode": "enabled",
            "NumNodeGroups": 3,
            "ReplicasPerNodeGroup": 2,
            "CacheParameterGroupName": "default.redis7.cluster.on",
            "AutomaticFailoverEnabled": True,
            "TransitEncryptionEnabled": True,
        },
    )
    url = json.dumps(cache_url_of(template))
    assert url.startswith('{"Fn::Join": ["", ["rediss+cluster://", {"Fn::GetAtt": [')
    assert "ConfigurationEndPoint.Address" in url
    result = cfn_lint(template, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_serverless_cache_replaces_the_nodes(tmp_path: Path) -> None:
    """-c cache=serverless: ElastiCache Serverless (cluster protocol, TLS only), in the
    isolated subnets, admitting the app only; no replication group."""
    import app as cdk_app

    context = {"lambdaZip": str(stand_in_code(tmp_path)), "cache": "serverless"}
    template = assertions.Template.from_stack(cdk_app.build(App(context=context)))
    template.resource_count_is("AWS::ElastiCache::ReplicationGroup", 0)
    [cache] = resources(template, "AWS::ElastiCache::ServerlessCache").values()
    assert cache["Properties"]["Engine"] == "redis"
    assert len(cache["Properties"]["SubnetIds"]) == 2
    assert "rediss+cluster://" in json.dumps(cache_url_of(template))
    assert "Endpoint.Address" in json.dumps(cache_url_of(template))
    result = cfn_lint(template, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_unknown_cache_shape_is_refused(tmp_path: Path) -> None:
    import app as cdk_app

    context = {"lambdaZip": str(stand_in_code(tmp_path)), "cache": "memcached"}
    with pytest.raises(ValueError, match="cache must be one of nodes, serverless"):
        cdk_app.build(App(context=context))


def test_the_function_never_takes_more_connections_than_aurora_has(
    template: assertions.Template,
) -> None:
    """Each function serves one request at a time with a pool of one (three connections at
    most, with its overflow and the driver's): at most as many at once as four fifths of
    the cluster's max_connections allow (100 by default: 26 functions), where nothing capped
    them before."""
    [function] = resources(template, "AWS::Lambda::Function").values()
    properties = function["Properties"]
    assert properties["ReservedConcurrentExecutions"] == 26
    variables = properties["Environment"]["Variables"]
    assert variables["TWOTIER_DATABASE_POOL_SIZE"] == "1"


def test_the_http_api_writes_an_access_log(template: assertions.Template) -> None:
    [stage] = resources(template, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    assert "Fn::GetAtt" in settings["DestinationArn"]
    logged = json.loads(settings["Format"])
    assert {"requestId", "ip", "status", "httpMethod", "resourcePath"} <= set(logged)


def test_a_postgresql_followers_slot_holds_back_a_bounded_wal(tmp_path: Path) -> None:
    """Aurora PostgreSQL: a replication slot may hold back 10 GiB of WAL at most (a follower
    stopped for long: past it the slot is lost and the follower starts over, emptying the
    cache), and twice 5 minutes over half of it alarms."""
    import app as cdk_app

    stack = cdk_app.build(
        App(
            context={
                "lambdaZip": str(stand_in_code(tmp_path)),
                "image": IMAGE,
                "database": "aurora-postgresql",
                "maxDatabaseConnections": 400,
            }
        )
    )
    template = assertions.Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::RDS::DBClusterParameterGroup",
        {"Parameters": assertions.Match.object_like({"max_slot_wal_keep_size": "10240"})},
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "FollowRetainedBytes", "Threshold": 5 * 1024**3},
    )
    [function] = resources(template, "AWS::Lambda::Function").values()
    assert function["Properties"]["ReservedConcurrentExecutions"] == 106
