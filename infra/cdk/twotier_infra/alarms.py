"""The alarms worth having on any twotier deployment: 5xx answers, p99 latency, hit ratio."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

#: Where the app's EMF lines put its metrics (``twotier.emf``).
NAMESPACE = "twotier"


def app_metric(name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
    """One of the app's own metrics (EMF, written by its servers, functions and followers)."""
    return cloudwatch.Metric(
        namespace=NAMESPACE, metric_name=name, statistic=statistic, period=period
    )


def add_alarms(
    scope: Construct,
    *,
    server_errors: cloudwatch.IMetric,
    p99_latency: cloudwatch.IMetric,
    latency_threshold: float,
    min_hit_ratio: float,
) -> None:
    cloudwatch.Alarm(
        scope,
        "ServerErrors",
        metric=server_errors,
        threshold=5,
        evaluation_periods=3,
        alarm_description="HTTP 5xx answers",
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    cloudwatch.Alarm(
        scope,
        "Latency",
        metric=p99_latency,
        threshold=latency_threshold,
        evaluation_periods=5,
        alarm_description="p99 latency above its threshold",
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    period = Duration.minutes(5)
    hits = app_metric("CacheHits", "Sum", period)
    misses = app_metric("CacheMisses", "Sum", period)
    cloudwatch.Alarm(
        scope,
        "CacheHitRatio",
        metric=cloudwatch.MathExpression(
            expression="hits / (hits + misses)",
            using_metrics={"hits": hits, "misses": misses},
            period=period,
        ),
        threshold=min_hit_ratio,
        evaluation_periods=3,
        comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        alarm_description="cache hit ratio below the expected share",
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
