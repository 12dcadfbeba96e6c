"""The container stack: an Application Load Balancer -> ECS Fargate tasks -> the data tier;
beside them, the change-log follower (``follower``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from constructs import Construct

from twotier_infra.alarms import add_alarms
from twotier_infra.data_tier import DataTier, DataTierProps
from twotier_infra.follower import Follower

PORT = 8000


@dataclass(frozen=True)
class ContainerProps:
    image: str  # the image built from infra/Dockerfile and pushed (e.g. to ECR)
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
            task_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[data.app_security_group],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            task_image_options=ecs_patterns.ApplicationLoadBalancedTaskImageOptions(
                image=image,
                container_port=PORT,
                environment=data.database_environment()
                | {
                    "TWOTIER_CACHE_URL": data.cache_url,
                    "TWOTIER_PORT": str(PORT),
                    "TWOTIER_WORKERS": str(workers),
                },
                log_driver=ecs.LogDrivers.aws_logs(
                    stream_prefix="twotier", log_retention=props.log_retention
                ),
            ),
        )
        data.grant_database(service.task_definition.task_role)
        # The app makes the follower's own user as it starts (Aurora; see follower.py).
        container = service.task_definition.default_container
        assert container is not None
        for name, value in data.making_the_follower_user(service.task_definition.task_role).items():
            container.add_environment(name, value)
        # Ready means the database and the cache answer (the image's HEALTHCHECK is liveness).
        service.target_group.configure_health_check(
            path="/readyz", healthy_http_codes="200", interval=Duration.seconds(15)
        )
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
        self.service = service
        Follower(
            self,
            "Follower",
            cluster=cluster,
            image=image,
            data=data,
            log_retention=props.log_retention,
        )
