"""The data tier both stacks share: a VPC, the database (Aurora MySQL or Aurora PostgreSQL
Serverless v2, or DynamoDB tables), ElastiCache Redis: one shard (a primary and its
replicas), several shards (cluster mode: ``cacheShards`` > 1), or ElastiCache Serverless.

Nothing here is reachable from the internet: Aurora and the cache live in isolated subnets,
and their security groups admit only the app's security group; DynamoDB is reached through
a gateway endpoint of the VPC, by a role allowed exactly the calls twotier makes on exactly
its tables and their indexes. Every connection is TLS and verified: Aurora refuses any other
(``require_secure_transport``, ``rds.force_ssl``) and twotier checks its certificate against
the Amazon RDS bundle it carries (``ssl_ca=rds``, ``sslmode=verify-full``); the cache speaks
TLS only and admits one user, ``twotier``, whose password lives in Secrets Manager
(``TWOTIER_CACHE_SECRET_ARN``), its default user off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Aws, Duration, Names, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from twotier.resources import Resource, load_resources
from twotier.store.dynamo_schema import KEYS_TABLE, META_TABLE, resource_table

#: What twotier calls on its DynamoDB tables (and their indexes); ``db init`` also creates
#: and updates tables, which this stack does itself.
DYNAMODB_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)


@dataclass(frozen=True)
class DataTierProps:
    max_azs: int = 2
    nat_gateways: int = 1
    database_name: str = "superhero_db"
    aurora_min_acu: float = 0.5
    aurora_max_acu: float = 4
    aurora_readers: int = 0
    cache_node_type: str = "cache.t4g.small"
    cache_replicas: int = 1  # per shard
    cache_shards: int = 1  # more than one: cluster mode enabled
    cache: str = "nodes"  # or "serverless": ElastiCache Serverless (always cluster mode, TLS)
    removal_policy: RemovalPolicy = RemovalPolicy.SNAPSHOT
    database: str = "aurora"  # Aurora MySQL; or "aurora-postgresql", or "dynamodb"
    resources: str | None = None  # the declaration (TOML) whose tables DynamoDB holds
    table_prefix: str | None = None  # DynamoDB: before every table name (the stack's name)
    # Aurora PostgreSQL: the most WAL a replication slot may hold back (a follower stopped
    # for long), in MB; past it the slot is invalidated and the follower starts again.
    slot_wal_keep_mb: int = 10240


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
        cache_sg = self._admitting_the_app(
            "CacheSecurityGroup", 6379, "twotier Redis: from the app only"
        )

        #: "aurora" (MySQL), "aurora-postgresql" or "dynamodb".
        self.database_engine = props.database
        if props.database not in DATABASES:
            raise ValueError(
                f"database must be one of {', '.join(DATABASES)}, not {props.database!r}"
            )
        self.database_secret: secretsmanager.ISecret | None = None
        self.follower_secret: secretsmanager.ISecret | None = None
        self.tables: list[dynamodb.Table] = []
        self.streamed_tables: list[dynamodb.Table] = []  # the resources': the follower's
        if props.database == "dynamodb":
            self._dynamodb(props)
        else:
            self._aurora(props, isolated)

        if props.cache not in CACHES:
            raise ValueError(f"cache must be one of {', '.join(CACHES)}, not {props.cache!r}")
        if props.cache_shards < 1 or props.cache_replicas < 0:
            raise ValueError("cacheShards must be 1 or more, cacheReplicas 0 or more")
        self.cache: elasticache.CfnReplicationGroup | elasticache.CfnServerlessCache
        cache_subnets = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        users = self._cache_users()
        if props.cache == "serverless":
            self._serverless_cache(cache_subnets.subnet_ids, cache_sg, users)
        else:
            self._cache_nodes(props, cache_subnets.subnet_ids, cache_sg, users)

    def _cache_users(self) -> elasticache.CfnUserGroup:
        """The cache's users: ``twotier`` (its password generated into Secrets Manager,
        read by the app at start-up: TWOTIER_CACHE_SECRET_ARN), and ElastiCache's required
        ``default``, switched off."""
        stem = Names.unique_resource_name(self, max_length=24).lower()
        self.cache_secret = secretsmanager.Secret(
            self,
            "CacheSecret",
            description="twotier: the cache user's password",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": CACHE_USER}),
                generate_string_key="password",
                password_length=40,
                exclude_punctuation=True,  # ElastiCache takes letters and digits as they are
            ),
        )
        twotier = elasticache.CfnUser(
            self,
            "CacheUser",
            engine="redis",
            user_id=f"{stem}-twotier",
            user_name=CACHE_USER,
            access_string="on ~* &* +@all",
            authentication_mode={
                "Type": "password",
                "Passwords": [self.cache_secret.secret_value_from_json("password").unsafe_unwrap()],
            },
        )
        default = elasticache.CfnUser(
            self,
            "CacheDefaultUser",
            engine="redis",
            user_id=f"{stem}-default",
            user_name="default",
            access_string="off -@all",
            no_password_required=True,
        )
        group = elasticache.CfnUserGroup(
            self,
            "CacheUsers",
            engine="redis",
            user_group_id=f"{stem}-users",
            user_ids=[default.user_id, twotier.user_id],
        )
        group.add_dependency(default)
        group.add_dependency(twotier)
        return group

    def _cache_nodes(
        self,
        props: DataTierProps,
        subnet_ids: list[str],
        security_group: ec2.SecurityGroup,
        users: elasticache.CfnUserGroup,
    ) -> None:
        """A replication group: one shard (``rediss://`` its primary endpoint), or with
        cluster mode enabled, ``cache_shards`` shards (``rediss+cluster://`` its
        configuration endpoint); each shard a primary and ``cache_replicas`` replicas,
        failing over on their own across availability zones."""
        subnets = elasticache.CfnSubnetGroup(
            self, "CacheSubnets", description="twotier Redis", subnet_ids=subnet_ids
        )
        clustered = props.cache_shards > 1
        group = elasticache.CfnReplicationGroup(
            self,
            "Cache",
            replication_group_description="twotier cache",
            engine="redis",
            engine_version="7.1",
            cache_node_type=props.cache_node_type,
            num_node_groups=props.cache_shards,
            replicas_per_node_group=props.cache_replicas,
            automatic_failover_enabled=props.cache_replicas > 0 or clustered,
            multi_az_enabled=props.cache_replicas > 0,
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[security_group.security_group_id],
            cluster_mode="enabled" if clustered else None,
            cache_parameter_group_name="default.redis7.cluster.on" if clustered else None,
            user_group_ids=[users.ref],
        )
        group.add_dependency(users)
        self.cache = group
        # TLS always; twotier namespaces its keys, so several stacks may share one cache.
        if clustered:
            self.cache_url = (
                f"rediss+cluster://{group.attr_configuration_end_point_address}:"
                f"{group.attr_configuration_end_point_port}"
            )
        else:
            self.cache_url = (
                f"rediss://{group.attr_primary_end_point_address}:"
                f"{group.attr_primary_end_point_port}/0"
            )

    def _serverless_cache(
        self,
        subnet_ids: list[str],
        security_group: ec2.SecurityGroup,
        users: elasticache.CfnUserGroup,
    ) -> None:
        """ElastiCache Serverless: it scales and fails over by itself, speaks the cluster
        protocol over TLS only, and shows its clients no replicas (so twotier waits for
        none: its durability across its own failovers is the service's)."""
        cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            serverless_cache_name=Names.unique_resource_name(self, max_length=40).lower(),
            engine="redis",
            major_engine_version="7",
            description="twotier cache",
            subnet_ids=subnet_ids,
            security_group_ids=[security_group.security_group_id],
            user_group_id=users.ref,
        )
        cache.add_dependency(users)
        self.cache = cache
        self.cache_url = (
            f"rediss+cluster://{cache.attr_endpoint_address}:{cache.attr_endpoint_port}"
        )

    def _admitting_the_app(self, name: str, port: int, description: str) -> ec2.SecurityGroup:
        """A security group that admits ``port`` from the app's security group only."""
        group = ec2.SecurityGroup(
            self, name, vpc=self.vpc, allow_all_outbound=False, description=description
        )
        group.add_ingress_rule(self.app_security_group, ec2.Port.tcp(port), "app")
        return group

    def _aurora(self, props: DataTierProps, isolated: ec2.SubnetSelection) -> None:
        engine, port, scheme, parameters = _AURORA[props.database]
        if props.database == "aurora-postgresql":
            parameters = parameters | {"max_slot_wal_keep_size": str(props.slot_wal_keep_mb)}
        database_sg = self._admitting_the_app(
            "DatabaseSecurityGroup", port, f"twotier {props.database}: from the app only"
        )
        readers = [
            rds.ClusterInstance.serverless_v2(f"Reader{n}", scale_with_writer=True)
            for n in range(1, props.aurora_readers + 1)
        ]
        self.database = rds.DatabaseCluster(
            self,
            "Database",
            engine=engine,
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
            parameters=parameters,
            backup=rds.BackupProps(retention=Duration.days(7)),
            deletion_protection=props.removal_policy is not RemovalPolicy.DESTROY,
            removal_policy=props.removal_policy,
        )
        assert self.database.secret is not None
        self.database_secret = self.database.secret
        # Verified TLS: the server's certificate against the Amazon RDS bundle twotier
        # carries (sql_tls), the cluster refusing any plain connection (its parameters).
        tls = "ssl_ca=rds" if scheme == "mysql" else "sslmode=verify-full&sslrootcert=rds"
        self.database_url = (
            f"{scheme}://{self.database.cluster_endpoint.hostname}/{props.database_name}?{tls}"
        )
        # The follower's own user: the app makes it with this secret's password and only the
        # replication privileges (TWOTIER_FOLLOWER_SECRET_ARN); the follower connects as it.
        self.follower_secret = rds.DatabaseSecret(
            self,
            "FollowerSecret",
            username=FOLLOWER_USER,
            master_secret=self.database.secret,
            exclude_characters=" %+~`#$&*()|[]{}:;<>?!'/@\"\\",
        ).attach(self.database)

    def _dynamodb(self, props: DataTierProps) -> None:
        """One table per declared resource (the design ``twotier db init`` makes:
        ``store/dynamo_schema``), the API keys' and the counters' tables, and a gateway
        endpoint so the app reaches them without the internet."""
        prefix = props.table_prefix
        if prefix is None:
            prefix = f"{Stack.of(self).stack_name}-"
        self.vpc.add_gateway_endpoint(
            "DynamoDbEndpoint",
            service=ec2.GatewayVpcEndpointAwsService.DYNAMODB,
            subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
        )
        declared: tuple[Resource, ...] = load_resources(props.resources)
        for resource in declared:
            spec = resource_table(resource, prefix + resource.table)
            table = self._table(resource.name, spec, props, stream=True)
            self.tables.append(table)
            self.streamed_tables.append(table)
        for name, key in ((KEYS_TABLE, "id"), (META_TABLE, "name")):
            spec = {
                "TableName": prefix + name,
                "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
            }
            self.tables.append(self._table(name, spec, props, stream=False))
        self.database_url = f"dynamodb://?region={Aws.REGION}&table_prefix={prefix}"

    def _table(
        self, name: str, spec: dict[str, object], props: DataTierProps, *, stream: bool
    ) -> dynamodb.Table:
        types = {
            a["AttributeName"]: _ATTRIBUTE_TYPES[a["AttributeType"]]
            for a in spec["AttributeDefinitions"]  # type: ignore[attr-defined]
        }

        def attribute(key_schema: list[dict[str, str]], kind: str) -> dynamodb.Attribute | None:
            found = [k["AttributeName"] for k in key_schema if k["KeyType"] == kind]
            return dynamodb.Attribute(name=found[0], type=types[found[0]]) if found else None

        keep = props.removal_policy is not RemovalPolicy.DESTROY
        table = dynamodb.Table(
            self,
            f"Table-{name}",
            table_name=str(spec["TableName"]),
            partition_key=attribute(spec["KeySchema"], "HASH"),  # type: ignore[arg-type]
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=keep,
            # Every change, old and new image, for the change-log follower.
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES if stream else None,
            removal_policy=RemovalPolicy.RETAIN if keep else RemovalPolicy.DESTROY,
        )
        for index in spec.get("GlobalSecondaryIndexes", []):  # type: ignore[attr-defined]
            table.add_global_secondary_index(
                index_name=index["IndexName"],
                partition_key=attribute(index["KeySchema"], "HASH"),
                sort_key=attribute(index["KeySchema"], "RANGE"),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table

    def database_environment(self) -> dict[str, str]:
        """What the app needs to find the database (never a password)."""
        environment = {"TWOTIER_DATABASE_URL": self.database_url}
        if self.database_secret is not None:
            environment["TWOTIER_DATABASE_SECRET_ARN"] = self.database_secret.secret_arn
        return environment

    def cache_environment(self, grantee: iam.IGrantable) -> dict[str, str]:
        """What a process needs to reach the cache (the URL, and the secret of its
        password, which ``grantee`` may then read); never the password itself."""
        self.cache_secret.grant_read(grantee)
        return {
            "TWOTIER_CACHE_URL": self.cache_url,
            "TWOTIER_CACHE_SECRET_ARN": self.cache_secret.secret_arn,
        }

    def follower_environment(self) -> dict[str, str]:
        """What the follower needs to find the database: on Aurora, its own user's secret
        (the replication privileges, nothing else)."""
        if self.follower_secret is None:
            return self.database_environment()
        return {
            "TWOTIER_DATABASE_URL": self.database_url,
            "TWOTIER_DATABASE_SECRET_ARN": self.follower_secret.secret_arn,
        }

    def grant_following(self, grantee: iam.IGrantable) -> None:
        """Let the follower read the database's change log: on Aurora, its own user's
        secret alone; with DynamoDB, twotier's calls and the resource tables' streams."""
        if self.follower_secret is not None:
            self.follower_secret.grant_read(grantee)
            return
        self.grant_database(grantee)
        for table in self.streamed_tables:
            table.grant_stream_read(grantee)

    def making_the_follower_user(self, grantee: iam.IGrantable) -> dict[str, str]:
        """Let the app make the follower's user (on Aurora): read its secret; the
        environment that tells the app to."""
        if self.follower_secret is None:
            return {}
        self.follower_secret.grant_read(grantee)
        return {
            "TWOTIER_FOLLOWER_SECRET_ARN": self.follower_secret.secret_arn,
            # MySQL: the follower connects from inside the VPC, never from elsewhere.
            "TWOTIER_FOLLOWER_HOST": self.vpc.vpc_cidr_block,
        }

    def grant_database(self, grantee: iam.IGrantable) -> None:
        """Let the app use the database: read the Aurora secret, or make twotier's calls on
        its DynamoDB tables and their indexes (nothing else, nowhere else)."""
        if self.database_secret is not None:
            self.database_secret.grant_read(grantee)
        for table in self.tables:
            table.grant(grantee, *DYNAMODB_ACTIONS)


#: The follower's own database user (docs/operations.md).
FOLLOWER_USER = "twotier_follower"
#: The cache's user (its password in the cache secret).
CACHE_USER = "twotier"

#: Each Aurora engine: its engine, port, URL scheme and the cluster parameters the
#: change-log follower needs (docs/operations.md).
_AURORA: dict[str, tuple[rds.IClusterEngine, int, str, dict[str, str]]] = {
    # Every row whole, with its column names, in the binlog; and twotier's version
    # triggers, which a user without SUPER may create only with
    # log_bin_trust_function_creators.
    "aurora": (
        rds.DatabaseClusterEngine.aurora_mysql(version=rds.AuroraMysqlEngineVersion.VER_3_08_0),
        3306,
        "mysql",
        {
            "binlog_format": "ROW",
            "binlog_row_image": "full",
            "binlog_row_metadata": "full",
            "log_bin_trust_function_creators": "1",
            "require_secure_transport": "ON",  # TLS, or no connection at all
        },
    ),
    # Logical decoding (wal_level=logical), which the follower reads from its slot.
    "aurora-postgresql": (
        rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_16_8),
        5432,
        "postgresql",
        {"rds.logical_replication": "1", "rds.force_ssl": "1"},
    ),
}
DATABASES = (*_AURORA, "dynamodb")

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
}
#: The cache's shapes: ElastiCache nodes (a replication group, clustered when it has more
#: than one shard), or ElastiCache Serverless.
CACHES = ("nodes", "serverless")
