"""Database credentials from AWS Secrets Manager, so they never sit in configuration.

The secret is the JSON that RDS and Aurora generate (``username``, ``password``, ``host``,
``port``, ``dbname``, ``engine``). It is read once, at start-up; the password goes into the
connection URL and nowhere else (never into a log line).
"""

from __future__ import annotations

import json
from typing import Any

from twotier.store.sql_url import DatabaseURL

_SCHEMES = {
    "mysql": "mysql",
    "aurora-mysql": "mysql",
    "mariadb": "mysql",
    "postgres": "postgresql",
    "aurora-postgresql": "postgresql",
    "postgresql": "postgresql",
}


def database_url_from_secret(secret_arn: str, configured_url: str) -> str:
    """A database URL built from the secret; what the secret leaves out (the engine, the
    database name) comes from ``configured_url``."""
    secret = read_secret(secret_arn, "database", ("username", "password", "host"))
    base = DatabaseURL.parse(configured_url)
    scheme = _SCHEMES.get(str(secret.get("engine", "")), base.drivername)
    url = DatabaseURL(
        scheme,
        username=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret["port"]) if secret.get("port") else None,
        database=secret.get("dbname") or base.database,
        query=base.query,
    )
    return url.render_as_string(hide_password=False)


def read_secret(secret_arn: str, what: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON of a secret, which must hold ``fields``; errors name ``what`` it is for,
    never a value."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as error:
        raise RuntimeError("reading Secrets Manager needs: pip install 'twotier[s3]'") from error
    try:
        answer = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    except (BotoCoreError, ClientError) as error:
        raise RuntimeError(f"cannot read the {what} secret: {type(error).__name__}") from error
    try:
        secret = json.loads(answer["SecretString"])
        if not isinstance(secret, dict) or any(name not in secret for name in fields):
            raise ValueError
    except (KeyError, TypeError, ValueError) as error:
        named = f"{', '.join(fields[:-1])} and {fields[-1]}" if len(fields) > 1 else fields[0]
        raise RuntimeError(f"the {what} secret must be JSON with {named}") from error
    return secret
