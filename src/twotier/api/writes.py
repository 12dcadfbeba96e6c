"""The writes of one row, from validated input to the answer (the endpoints' handlers).

Each takes the resource's policy, the validated body (a model of the resource's), the
``If-Match`` tags (or None) and the app's mount point (for ``Location``); domain errors
(409, 412, 503) are raised for the caller's one error table.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from twotier.api.conditional import Tags
from twotier.api.responses import Answer, answer, error, not_found, read_answer, row_answer
from twotier.errors import VersionMismatch
from twotier.policy import ResourcePolicy
from twotier.resources import Key


def location(root_path: str, name: str, key: Key) -> str:
    """A new row's path (under the app's mount point): its key percent-encoded (a header
    holds only ASCII). Built here: (not Starlette's url_for: a tenth of a POST)."""
    return f"{root_path}/{name}/{quote(str(key), safe=',')}"


async def create(policy: ResourcePolicy, row: BaseModel, root_path: str) -> Answer:
    record = await policy.create(policy.resource.given(row))
    return row_answer(record, 201, location(root_path, policy.resource.name, record.key))


def _other_key(policy: ResourcePolicy, key: Key, body: BaseModel) -> Answer | None:
    """A 422 if the body names another row than the path (a row's key cannot change)."""
    resource = policy.resource
    others = resource.other_key_fields(body, key)
    if not others:
        return None
    return error(
        422,
        [
            {
                "loc": ["body", name],
                "msg": f"{given!r} is not the {name} the path names ({named!r}): a "
                f"{resource.singular}'s {name} cannot change",
                "type": "key_mismatch",
            }
            for name, (given, named) in others.items()
        ],
    )


async def replace(
    policy: ResourcePolicy, key: Key, row: BaseModel, wanted: Tags | None, root_path: str
) -> Answer:
    refused = _other_key(policy, key, row)
    if refused is not None:
        return refused
    resource = policy.resource
    values = resource.given(row, frozenset(resource.key_fields))
    if resource.auto_key or (wanted is not None and wanted.any):
        # No creation here: an automatic key is the database's to give, and If-Match: *
        # asks for a row that exists.
        return await _updated(policy, key, values, wanted)
    created, record = await policy.put(
        key, values, expected=None if wanted is None else wanted.versions
    )
    if created:
        return row_answer(record, 201, location(root_path, resource.name, record.key))
    return row_answer(record)


async def patch(
    policy: ResourcePolicy, key: Key, changes: BaseModel, wanted: Tags | None
) -> Answer:
    refused = _other_key(policy, key, changes)
    if refused is not None:
        return refused
    resource = policy.resource
    given = resource.changes_of(changes)
    if not given:  # an empty merge patch changes nothing: answer the row as it is
        served = await policy.read(key)
        if wanted is not None and not wanted.matches(served.version if served.body else 0):
            raise VersionMismatch(served.version if served.body else 0)
        return read_answer(served, resource, key)
    return await _updated(policy, key, given, wanted)


async def _updated(
    policy: ResourcePolicy, key: Key, changes: dict[str, Any], wanted: Tags | None
) -> Answer:
    """Update a row that must exist (``If-Match: *`` asks for any version of it)."""
    expected = None if wanted is None or wanted.any else wanted.versions
    record = await policy.update(key, changes, expected=expected)
    if record is None:
        if wanted is not None:
            raise VersionMismatch(0)
        return error(404, not_found(policy.resource, key))
    return row_answer(record)


async def delete(policy: ResourcePolicy, key: Key, wanted: Tags | None) -> Answer:
    expected = None if wanted is None or wanted.any else wanted.versions
    tombstone = await policy.delete(key, expected=expected)
    if tombstone is None:
        if wanted is not None:
            raise VersionMismatch(0)
        return error(404, not_found(policy.resource, key))
    return answer(204, version=tombstone)
