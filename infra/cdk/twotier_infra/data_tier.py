"""The data tier both stacks share: a VPC, Aurora MySQL Serverless v2, ElastiCache Redis.

Nothing here is reachable from the internet: the database and the cache live in isolated
subnets, and their security groups admit only the app's security group.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_rds as rds
from constructs import Construct


@dataclass(frozen=True)
class DataTierProps:
    max_azs: int = 2
    nat_gateways: int = 1
    database_name: str = "superhero_db"
    aurora_min_acu: float = 0.5
    aurora_max_acu: float = 4
    aurora_readers: int = 0
    cache_node_type: str = "cache.t4g.small"
    cache_replicas: int = 1
    removal_policy: RemovalPolicy = RemovalPolicy.SNAPSHOT


class DataTier(Construct):
    def __init__(self, scope: Construct, name: str, props: DataTierProps) -> None:
        super().__init__(scope, name)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=props.max_azs,
            nat_gateways=props.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            ],
        )
        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        # The app's security group: the only one the data tier admits.
        self.app_security_group = ec2.SecurityGroup(
            self, "AppSecurityGroup", vpc=self.vpc, description="twotier app"
        )
        database_sg = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="twotier Aurora: MySQL from the app only",
        )
        database_sg.add_ingress_rule(self.app_security_group, ec2.Port.tcp(3306), "app")
        cache_sg = ec2.SecurityGroup(
            self,
            "CacheSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="twotier Redis: from the app only",
        )
        cache_sg.add_ingress_rule(self.app_security_group, ec2.Port.tcp(6379), "app")

        readers = [
            rds.ClusterInstance.serverless_v2(f"Reader{n}", scale_with_writer=True)
            for n in range(1, props.aurora_readers + 1)
        ]
        self.database = rds.DatabaseCluster(
            self,
            "Database",
            engine=rds.DatabaseClusterEngine.aurora_mysql(
                version=rds.AuroraMysqlEngineVersion.VER_3_08_0
            ),
            credentials=rds.Credentials.from_generated_secret("twotier"),
            default_database_name=props.database_name,
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            readers=readers,
            serverless_v2_min_capacity=props.aurora_min_acu,
            serverless_v2_max_capacity=props.aurora_max_acu,
            vpc=self.vpc,
            vpc_subnets=isolated,
            security_groups=[database_sg],
            storage_encrypted=True,
            backup=rds.BackupProps(retention=Duration.days(7)),
            deletion_protection=props.removal_policy is not RemovalPolicy.DESTROY,
            removal_policy=props.removal_policy,
        )
        assert self.database.secret is not None
        self.database_secret = self.database.secret

        subnets = elasticache.CfnSubnetGroup(
            self,
            "CacheSubnets",
            description="twotier Redis",
            subnet_ids=self.vpc.select_subnets(
                subnet_type=ec2.SubnetType.PRIVATE_ISOLATED
            ).subnet_ids,
        )
        self.cache = elasticache.CfnReplicationGroup(
            self,
            "Cache",
            replication_group_description="twotier cache",
            engine="redis",
            cache_node_type=props.cache_node_type,
            num_node_groups=1,
            replicas_per_node_group=props.cache_replicas,
            automatic_failover_enabled=props.cache_replicas > 0,
            multi_az_enabled=props.cache_replicas > 0,
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[cache_sg.security_group_id],
        )
        # rediss:// (TLS); twotier namespaces its keys, so several stacks may share one.
        self.cache_url = (
            f"rediss://{self.cache.attr_primary_end_point_address}:"
            f"{self.cache.attr_primary_end_point_port}/0"
        )
        self.database_url = (
            f"mysql://{self.database.cluster_endpoint.hostname}/{props.database_name}"
        )
