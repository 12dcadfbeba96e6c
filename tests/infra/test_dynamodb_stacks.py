"""Both stacks with ``-c database=dynamodb``: DynamoDB tables instead of Aurora, synthesized
offline and checked with aws_cdk.assertions and cfn-lint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, assertions
from twotier_infra.data_tier import DYNAMODB_ACTIONS

from tests.conftest import DECLARED
from tests.infra.checks import cfn_lint, check_least_privilege, resources
from tests.infra.test_serverless_stack import stand_in_code

#: What reading a table's stream takes (the follower, or the function's event source).
STREAM_ACTIONS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")


def synthesize(kind: str, folder: Path, **context: Any) -> assertions.Template:
    import app as cdk_app

    values: dict[str, Any] = {"database": "dynamodb", "kind": kind} | context
    if kind == "serverless":
        values["lambdaZip"] = str(stand_in_code(folder))
    else:
        values["image"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/twotier:1"
        values["certificateArn"] = "arn:aws:acm:eu-west-1:123456789012:certificate/1"
    return assertions.Template.from_stack(cdk_app.build(App(context=values)))


@pytest.fixture(scope="module", params=["serverless", "container"])
def template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> assertions.Template:
    return synthesize(str(request.param), tmp_path_factory.mktemp("asset"))


def tables(template: assertions.Template) -> dict[str, dict[str, Any]]:
    found = resources(template, "AWS::DynamoDB::Table").values()
    return {table["Properties"]["TableName"]: table for table in found}


def test_no_aurora_but_tables_kept_safe(template: assertions.Template) -> None:
    template.resource_count_is("AWS::RDS::DBCluster", 0)
    template.resource_count_is("AWS::SecretsManager::Secret", 1)  # the cache user's alone
    made = tables(template)
    names = {name.split("-", 1)[1] for name in made}
    assert names == {"superheroes", "twotier_api_keys", "twotier_meta"}
    for name, table in made.items():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        assert properties["SSESpecification"]["SSEEnabled"] is True
        assert properties["DeletionProtectionEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"
        if name.endswith("superheroes"):
            assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
            assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
            [index] = properties["GlobalSecondaryIndexes"]
            assert index["IndexName"] == "by_xp"
            assert index["KeySchema"] == [
                {"AttributeName": "_by_xp", "KeyType": "HASH"},
                {"AttributeName": "id", "KeyType": "RANGE"},
            ]
            assert index["Projection"] == {"ProjectionType": "ALL"}


def test_the_streams_are_followed(template: assertions.Template) -> None:
    """Serverless: each resource table's stream invokes the function (batch failures
    reported); container: the follower's tasks, allowed to read the streams. Both: the lag
    alarm."""
    streams = {
        arn["Fn::GetAtt"][0]
        for arn in (
            statement["Resource"]
            for policy in resources(template, "AWS::IAM::Policy").values()
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if "dynamodb:GetRecords" in statement["Action"]
        )
        if isinstance(arn, dict)
    }
    resource_tables = {
        name
        for name, table in resources(template, "AWS::DynamoDB::Table").items()
        if "StreamSpecification" in table["Properties"]
    }
    assert streams == resource_tables
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    followers = [
        task
        for task in resources(template, "AWS::ECS::TaskDefinition").values()
        if task["Properties"]["ContainerDefinitions"][0].get("Command", [])[:2]
        == ["twotier", "follow"]
    ]
    if mappings:  # serverless
        assert not followers
        assert len(mappings) == len(resource_tables)
        for mapping in mappings.values():
            assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            assert mapping["Properties"]["StartingPosition"] == "LATEST"
    else:
        assert len(followers) == 1
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"MetricName": "FollowLag", "Namespace": "twotier"}
    )


def test_the_app_reaches_dynamodb_through_a_gateway_endpoint(
    template: assertions.Template,
) -> None:
    [endpoint] = resources(template, "AWS::EC2::VPCEndpoint").values()
    assert "dynamodb" in json.dumps(endpoint["Properties"]["ServiceName"])
    assert endpoint["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    ports = {
        rule["Properties"]["FromPort"]
        for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values()
    }
    assert 3306 not in ports  # no database security group without Aurora
    assert 6379 in ports


def test_the_role_may_make_twotiers_calls_on_its_tables_only(
    template: assertions.Template,
) -> None:
    check_least_privilege(template)
    logical = {
        key
        for key, table in resources(template, "AWS::DynamoDB::Table").items()
        if table["Type"] == "AWS::DynamoDB::Table"
    }
    granted: set[str] = set()
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            actions = set(actions if isinstance(actions, list) else [actions])
            if not any(action.startswith("dynamodb:") for action in actions):
                continue
            if actions == {"dynamodb:ListStreams"}:
                continue  # reading streams needs it, and it takes no resource but "*"
            assert actions <= set(DYNAMODB_ACTIONS) | set(STREAM_ACTIONS)
            resources_ = statement["Resource"]
            for resource in resources_ if isinstance(resources_, list) else [resources_]:
                text = json.dumps(resource)
                assert text != '"*"'
                refs = [name for name in logical if name in text]
                assert len(refs) == 1, text  # a table, or its indexes: /index/*
                granted.add(refs[0])
    assert granted == logical


def test_the_app_is_told_where_the_tables_are(template: assertions.Template) -> None:
    text = json.dumps(template.to_json())
    assert "dynamodb://?region=" in text
    assert "TWOTIER_DATABASE_SECRET_ARN" not in text


def test_cfn_lint_passes(template: assertions.Template, tmp_path: Path) -> None:
    result = cfn_lint(template, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_declared_resources_each_get_a_table_with_their_indexes(tmp_path: Path) -> None:
    template = synthesize(
        "serverless", tmp_path, resources=str(DECLARED), tablePrefix="shop_", stackName="Shop"
    )
    made = tables(template)
    assert set(made) == {
        "shop_superheroes",
        "shop_products",
        "shop_events",
        "shop_things",
        "shop_twotier_api_keys",
        "shop_twotier_meta",
    }
    products = made["shop_products"]["Properties"]
    assert products["KeySchema"] == [{"AttributeName": "sku", "KeyType": "HASH"}]
    assert [i["IndexName"] for i in products["GlobalSecondaryIndexes"]] == ["by_category"]
    assert "table_prefix=shop_" in json.dumps(template.to_json())
