"""The serverless stack, synthesized offline and checked with aws_cdk.assertions and cfn-lint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "infra" / "cdk"))
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from aws_cdk import App, assertions  # noqa: E402
from twotier_infra.serverless import ServerlessProps, ServerlessStack  # noqa: E402


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> assertions.Template:
    # Synthesis only stages the code asset; any zip will do (tests/deploy builds the real one).
    archive = tmp_path_factory.mktemp("asset") / "twotier-lambda.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("twotier/__init__.py", "")
    app = App()
    stack = ServerlessStack(app, "TwotierServerless", ServerlessProps(lambda_zip=str(archive)))
    return assertions.Template.from_stack(stack)


def resources(template: assertions.Template, kind: str) -> dict[str, Any]:
    return dict(template.find_resources(kind))


def test_the_database_is_aurora_serverless_private_and_encrypted(
    template: assertions.Template,
) -> None:
    template.has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": "aurora-mysql",
            "StorageEncrypted": True,
            "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 4},
        },
    )
    for instance in resources(template, "AWS::RDS::DBInstance").values():
        assert instance["Properties"].get("PubliclyAccessible") is not True
    template.resource_count_is("AWS::SecretsManager::Secret", 1)


def test_the_cache_is_encrypted_in_transit_and_at_rest(template: assertions.Template) -> None:
    template.has_resource_properties(
        "AWS::ElastiCache::ReplicationGroup",
        {
            "Engine": "redis",
            "TransitEncryptionEnabled": True,
            "AtRestEncryptionEnabled": True,
        },
    )


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


def test_iam_is_least_privilege(template: assertions.Template) -> None:
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert "*" not in actions
            if any(a.startswith("secretsmanager:") for a in actions):
                assert set(actions) <= {
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:DescribeSecret",
                }
                assert statement["Resource"] != "*"


def test_the_data_tier_admits_only_the_app(template: assertions.Template) -> None:
    groups = resources(template, "AWS::EC2::SecurityGroup")
    app = next(k for k, v in groups.items() if v["Properties"]["GroupDescription"] == "twotier app")
    ingress = resources(template, "AWS::EC2::SecurityGroupIngress")
    ports = set()
    for rule in ingress.values():
        properties = rule["Properties"]
        if properties.get("FromPort") in (3306, 6379):
            assert properties["SourceSecurityGroupId"]["Fn::GetAtt"][0] == app
            assert "CidrIp" not in properties
            ports.add(properties["FromPort"])
    assert ports == {3306, 6379}
    for group in groups.values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0"


def test_the_api_is_throttled_logged_and_watched(template: assertions.Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "DefaultRouteSettings": {"ThrottlingBurstLimit": 1000, "ThrottlingRateLimit": 500},
        },
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    descriptions = {a["Properties"]["AlarmDescription"] for a in alarms.values()}
    assert any("5xx" in d for d in descriptions)
    assert any("latency" in d for d in descriptions)
    assert any("hit ratio" in d for d in descriptions)


def test_cfn_lint_passes(template: assertions.Template, tmp_path: Path) -> None:
    path = tmp_path / "serverless.json"
    path.write_text(json.dumps(template.to_json()))
    # W3005: CDK itself adds a DependsOn on the function's role that a GetAtt already
    # implies (Lambda in a VPC); redundant, harmless, not ours to change. All else counts.
    lint = [str(Path(sys.executable).with_name("cfn-lint")), str(path), "--ignore-checks", "W3005"]
    result = subprocess.run(lint, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_app_reads_sizes_and_counts_from_context(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "infra" / "cdk"))
    import app as cdk_app

    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("twotier/__init__.py", "")
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
