"""The container stack: an Application Load Balancer -> ECS Fargate tasks -> the data tier;
beside them, the change-log follower (``follower``).

The load balancer speaks HTTPS only, with a certificate from ACM (``certificateArn``, or one
made for ``domainName`` and validated in its Route 53 zone); port 80 answers with a
redirect. A WAF web ACL in front of it blocks an address past ``wafRateLimit`` requests in
five minutes. The tasks trust the one proxy in front of them (the ALB) for the client's
address, which their own per-address limits use."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from twotier_infra.alarms import add_alarms, app_metric
from twotier_infra.data_tier import DataTier, DataTierProps
from twotier_infra.follower import Follower

PORT = 8000


@dataclass(frozen=True)
class ContainerProps:
    image: str  # the image built from infra/Dockerfile and pushed (e.g. to ECR)
    # HTTPS: an ACM certificate's ARN, or a domain name and its Route 53 hosted zone (a
    # certificate is then made, validated by DNS, and the name pointed at the ALB).
    certificate_arn: str | None = None
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None
    waf_rate_limit: int = 2000  # requests per client address per 5 minutes (WAF's window)
    cpu: int = 1024  # 1 vCPU: one worker per vCPU
    memory_mib: int | None = None  # default: 2 MiB per CPU unit, valid for every Fargate size
    min_tasks: int = 2
    max_tasks: int = 10
    target_cpu_percent: int = 60
    requests_per_task: int = 2000  # ALB requests per target per minute before scaling out
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    min_hit_ratio: float = 0.8
    data: DataTierProps = field(default_factory=DataTierProps)


class ContainerStack(Stack):
    def __init__(
        self, scope: Construct, name: str, props: ContainerProps, **kwargs: object
    ) -> None:
        super().__init__(scope, name, **kwargs)  # type: ignore[arg-type]
        certificate, domain = _https(self, props)
        data = DataTier(self, "Data", props.data)
        cluster = ecs.Cluster(self, "Cluster", vpc=data.vpc, container_insights=True)
        image = ecs.ContainerImage.from_registry(props.image)
        workers = max(1, props.cpu // 1024)
        service = ecs_patterns.ApplicationLoadBalancedFargateService(
            self,
            "Service",
            cluster=cluster,
            cpu=props.cpu,
            memory_limit_mib=props.memory_mib or 2 * props.cpu,
            desired_count=props.min_tasks,
            public_load_balancer=True,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificate=certificate,
            domain_name=props.domain_name if domain is not None else None,
            domain_zone=domain,
            redirect_http=True,  # port 80: a redirect to HTTPS, nothing served
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            task_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[data.app_security_group],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            task_image_options=ecs_patterns.ApplicationLoadBalancedTaskImageOptions(
                image=image,
                container_port=PORT,
                environment=data.database_environment()
                | {
                    "TWOTIER_PORT": str(PORT),
                    "TWOTIER_WORKERS": str(workers),
                    # The ALB adds the client's address to X-Forwarded-For: one proxy.
                    "TWOTIER_TRUSTED_PROXY_HOPS": "1",
                    # Metrics (readiness among them) as EMF lines for CloudWatch.
                    "TWOTIER_EMF_EVERY": "60",
                },
                log_driver=ecs.LogDrivers.aws_logs(
                    stream_prefix="twotier", log_retention=props.log_retention
                ),
            ),
        )
        role = service.task_definition.task_role
        data.grant_database(role)
        container = service.task_definition.default_container
        assert container is not None
        # The cache's URL and its password's secret; and the follower's own user, which the
        # app makes as it starts (Aurora; see follower.py).
        for name, value in (
            data.cache_environment(role) | data.making_the_follower_user(role)
        ).items():
            container.add_environment(name, value)
        # Liveness: a task whose database or cache is down still serves what it can (reads
        # from the cache, or from the database), so replacing it helps nothing; readiness
        # is alarmed on instead (the app's Ready metric).
        service.target_group.configure_health_check(
            path="/healthz", healthy_http_codes="200", interval=Duration.seconds(15)
        )
        _rate_limited(self, service.load_balancer, props.waf_rate_limit)
        service.target_group.set_attribute("deregistration_delay.timeout_seconds", "15")

        scaling = service.service.auto_scale_task_count(
            min_capacity=props.min_tasks, max_capacity=props.max_tasks
        )
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=props.target_cpu_percent)
        scaling.scale_on_request_count(
            "Requests",
            requests_per_target=props.requests_per_task,
            target_group=service.target_group,
        )
        add_alarms(
            self,
            server_errors=service.load_balancer.metrics.http_code_target(
                code=elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=Duration.minutes(1)
            ),
            p99_latency=service.target_group.metrics.target_response_time(
                period=Duration.minutes(1), statistic="p99"
            ),
            latency_threshold=1.0,  # seconds
            min_hit_ratio=props.min_hit_ratio,
        )
        readiness_alarm(self)
        self.service = service
        Follower(
            self,
            "Follower",
            cluster=cluster,
            image=image,
            data=data,
            log_retention=props.log_retention,
        )


def _https(
    stack: Stack, props: ContainerProps
) -> tuple[acm.ICertificate | None, route53.IHostedZone | None]:
    """The certificate the load balancer serves (or the zone one is made and validated in);
    ValueError, in one line, when there is neither: the API is never served in clear."""
    if props.certificate_arn:
        return acm.Certificate.from_certificate_arn(
            stack, "Certificate", props.certificate_arn
        ), None
    if props.domain_name and props.hosted_zone_id and props.hosted_zone_name:
        zone = route53.HostedZone.from_hosted_zone_attributes(
            stack,
            "Zone",
            hosted_zone_id=props.hosted_zone_id,
            zone_name=props.hosted_zone_name,
        )
        return None, zone
    raise ValueError(
        "kind=container serves HTTPS only: give -c certificateArn=<ACM certificate ARN>, or "
        "-c domainName=<name> -c hostedZoneId=<id> -c hostedZoneName=<zone> to have one made"
    )


def _rate_limited(
    scope: Construct, load_balancer: elbv2.IApplicationLoadBalancer, limit: int
) -> None:
    """A WAF web ACL on the load balancer: an address past ``limit`` requests in five
    minutes is blocked until it slows down (before any task sees it)."""
    visibility = wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name="twotier", sampled_requests_enabled=True
    )
    acl = wafv2.CfnWebACL(
        scope,
        "Firewall",
        scope="REGIONAL",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=visibility,
        rules=[
            wafv2.CfnWebACL.RuleProperty(
                name="rate-per-address",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=limit, aggregate_key_type="IP"
                    )
                ),
                visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                    cloud_watch_metrics_enabled=True,
                    metric_name="twotier-rate-per-address",
                    sampled_requests_enabled=True,
                ),
            )
        ],
    )
    wafv2.CfnWebACLAssociation(
        scope,
        "FirewallOnLoadBalancer",
        resource_arn=load_balancer.load_balancer_arn,
        web_acl_arn=acl.attr_arn,
    )


def readiness_alarm(scope: Construct) -> None:
    """A task cannot reach the database or the cache: the app's ``Ready`` (EMF, each
    minute from every worker) at 0, or no line at all (no task reporting): missing data
    breaches."""
    cloudwatch.Alarm(
        scope,
        "Readiness",
        metric=app_metric("Ready", "Minimum", Duration.minutes(2)),
        threshold=1,
        comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        alarm_description="a task cannot reach the database or the cache (readiness)",
        treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
    )
