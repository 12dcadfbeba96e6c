"""The change-log follower as a small Fargate service (``twotier follow``), beside the app.

Two tasks: one follows, the other holds itself ready and takes over within the lease (5 s)
when the first dies (the lease lives in the cache). They reach the same database and cache
as the app, from the app's security group; on Aurora as a user of their own that may read
the change log and nothing else (its secret the only one they may read; the app makes the
user), with DynamoDB by twotier's calls and the streams' reads on its tables. Their
metrics go to CloudWatch as
EMF lines in their log, and an alarm watches the lag. (The serverless stack on DynamoDB
needs none: the streams invoke its function.)
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from twotier_infra.alarms import app_metric
from twotier_infra.data_tier import DataTier

#: Seconds of lag (the worst minute's) that sound the alarm: writes that bypass twotier
#: reach the cache that late.
LAG_ALARM_SECONDS = 5
#: Seconds the follower holding the lease may go without hearing the change log.
SILENCE_ALARM_SECONDS = 30
#: Bytes of WAL a PostgreSQL follower's slot may hold back before it alarms: half the
#: cluster's bound (DataTierProps.slot_wal_keep_mb, 10 GiB).
RETAINED_ALARM_BYTES = 5 * 1024**3


class Follower(Construct):
    def __init__(
        self,
        scope: Construct,
        name: str,
        *,
        cluster: ecs.ICluster,
        image: ecs.ContainerImage,
        data: DataTier,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, name)
        task = ecs.FargateTaskDefinition(self, "Task", cpu=256, memory_limit_mib=512)
        task.add_container(
            "follower",
            image=image,
            command=["twotier", "follow", "--emf-every", "60"],
            environment=data.follower_environment() | data.cache_environment(task.task_role),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="twotier-follower", log_retention=log_retention
            ),
        )
        data.grant_following(task.task_role)
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task,
            desired_count=2,  # one follows, one stands by
            min_healthy_percent=50,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[data.app_security_group],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )
        lag_alarm(self)
        silence_alarm(self)
        if data.database_engine == "aurora-postgresql":
            retained_alarm(self)


def retained_alarm(scope: Construct) -> None:
    """PostgreSQL: the WAL the follower's slot keeps the cluster from recycling
    (``FollowRetainedBytes``) past half of what the cluster lets a slot hold back
    (``max_slot_wal_keep_size``, past which the slot is lost and the follower starts over,
    emptying the cache). No line at all is the silence alarm's to say."""
    cloudwatch.Alarm(
        scope,
        "Retained",
        metric=app_metric("FollowRetainedBytes", "Maximum", Duration.minutes(5)),
        threshold=RETAINED_ALARM_BYTES,
        evaluation_periods=2,
        alarm_description="the follower's replication slot holds back much WAL (follower "
        "stopped or slow)",
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


def silence_alarm(scope: Construct) -> None:
    """No follower hears the database's change log: ``FollowHeartbeatAge`` (EMF, written
    each minute by the follower holding the lease; every log sends a heartbeat a second)
    over half a minute, or no such line at all (no follower holds the lease, or none
    runs): missing data breaches. The follower itself gives the lease up after five silent
    seconds, so this fires only when no follower can hear the log."""
    cloudwatch.Alarm(
        scope,
        "Silence",
        # A line a minute: two periods never miss both.
        metric=app_metric("FollowHeartbeatAge", "Maximum", Duration.minutes(2)),
        threshold=SILENCE_ALARM_SECONDS,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        alarm_description="no follower hears the database's change log (heartbeat age, or "
        "no follower reporting)",
        treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
    )


def lag_alarm(scope: Construct) -> None:
    """Writes that bypass twotier reach the cache late: ``FollowLag`` (EMF, from the
    follower or the function applying stream records), its worst minute, for 5 minutes."""
    cloudwatch.Alarm(
        scope,
        "Lag",
        metric=app_metric("FollowLag", "Maximum", Duration.minutes(1)),
        threshold=LAG_ALARM_SECONDS * 1000,  # the metric is in milliseconds
        evaluation_periods=5,
        alarm_description="writes that bypass twotier reach the cache late (follower lag)",
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
