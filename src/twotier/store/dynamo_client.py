"""The DynamoDB connection: where it is (``dynamodb://`` URLs), one async client per process
and event loop (aiobotocore), and the service's errors as the store's.

``dynamodb://?region=R&endpoint_url=URL&table_prefix=P``: every parameter optional. The
region falls back to the AWS chain (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile),
then ``us-east-1``; credentials come from the AWS chain (environment, profile, role). A
local server (``endpoint_url`` on loopback: moto, dynalite, DynamoDB Local) takes any
credentials, so when the chain has none there, placeholder ones are used.

Throttling and the service's own faults are retried by botocore (its *standard* mode:
exponential backoff with jitter, ``_ATTEMPTS`` tries in all), within a deadline of
``_ATTEMPTS`` times the database timeout for the whole call; what still fails, and every
connection fault, is ``StoreUnavailable`` (a 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twotier.errors import StoreRefused, StoreUnavailable
from twotier.telemetry import DatabaseTimer

#: Tries per call (the first and the retries) before a throttled or failing call gives up;
#: the whole call, retries and their backoff included, takes at most this many timeouts.
_ATTEMPTS = 3
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_PARAMETERS = frozenset({"region", "endpoint_url", "table_prefix"})

#: Error codes that say the service could not take the call now (after botocore's retries).
UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "LimitExceededException",
        "TransactionInProgressException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "AccessDeniedException",
    }
)


@dataclass(frozen=True)
class DynamoTarget:
    """Where the tables are: a region (or a local endpoint) and a table name prefix."""

    region: str
    endpoint_url: str | None = None
    table_prefix: str = ""

    @property
    def local(self) -> bool:
        """A server on this machine (moto, dynalite, DynamoDB Local)."""
        if self.endpoint_url is None:
            return False
        return urlsplit(self.endpoint_url).hostname in _LOOPBACK

    def table(self, name: str) -> str:
        return self.table_prefix + name


def parse_dynamodb_url(url: str) -> DynamoTarget:
    """The target a ``dynamodb://`` URL names; ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "dynamodb":
        raise ValueError(f"not a DynamoDB URL: {parts.scheme}://")
    if parts.netloc or parts.path not in ("", "/"):
        raise ValueError(
            "a DynamoDB URL names no host or path: dynamodb://?region=R&endpoint_url=URL"
            "&table_prefix=P"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - _PARAMETERS)
    if unknown:
        raise ValueError(
            f"unknown DynamoDB URL parameter(s) {', '.join(unknown)}: "
            "use region, endpoint_url, table_prefix"
        )
    one = {name: values[-1] for name, values in query.items()}
    prefix = one.get("table_prefix", "")
    if prefix and not all(c.isalnum() or c in "_.-" for c in prefix):
        raise ValueError("table_prefix may hold letters, digits, '_', '.' and '-' only")
    region = (
        one.get("region")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or _profile_region()
        or "us-east-1"
    )
    return DynamoTarget(region, one.get("endpoint_url") or None, prefix)


def _profile_region() -> str | None:
    from botocore.session import Session

    region: str | None = Session().get_config_variable("region")
    return region


def error_code(error: Exception) -> str:
    """A botocore ClientError's code ('' for any other error)."""
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


class DynamoClient:
    """One aiobotocore client, made on first use in each event loop and kept until closed
    (a warm Lambda container reuses it across invocations)."""

    def __init__(
        self,
        target: DynamoTarget,
        *,
        pool_size: int = 10,
        timeout: float = 5.0,
        service: str = "dynamodb",
    ) -> None:
        self.target = target
        self._service = service  # or "dynamodbstreams": the tables' change logs
        self._pool_max = max(pool_size, 10)
        self._timeout = timeout
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stack: AsyncExitStack | None = None
        self._opening: asyncio.Lock | None = None
        self._in_flight = 0

    async def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._opening is None or self._loop is not loop:
            self._opening, self._loop, self._client = asyncio.Lock(), loop, None
        async with self._opening:
            if self._client is None:
                self._client = await self._open()
        return self._client

    async def _open(self) -> Any:
        from aiobotocore.config import AioConfig

        session = _session()
        credentials: dict[str, str] = {}
        if self.target.local and await session.get_credentials() is None:
            # A local server checks no signature; the chain has nothing to sign with here.
            credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": _ATTEMPTS},
            connect_timeout=self._timeout,
            read_timeout=self._timeout,
            max_pool_connections=self._pool_max,
        )
        stack = AsyncExitStack()
        client = await stack.enter_async_context(
            session.create_client(
                self._service,
                region_name=self.target.region,
                endpoint_url=self.target.endpoint_url,
                config=config,
                **credentials,
            )
        )
        self._stack = stack
        return client

    async def call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        """One API call (``GetItem``…, by its Python name ``get_item``), timed; service and
        connection faults as StoreUnavailable, other ClientErrors as they are."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._in_flight += 1
        try:
            client = await self.client()
            with DatabaseTimer():
                async with asyncio.timeout(self._timeout * _ATTEMPTS):
                    result: dict[str, Any] = await getattr(client, operation)(**arguments)
                return result
        except ClientError as error:
            code = error_code(error)
            if code in UNAVAILABLE_CODES:
                reason = f"{code}: {_message(error)}"
                raise StoreUnavailable(f"database unavailable: DynamoDB {reason[:200]}") from None
            if code == "ValidationException":  # e.g. an item past 400 KB: a 400, not a 500
                raise StoreRefused(f"DynamoDB refused the call: {_message(error)[:200]}") from None
            raise
        except (TimeoutError, BotoCoreError, OSError) as error:
            reason = f"{type(error).__name__}: {error}"
            raise StoreUnavailable(f"database unavailable: DynamoDB {reason[:200]}") from None
        finally:
            self._in_flight -= 1

    def pool_usage(self) -> dict[str, int]:
        """The HTTP connection pool's slots: calls in flight (each holds a connection), and
        the rest of the pool."""
        in_use = self._in_flight
        return {"in_use": in_use, "idle": max(self._pool_max - in_use, 0)}

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(TimeoutError, RuntimeError):  # a loop gone, a hung close
                await asyncio.wait_for(stack.aclose(), self._timeout)


#: One botocore session per event loop: it loads DynamoDB's service model once (a tenth of a
#: second) for every client made after, and its locks belong to the loop that made them.
_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def _session() -> Any:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None:
        from aiobotocore.session import get_session

        session = _sessions[loop] = get_session()
    return session


def _message(error: Exception) -> str:
    response = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Message", "")) if isinstance(response, dict) else ""
