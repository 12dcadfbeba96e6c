"""The serverless stack: HTTP API (API Gateway) -> Lambda in the VPC -> the data tier."""

from __future__ import annotations

from dataclasses import dataclass, field

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigateway
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
    # At most this many functions at once (each holds a few database connections); None:
    # Aurora's share, from max_database_connections; DynamoDB's: no cap.
    reserved_concurrency: int | None = None
    # The Aurora cluster's max_connections (SHOW VARIABLES LIKE 'max_connections'): the
    # functions may take four fifths of them, the follower and an operator the rest.
    max_database_connections: int = 100
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
        reserved = props.reserved_concurrency
        if reserved is None and props.data.database != "dynamodb":
            reserved = functions_for(props.max_database_connections)
        function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.X86_64,
            handler="twotier.aws_lambda.handler",
            code=lambda_.Code.from_asset(props.lambda_zip),
            memory_size=props.memory_mb,
            timeout=Duration.seconds(props.timeout_seconds),
            reserved_concurrent_executions=reserved,
            vpc=data.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[data.app_security_group],
            log_group=log_group,
            # One request at a time per function: a pool of one (FUNCTION_CONNECTIONS at
            # most, with its overflow and the driver's own).
            environment=data.database_environment()
            | {
                "TWOTIER_DATABASE_POOL_SIZE": str(POOL_SIZE),
                # pydantic looks for plugins among every installed package's entry points
                # when the first model is made: a cold start's cost for no plugin used.
                "PYDANTIC_DISABLE_PLUGINS": "__all__",
            },
        )
        for name, value in data.cache_environment(function).items():
            function.add_environment(name, value)
        data.grant_database(function)  # the secret, read only; or the tables

        api = apigw.HttpApi(
            self,
            "Api",
            default_integration=HttpLambdaIntegration("Lambda", function),
            create_default_stage=False,
        )
        access_logs = logs.LogGroup(self, "ApiAccessLogs", retention=props.log_retention)
        apigw.HttpStage(
            self,
            "Stage",
            http_api=api,
            stage_name="$default",
            auto_deploy=True,
            access_log_settings=_AccessLogs(access_logs),
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


#: TWOTIER_DATABASE_POOL_SIZE in the function: it serves one request at a time.
POOL_SIZE = 1
#: Database connections one function holds at most: the engine's pool and its overflow, and
#: the driver's own pool (store/sql.py, store/sql_driver.py).
FUNCTION_CONNECTIONS = 3 * POOL_SIZE


def functions_for(max_connections: int) -> int:
    """How many functions may run at once on a cluster of ``max_connections``: four
    fifths of them (the follower, the app's schema work, an operator keep the rest)."""
    return max(1, (max_connections * 4 // 5) // FUNCTION_CONNECTIONS)


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogs:
    """The HTTP API's access log: one JSON line a request (who, what, when, the answer)."""

    def __init__(self, group: logs.ILogGroup) -> None:
        self._group = group

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return apigw.LogGroupLogDestination(self._group)

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return apigateway.AccessLogFormat.json_with_standard_fields(
            caller=False,
            http_method=True,
            ip=True,
            protocol=True,
            request_time=True,
            resource_path=True,
            response_length=True,
            status=True,
            user=False,
        )
