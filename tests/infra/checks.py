"""Checks every twotier stack must pass: the data tier, IAM scope, cfn-lint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from aws_cdk import assertions

ROOT = Path(__file__).parents[2]


def resources(template: assertions.Template, kind: str) -> dict[str, Any]:
    return dict(template.find_resources(kind))


#: Each Aurora engine: its port, and the cluster parameters the change-log follower needs.
AURORA = {
    "aurora-mysql": (
        3306,
        {
            "binlog_format": "ROW",
            "binlog_row_image": "full",
            "binlog_row_metadata": "full",
            "log_bin_trust_function_creators": "1",
        },
    ),
    "aurora-postgresql": (5432, {"rds.logical_replication": "1"}),
}


def check_data_tier(template: assertions.Template, engine: str = "aurora-mysql") -> None:
    """Aurora Serverless v2 and Redis: private, encrypted, reachable from the app only."""
    port, _ = AURORA[engine]
    template.has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": engine,
            "StorageEncrypted": True,
            "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 4},
        },
    )
    for instance in resources(template, "AWS::RDS::DBInstance").values():
        assert instance["Properties"].get("PubliclyAccessible") is not True
    # The app's, the follower's, the cache user's.
    template.resource_count_is("AWS::SecretsManager::Secret", 3)
    check_tls_everywhere(template, engine)
    template.has_resource_properties(
        "AWS::ElastiCache::ReplicationGroup",
        {
            "Engine": "redis",
            "TransitEncryptionEnabled": True,
            "AtRestEncryptionEnabled": True,
        },
    )
    groups = resources(template, "AWS::EC2::SecurityGroup")
    app = next(k for k, v in groups.items() if v["Properties"]["GroupDescription"] == "twotier app")
    ports = set()
    for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values():
        properties = rule["Properties"]
        if properties.get("FromPort") in (port, 6379):
            assert properties["SourceSecurityGroupId"]["Fn::GetAtt"][0] == app
            assert "CidrIp" not in properties
            ports.add(properties["FromPort"])
    assert ports == {port, 6379}
    for key, group in groups.items():
        if "LB" in key:  # a public load balancer is meant to take traffic from anywhere
            continue
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0", key


def check_tls_everywhere(template: assertions.Template, engine: str) -> None:
    """Aurora refuses plain connections and twotier verifies its certificate against the
    Amazon RDS bundle it carries; the cache takes TLS only, and one user with a password
    from Secrets Manager (its default user off), whom every process is told of."""
    forced = (
        {"require_secure_transport": "ON"} if engine == "aurora-mysql" else {"rds.force_ssl": "1"}
    )
    template.has_resource_properties(
        "AWS::RDS::DBClusterParameterGroup", {"Parameters": assertions.Match.object_like(forced)}
    )
    urls = [
        env["TWOTIER_DATABASE_URL"]
        for env in _environments(template)
        if "TWOTIER_DATABASE_URL" in env
    ]
    assert urls
    for url in urls:
        tail = url["Fn::Join"][1][-1]
        assert tail.endswith(
            "?ssl_ca=rds" if engine == "aurora-mysql" else "?sslmode=verify-full&sslrootcert=rds"
        ), tail
    groups = resources(template, "AWS::ElastiCache::ReplicationGroup")
    groups |= resources(template, "AWS::ElastiCache::ServerlessCache")
    for group in groups.values():
        properties = group["Properties"]
        assert properties.get("TransitEncryptionEnabled", True) is True
        assert "UserGroupIds" in properties or "UserGroupId" in properties
    users = {
        u["Properties"]["UserName"]: u["Properties"]
        for u in resources(template, "AWS::ElastiCache::User").values()
    }
    assert users["default"]["AccessString"].startswith("off")
    assert users["twotier"]["AuthenticationMode"]["Type"] == "password"
    assert "resolve:secretsmanager" in json.dumps(users["twotier"]["AuthenticationMode"])
    for env in _environments(template):
        if "TWOTIER_CACHE_URL" in env:
            assert "TWOTIER_CACHE_SECRET_ARN" in env
            assert "@" not in json.dumps(env["TWOTIER_CACHE_URL"])  # no password in a URL


def check_least_privilege(template: assertions.Template) -> None:
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            assert "*" not in actions
            if any(a.startswith("secretsmanager:") for a in actions):
                assert set(actions) <= {
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:DescribeSecret",
                }
                assert statement["Resource"] != "*"


def check_alarms(template: assertions.Template) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    descriptions = {a["Properties"]["AlarmDescription"] for a in alarms.values()}
    assert any("5xx" in d for d in descriptions)
    assert any("latency" in d for d in descriptions)
    assert any("hit ratio" in d for d in descriptions)


def cfn_lint(template: assertions.Template, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template.to_json()))
    # W3005: CDK itself adds a DependsOn that a GetAtt already implies; redundant, harmless,
    # not ours to change. Everything else counts.
    lint = [str(Path(sys.executable).with_name("cfn-lint")), str(path), "--ignore-checks", "W3005"]
    return subprocess.run(lint, capture_output=True, text=True, timeout=300)


def check_follower(template: assertions.Template, image: str, engine: str = "aurora-mysql") -> None:
    """The change-log follower: two small Fargate tasks of the image running ``twotier
    follow`` with EMF, as a database user of their own (its secret, never a password, and
    no other secret), an alarm on its lag; the app told to make that user; and the Aurora
    cluster logging what the follower reads."""
    tasks = [
        task
        for task in resources(template, "AWS::ECS::TaskDefinition").values()
        if task["Properties"]["ContainerDefinitions"][0].get("Command", [])[:2]
        == ["twotier", "follow"]
    ]
    assert len(tasks) == 1
    [container] = tasks[0]["Properties"]["ContainerDefinitions"]
    assert container["Image"] == image
    assert container["Command"] == ["twotier", "follow", "--emf-every", "60"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert {"TWOTIER_DATABASE_SECRET_ARN", "TWOTIER_CACHE_URL"} <= set(environment)
    assert "password" not in str(environment).lower()
    follower_secret = environment["TWOTIER_DATABASE_SECRET_ARN"]
    assert "FollowerSecret" in follower_secret["Ref"]
    # The follower's role may read its own secret and no other.
    role = tasks[0]["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    read: list[Any] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                if any(a.startswith("secretsmanager:") for a in actions):
                    read.append(statement["Resource"])
    cache_secret = environment["TWOTIER_CACHE_SECRET_ARN"]
    assert "CacheSecret" in cache_secret["Ref"]
    # Its own and the cache's, no other.
    assert sorted(map(json.dumps, read)) == sorted(map(json.dumps, [follower_secret, cache_secret]))
    # Whatever else runs (the app) is told to make that user, with that secret.
    told = [
        variables
        for variables in _environments(template)
        if variables.get("TWOTIER_FOLLOWER_SECRET_ARN") == follower_secret
    ]
    assert told
    template.has_resource_properties(
        "AWS::ECS::Service", {"DesiredCount": 2, "LaunchType": "FARGATE"}
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "FollowLag", "Namespace": "twotier", "Threshold": 5000},
    )
    # A follower that cannot hear the log (a half-open link, none holding the lease) alarms;
    # no line at all is no follower at all: missing data breaches.
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "FollowHeartbeatAge",
            "Namespace": "twotier",
            "Threshold": 30,
            "TreatMissingData": "breaching",
        },
    )
    template.has_resource_properties(
        "AWS::RDS::DBClusterParameterGroup", {"Parameters": AURORA[engine][1]}
    )


def _environments(template: assertions.Template) -> list[dict[str, Any]]:
    """The environment of every container and function in the template."""
    found = []
    for task in resources(template, "AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            found.append({e["Name"]: e["Value"] for e in container.get("Environment", [])})
    for function in resources(template, "AWS::Lambda::Function").values():
        found.append(function["Properties"].get("Environment", {}).get("Variables", {}))
    return found
