"""The serverless stack: HTTP API (API Gateway) -> Lambda in the VPC -> the data tier."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as lambda_events
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from twotier_infra.alarms import add_alarms
from twotier_infra.data_tier import DataTier, DataTierProps
from twotier_infra.follower import Follower, lag_alarm


@dataclass(frozen=True)
class ServerlessProps:
    lambda_zip: str  # make lambda: dist/twotier-lambda.zip
    memory_mb: int = 1024
    timeout_seconds: int = 15
    reserved_concurrency: int | None = None
    throttle_rate: float = 500  # requests per second, steady
    throttle_burst: int = 1000
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    min_hit_ratio: float = 0.8
    # The image built from infra/Dockerfile: with it and Aurora, the change-log follower runs
    # as a small Fargate service (Lambda cannot hold a binlog connection open). With
    # DynamoDB, the tables' streams invoke the function instead.
    follower_image: str | None = None
    data: DataTierProps = field(default_factory=DataTierProps)


class ServerlessStack(Stack):
    def __init__(
        self, scope: Construct, name: str, props: ServerlessProps, **kwargs: object
    ) -> None:
        super().__init__(scope, name, **kwargs)  # type: ignore[arg-type]
        data = DataTier(self, "Data", props.data)

        log_group = logs.LogGroup(self, "FunctionLogs", retention=props.log_retention)
        function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.X86_64,
            handler="twotier.aws_lambda.handler",
            code=lambda_.Code.from_asset(props.lambda_zip),
            memory_size=props.memory_mb,
            timeout=Duration.seconds(props.timeout_seconds),
            reserved_concurrent_executions=props.reserved_concurrency,
            vpc=data.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[data.app_security_group],
            log_group=log_group,
            environment=data.database_environment() | {"TWOTIER_CACHE_URL": data.cache_url},
        )
        data.grant_database(function)  # the secret, read only; or the tables

        api = apigw.HttpApi(
            self,
            "Api",
            default_integration=HttpLambdaIntegration("Lambda", function),
            create_default_stage=False,
        )
        apigw.HttpStage(
            self,
            "Stage",
            http_api=api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=props.throttle_rate, burst_limit=props.throttle_burst
            ),
        )

        add_alarms(
            self,
            server_errors=api.metric_server_error(period=Duration.minutes(1)),
            p99_latency=api.metric_latency(period=Duration.minutes(1), statistic="p99"),
            latency_threshold=1000,  # ms
            min_hit_ratio=props.min_hit_ratio,
        )
        self.api = api
        self.function = function
        if props.data.database == "dynamodb":
            # The streams invoke the function with their records (aws_lambda applies them
            # as the follower would); a batch the cache did not take is delivered again.
            for table in data.streamed_tables:
                function.add_event_source(
                    lambda_events.DynamoEventSource(
                        table,
                        starting_position=lambda_.StartingPosition.LATEST,
                        batch_size=100,
                        max_batching_window=Duration.seconds(0),
                        retry_attempts=20,
                        report_batch_item_failures=True,
                    )
                )
            lag_alarm(self)
        elif props.follower_image:
            # The function makes the follower's own user as it starts (see follower.py).
            for name, value in data.making_the_follower_user(function).items():
                function.add_environment(name, value)
            Follower(
                self,
                "Follower",
                cluster=ecs.Cluster(self, "Cluster", vpc=data.vpc),
                image=ecs.ContainerImage.from_registry(props.follower_image),
                data=data,
                log_retention=props.log_retention,
            )
