"""``/heroes``: the superhero resource over HTTP. Parse, call the policy, map to a status."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from twotier.api.dependencies import API_KEY, PolicyDep, UseCacheDep
from twotier.api.errors import COMMON_ERRORS
from twotier.api.responses import JSON, etag, hero_response
from twotier.config import Settings
from twotier.heroes import NO_NUL, TEXT_MAX, UINT_MAX, Hero, HeroIn, HeroPage, HeroPatch
from twotier.policy import Served
from twotier.store.base import HeroQuery

HeroIdPath = Annotated[int, Path(ge=1, le=UINT_MAX, description="The hero's id.")]
TextFilter = Annotated[str | None, Query(max_length=TEXT_MAX, pattern=NO_NUL)]

_X_CACHE = {
    "X-Cache": {
        "description": "How the read was served: HIT, MISS or BYPASS.",
        "schema": {"type": "string", "enum": ["HIT", "MISS", "BYPASS"]},
    }
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No hero with that id."}}


def _not_found(hero_id: int) -> HTTPException:
    return HTTPException(404, f"hero {hero_id} not found")


def _served(served: Served, status: int = 200) -> Response:
    return Response(served.body, status, {"X-Cache": served.outcome.value}, media_type=JSON)


def heroes_router(settings: Settings) -> APIRouter:
    router = APIRouter(
        prefix="/heroes", tags=["heroes"], responses=COMMON_ERRORS, dependencies=[API_KEY]
    )

    @router.get(
        "/{hero_id}",
        response_model=Hero,
        responses={200: {"headers": _X_CACHE}, **_NOT_FOUND},
        summary="Read one hero (cached)",
    )
    async def read_hero(hero_id: HeroIdPath, policy: PolicyDep, use_cache: UseCacheDep) -> Response:
        # Plain cached reads are answered by api.hot_path in front of this route, alike.
        return hero_response(await policy.read(hero_id, use_cache=use_cache), hero_id)

    @router.get(
        "",
        response_model=HeroPage,
        responses={200: {"headers": _X_CACHE}},
        summary="List heroes, filtered, by id, a page at a time (cached)",
    )
    async def list_heroes(
        policy: PolicyDep,
        use_cache: UseCacheDep,
        xp: Annotated[int | None, Query(ge=0, le=UINT_MAX)] = None,
        name: TextFilter = None,
        hero: TextFilter = None,
        power: TextFilter = None,
        color: TextFilter = None,
        after: Annotated[
            int, Query(ge=0, le=2**63 - 1, description="Only ids above this (`next_after`).")
        ] = 0,
        limit: Annotated[
            int, Query(ge=1, le=settings.page_limit_max, description="Rows per page.")
        ] = settings.page_limit_default,
    ) -> Response:
        filters = {"xp": xp, "name": name, "hero": hero, "power": power, "color": color}
        query = HeroQuery(
            tuple((k, v) for k, v in filters.items() if v is not None), after=after, limit=limit
        )
        return _served(await policy.find(query, use_cache=use_cache))

    @router.post(
        "",
        status_code=201,
        response_model=Hero,
        responses={201: {"headers": {"Location": {"schema": {"type": "string"}}}}},
        summary="Create a hero",
    )
    async def create_hero(hero: HeroIn, policy: PolicyDep, request: Request) -> Response:
        record = await policy.create(hero)
        location = str(request.url_for("read_hero", hero_id=record.id).path)
        headers = {"Location": location, "ETag": etag(record.version)}
        return Response(record.to_json(), 201, headers, media_type=JSON)

    @router.put("/{hero_id}", response_model=Hero, responses=_NOT_FOUND, summary="Replace a hero")
    async def replace_hero(hero_id: HeroIdPath, hero: HeroIn, policy: PolicyDep) -> Response:
        record = await policy.update(hero_id, hero.model_dump())
        if record is None:
            raise _not_found(hero_id)
        return Response(record.to_json(), headers={"ETag": etag(record.version)}, media_type=JSON)

    @router.patch(
        "/{hero_id}", response_model=Hero, responses=_NOT_FOUND, summary="Change some fields"
    )
    async def patch_hero(hero_id: HeroIdPath, patch: HeroPatch, policy: PolicyDep) -> Response:
        changes = patch.changes()
        if not changes:  # an empty merge patch changes nothing: answer the row as it is
            return hero_response(await policy.read(hero_id), hero_id)
        record = await policy.update(hero_id, changes)
        if record is None:
            raise _not_found(hero_id)
        return Response(record.to_json(), headers={"ETag": etag(record.version)}, media_type=JSON)

    @router.delete("/{hero_id}", status_code=204, responses=_NOT_FOUND, summary="Delete a hero")
    async def delete_hero(hero_id: HeroIdPath, policy: PolicyDep) -> Response:
        tombstone = await policy.delete(hero_id)
        if tombstone is None:
            raise _not_found(hero_id)
        return Response(status_code=204, headers={"ETag": etag(tombstone)})

    return router
