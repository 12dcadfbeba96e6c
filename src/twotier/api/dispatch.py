"""Serving the endpoint table: a request matched to its row, parsed once, answered once.

``Dispatcher`` is the one handler of every row (``api.endpoints``): it finds the row by
method and path, parses the key with the resource's one key validator, converts the query
parameters and validates the body with the row's model (one 422 naming every problem, as
FastAPI words them), calls the handler, and sends its ``Answer`` (a domain error answered
from the one table, ``twotier.problems``).

``Edge`` puts it behind the guards, and keeps the two cheaper ways in for the reads that
need nothing of them (profiled: each layer costs a cached read one or two microseconds):

- a ``GET /{resource}/{key}`` with none of the headers twotier reads, reads open to anyone
  and unlimited, and the row held in this process: answered at once, no coroutine per step;
- a read by key presenting no key and no ``Origin``, reads open: the dispatcher inside
  Observe alone (the access, body and CORS layers would have nothing to decide).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from twotier.access.rules import Access
from twotier.api.body_guard import PARSED_BODY
from twotier.api.endpoints import Call, Endpoint, EndpointTable, Routes
from twotier.api.headers import headers_of, presented_key
from twotier.api.observe import ROUTE_KEY, HeldRead, Observe
from twotier.api.paths import app_path
from twotier.api.responses import Answer, error, found, problem
from twotier.policy import ResourcePolicy
from twotier.problems import DOMAIN_ERRORS
from twotier.resources import Key, Resource
from twotier.service import Service

#: Where the edge leaves the match it made, so the dispatcher does not make it again.
_MATCH = "twotier.match"


def _not_found() -> Answer:
    """A 404 of its own: an answer's headers are a list the layers it passes may extend."""
    return error(404, "Not Found")


class Dispatcher:
    """The ASGI app of the table's rows."""

    def __init__(self, table: EndpointTable) -> None:
        self.table = table
        self._service: Service | None = None
        #: Each resource's policy, once the app serves.
        self.policies: dict[str, ResourcePolicy] = {}

    def serve(self, service: Service) -> None:
        """The service the rows' handlers call (known once the app serves)."""
        self._service = service
        self.policies = {name: service.resource(name) for name in service.resources}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = scope.get(_MATCH) or self.table.match(app_path(scope))
        if match is None:
            await _not_found()(scope, receive, send)
            return
        routes, rest = match
        found = _endpoint(routes, rest, scope["method"])
        if isinstance(found, Answer):
            await found(scope, receive, send)
            return
        endpoint, key_text = found
        scope[ROUTE_KEY] = endpoint.path
        result = await self._serve(endpoint, routes, key_text, scope)
        await result(scope, receive, send)

    async def _serve(
        self, endpoint: Endpoint, routes: Routes, rest: str | None, scope: Scope
    ) -> Answer:
        problems: list[dict[str, Any]] = []
        key: Key | None = None
        resource = routes.resource
        if endpoint.keyed:
            assert resource is not None
            assert rest is not None
            key = resource.parse_key(rest)
            if key is None:
                at = ("path", resource.path_parameter)
                problems.extend(_invalid(resource.key_text, rest, at))
        query = _query(endpoint, scope.get("query_string", b""), problems)
        body: Any = scope.get(PARSED_BODY)
        if endpoint.body is not None:
            if body is None and PARSED_BODY not in scope:
                problems.append({"loc": ["body"], "msg": "Field required", "type": "missing"})
            else:
                try:
                    body = endpoint.body.model_validate(body)
                except ValidationError as invalid:
                    problems.extend(_described(invalid, ("body",)))
        if problems:
            return error(422, problems)
        service = self._service
        assert service is not None, "a request before the app serves"
        policy = self.policies[resource.name] if resource is not None else None
        try:
            call = Call(scope, headers_of(scope), service, policy, key, body, query)
            return await endpoint.handler(call)
        except DOMAIN_ERRORS as refused:
            return problem(refused)


def _endpoint(
    routes: Routes, rest: str | None, method: str
) -> tuple[Endpoint, str | None] | Answer:
    """The row a method and path name, with the key's text in the path, or the 404 or 405
    that says there is none."""
    key: str | None = rest
    if rest is None:
        rows = routes.collection
    elif rest and "/" not in rest and routes.item:
        rows = routes.item
    elif rest and routes.nested:
        key, _, relation = rest.partition("/")
        found = routes.nested.get(relation)
        if not key or found is None:
            return _not_found()
        rows = found
    else:
        return _not_found()
    endpoint = rows.get(method)
    if endpoint is not None:
        return endpoint, key
    allowed = ", ".join(rows)
    return error(405, "Method Not Allowed", [(b"allow", allowed.encode())])


