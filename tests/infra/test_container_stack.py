"""The container stack (ALB -> Fargate), synthesized offline: assertions and cfn-lint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, assertions
from twotier_infra.container import ContainerProps, ContainerStack

from tests.infra.checks import (
    cfn_lint,
    check_alarms,
    check_data_tier,
    check_follower,
    check_least_privilege,
    resources,
)

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/twotier:1.0"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0b9d7c4e-8a55-4a3e-9f3b-1d2c3b4a5e6f"


@pytest.fixture(scope="module")
def template() -> assertions.Template:
    props = ContainerProps(image=IMAGE, cpu=2048, certificate_arn=CERTIFICATE)
    stack = ContainerStack(App(), "TwotierContainer", props)
    return assertions.Template.from_stack(stack)


def test_the_data_tier_is_private_encrypted_and_admits_only_the_app(
    template: assertions.Template,
) -> None:
    check_data_tier(template)
    check_least_privilege(template)
    check_alarms(template)


def test_fargate_runs_the_image_with_the_secret_not_the_password(
    template: assertions.Template,
) -> None:
    [task] = [
        task
        for task in resources(template, "AWS::ECS::TaskDefinition").values()
        if "PortMappings" in task["Properties"]["ContainerDefinitions"][0]
    ]
    [container] = task["Properties"]["ContainerDefinitions"]
    assert container["Image"] == IMAGE
    assert container["PortMappings"][0]["ContainerPort"] == 8000
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["TWOTIER_WORKERS"] == "2"  # one per vCPU
    assert {"TWOTIER_DATABASE_SECRET_ARN", "TWOTIER_CACHE_URL"} <= set(environment)
    assert "password" not in str(environment).lower()
    assert task["Properties"]["RequiresCompatibilities"] == ["FARGATE"]
    template.has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "FARGATE",
            "DeploymentConfiguration": {
                "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}
            },
        },
    )


def test_the_follower_runs_beside_the_app_and_aurora_logs_rows_whole(
    template: assertions.Template,
) -> None:
    check_follower(template, IMAGE)


def test_the_load_balancer_checks_liveness_and_readiness_is_alarmed(
    template: assertions.Template,
) -> None:
    """A task whose database or cache is down still serves what it can: the target group
    checks /healthz (with /readyz, an outage of Redis replaced every task), and readiness
    is an alarm on the app's Ready metric, which breaches when no task reports."""
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"HealthCheckPath": "/healthz", "Protocol": "HTTP"},
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "Ready",
            "Namespace": "twotier",
            "ComparisonOperator": "LessThanThreshold",
            "Threshold": 1,
            "TreatMissingData": "breaching",
        },
    )
    [app] = app_environments(template)
    assert app["TWOTIER_EMF_EVERY"] == "60"


def app_environments(template: assertions.Template) -> list[dict[str, Any]]:
    return [
        {
            e["Name"]: e["Value"]
            for e in task["Properties"]["ContainerDefinitions"][0]["Environment"]
        }
        for task in resources(template, "AWS::ECS::TaskDefinition").values()
        if "PortMappings" in task["Properties"]["ContainerDefinitions"][0]
    ]


def test_the_api_is_served_over_https_only(template: assertions.Template) -> None:
    """A public load balancer: HTTPS on 443 with the certificate, port 80 only a redirect to
    it; the tasks take the ALB as the one proxy naming the client; a WAF rate-based rule
    per address in front of it all."""
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer", {"Scheme": "internet-facing"}
    )
    listeners = [
        listener["Properties"]
        for listener in resources(template, "AWS::ElasticLoadBalancingV2::Listener").values()
    ]
    by_port = {listener["Port"]: listener for listener in listeners}
    assert set(by_port) == {443, 80}
    assert by_port[443]["Protocol"] == "HTTPS"
    assert by_port[443]["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert by_port[443]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    [redirect] = by_port[80]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    [app] = app_environments(template)
    assert app["TWOTIER_TRUSTED_PROXY_HOPS"] == "1"
    [acl] = resources(template, "AWS::WAFv2::WebACL").values()
    [rule] = acl["Properties"]["Rules"]
    assert rule["Action"] == {"Block": {}}
    assert rule["Statement"]["RateBasedStatement"] == {"AggregateKeyType": "IP", "Limit": 2000}
    [association] = resources(template, "AWS::WAFv2::WebACLAssociation").values()
    assert "Ref" in association["Properties"]["ResourceArn"]


def test_without_a_certificate_the_stack_is_refused_in_one_line() -> None:
    import app as cdk_app

    with pytest.raises(ValueError, match="serves HTTPS only") as refused:
        cdk_app.build(App(context={"kind": "container", "image": IMAGE}))
    assert "\n" not in str(refused.value)
    made = cdk_app.build(
        App(
            context={
                "kind": "container",
                "image": IMAGE,
                "domainName": "api.example.com",
                "hostedZoneId": "Z0123456789ABCDEFGHIJ",
                "hostedZoneName": "example.com",
            }
        )
    )
    template = assertions.Template.from_stack(made)
    template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {"DomainName": "api.example.com", "ValidationMethod": "DNS"},
    )
    template.has_resource_properties("AWS::Route53::RecordSet", {"Name": "api.example.com."})


def test_it_scales_on_cpu_and_request_count(template: assertions.Template) -> None:
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": 2,
            "MaxCapacity": 10,
        },
    )
    policies = resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    metrics = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"][
            "PredefinedMetricSpecification"
        ]["PredefinedMetricType"]
        for p in policies.values()
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}


def test_cfn_lint_passes(template: assertions.Template, tmp_path: Path) -> None:
    result = cfn_lint(template, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_app_builds_the_container_stack_from_context() -> None:
    import app as cdk_app

    application = App(
        context={
            "kind": "container",
            "image": IMAGE,
            "certificateArn": CERTIFICATE,
            "cpu": 4096,
            "maxTasks": 20,
            "auroraReaders": 1,
        }
    )
    stack = cdk_app.build(application)
    assert stack.stack_name == "TwotierContainer"
    template = assertions.Template.from_stack(stack)
    template.has_resource_properties("AWS::ECS::TaskDefinition", {"Cpu": "4096", "Memory": "8192"})
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MaxCapacity": 20}
    )
    with pytest.raises(ValueError, match="needs -c image"):
        cdk_app.build(App(context={"kind": "container"}))


def test_aurora_postgresql_with_logical_decoding_for_the_follower(tmp_path: Path) -> None:
    """``-c database=aurora-postgresql``: Aurora PostgreSQL, admitting only the app on
    5432, with logical replication on for the follower, which runs as its own user."""
    import app as cdk_app

    stack = cdk_app.build(
        App(
            context={
                "kind": "container",
                "image": IMAGE,
                "certificateArn": CERTIFICATE,
                "database": "aurora-postgresql",
            }
        )
    )
    template = assertions.Template.from_stack(stack)
    check_data_tier(template, "aurora-postgresql")
    check_least_privilege(template)
    check_follower(template, IMAGE, "aurora-postgresql")
    [app] = [
        task["Properties"]["ContainerDefinitions"][0]
        for task in resources(template, "AWS::ECS::TaskDefinition").values()
        if "Command" not in task["Properties"]["ContainerDefinitions"][0]
    ]
    environment = {e["Name"]: e["Value"] for e in app["Environment"]}
    assert environment["TWOTIER_DATABASE_URL"]["Fn::Join"][1][0] == "postgresql://"
    result = cfn_lint(template, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