def _query(endpoint: Endpoint, raw: bytes, problems: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's parameters, converted; every other one, or one given twice, a problem."""
    values = {parameter.name: parameter.default for parameter in endpoint.parameters}
    if not raw:
        return values
    takes = {parameter.name: parameter for parameter in endpoint.parameters}
    seen: set[str] = set()
    for name, text in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        parameter = takes.get(name)
        if name in seen:
            if parameter is not None:
                problems.append(_problem(name, "given more than once; give it once", "repeated"))
            continue
        seen.add(name)
        if parameter is None:
            takes_what = (
                f"it takes: {', '.join(takes)}" if takes else "it takes no query parameters"
            )
            why = endpoint.refused.get(name) or f"not a parameter of this path ({takes_what})"
            problems.append(_problem(name, why, "unknown_parameter"))
            continue
        try:
            values[name] = parameter.adapter.validate_python(text)
        except ValidationError as invalid:
            problems.extend(_described(invalid, ("query", name)))
    return values


def _problem(name: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["query", name], "msg": message, "type": kind}


def _invalid(adapter: Any, text: str, at: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        adapter.validate_python(text)
    except ValidationError as invalid:
        return _described(invalid, at)
    return [{"loc": list(at), "msg": "not a valid key", "type": "value_error"}]


def _described(invalid: ValidationError, at: tuple[str, ...]) -> list[dict[str, Any]]:
    """Pydantic's errors as a 422 names them: where (from ``at``), what, which rule; the
    input is not echoed back."""
    return [
        {"loc": [*at, *problem["loc"]], "msg": problem["msg"], "type": problem["type"]}
        for problem in invalid.errors(include_url=False)
    ]


class Edge:
    """The way in of every HTTP request: the table's by one of the cheaper ways for a read
    that needs nothing of the guards, or behind them (``guarded``) like any other."""

    def __init__(self, table: EndpointTable, guarded: ASGIApp, observed: Observe) -> None:
        self.table = table
        self.guarded = guarded
        self.observed = observed
        #: Each resource's held reads, by its routes (the table's own, by identity: they
        #: live as long as the table), and whether reads are open to anyone with no limit:
        #: known once the app serves (``serve``).
        self._holding: dict[int, _Holding] = {}
        self._open = False

    def serve(self, policies: Mapping[str, ResourcePolicy], access: Access) -> None:
        """Each resource's policy and the access rules the app serves with (from its
        start-up, or Lambda's composition)."""
        rules = access.rules
        self._open = not (rules.per_address > 0 or rules.per_key > 0 or rules.reads_need_key)
        self._holding = {
            id(routes): _Holding(resource, policies[name], routes.item["GET"])
            for routes in self.table.routes.values()
            if (resource := routes.resource) is not None
            and (name := resource.name) in policies
            and "GET" in routes.item
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an HTTP request: the table's (its first path segment is a row's, the match
        kept for the dispatcher) by the cheapest way in that may take it, any other behind
        the guards."""
        match = self.table.match(app_path(scope))
        if match is None:
            await self.guarded(scope, receive, send)
            return
        scope[_MATCH] = match
        routes, rest = match
        if (
            self._open
            and scope["method"] == "GET"
            and rest
            and routes.item
            and not scope.get("query_string")
        ):
            headers = headers_of(scope)
            if not headers:
                holding = self._holding.get(id(routes))
                if holding is not None:
                    key = holding.parse_key(rest)
                    entry = None if key is None else holding.held(key)
                    if entry is not None:
                        # Held here: answered now, no coroutine per step.
                        body = entry.body
                        headers_out = found(body, entry.version)
                        await self.observed.answer(scope, send, holding.read, headers_out, body)
                        return
            if b"origin" not in headers and presented_key(headers) is None:
                await self.observed(scope, receive, send)
                return
        await self.guarded(scope, receive, send)


class _Holding:
    """A resource's reads by key the edge answers from this process's cache: its key
    parser, its policy's ``held``, and what those answers are counted under."""

    __slots__ = ("held", "parse_key", "read")

    def __init__(self, resource: Resource, policy: ResourcePolicy, endpoint: Endpoint) -> None:
        self.parse_key = resource.parse_key
        self.held = policy.held
        self.read = HeldRead.of(endpoint.path)


def claimed(scope: Scope) -> bool:
    """Whether the edge took this request for the table."""
    return _MATCH in scope
