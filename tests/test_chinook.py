"""twotier pointed at a database none of us wrote: Chinook (tests/samples/chinook), on
SQLite, MariaDB and PostgreSQL, as a new user would: `twotier db init` over its tables, then
the API over them, and the user's own application writing beside it all the while.

What it showed once: `db init` answered "schema ready" over SQLite's `[Artist]` declared as
`artist` and left triggers that broke every write of the user's own (`no such column:
OLD.version`); a join table keyed by one of its two columns deleted all fifteen rows of a
playlist on one DELETE; `NUMERIC` prices answered 500 and cached what the database rounded;
ids given around PostgreSQL's sequence made the user's next INSERT fail; and each mistake came
one run at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from tests.chinook import chinook_database
from tests.conftest import cache_url, forget_namespace, make_key, redis_namespace
from tests.samples_check import fingerprint, same
from twotier.api.app import create_app
from twotier.config import Settings

TWOTIER = str(Path(sys.executable).with_name("twotier"))
KINDS = ["sqlite", "mysql", "postgres"]

#: What a new user writes first: three mistakes Chinook invites, one in each table.
NAIVE = {
    "mixed": """
        [resources.playlist_tracks]
        table = "PlaylistTrack"
        key = "PlaylistId"
        [resources.playlist_tracks.fields]
        PlaylistId = { type = "integer", minimum = 1, maximum = 2147483647 }
        TrackId = { type = "integer", minimum = 1, maximum = 2147483647 }

        [resources.invoices]
        table = "Invoice"
        id = { name = "InvoiceId", maximum = 2147483647 }
        [resources.invoices.fields]
        CustomerId = { type = "integer", minimum = 1, maximum = 2147483647 }
        InvoiceDate = { type = "timestamp", precision = 0 }
        Total = "number"

        [resources.albums]
        table = "Album"
        key = "AlbumId"
        [resources.albums.fields]
        AlbumId = { type = "integer", minimum = 1, maximum = 2147483647 }
        Title = { type = "string", max_length = 160 }
        ArtistId = { type = "integer", minimum = 1, maximum = 2147483647 }
    """,
    "snake": """
        [resources.playlist_tracks]
        table = "playlist_track"
        key = "playlist_id"
        [resources.playlist_tracks.fields]
        playlist_id = { type = "integer", minimum = 1, maximum = 2147483647 }
        track_id = { type = "integer", minimum = 1, maximum = 2147483647 }

        [resources.invoices]
        table = "invoice"
        id = { name = "invoice_id", maximum = 2147483647 }
        [resources.invoices.fields]
        customer_id = { type = "integer", minimum = 1, maximum = 2147483647 }
        total = "number"

        [resources.albums]
        table = "album"
        key = "album_id"
        [resources.albums.fields]
        album_id = { type = "integer", minimum = 1, maximum = 2147483647 }
        title = { type = "string", max_length = 160 }
        artist_id = { type = "integer", minimum = 1, maximum = 2147483647 }
    """,
}

#: The same, as the contradictions said to write it (the join table and the invoices wait
#: for keys of two columns and exact decimals).
SERVED = {
    "mixed": """
        [resources.artists]
        table = "ARTIST_TABLE"
        id = { name = "ArtistId", maximum = 2147483647 }
        [resources.artists.fields]
        Name = { type = "string", max_length = 120, nullable = true }

        [resources.albums]
        table = "Album"
        id = { name = "AlbumId", maximum = 2147483647 }
        lookups = ["ArtistId"]
        [resources.albums.fields]
        Title = { type = "string", max_length = 160 }
        ArtistId = { type = "integer", minimum = 1, maximum = 2147483647 }
    """,
    "snake": """
        [resources.artists]
        table = "artist"
        id = { name = "artist_id", maximum = 2147483647 }
        [resources.artists.fields]
        name = { type = "string", max_length = 120, nullable = true }

        [resources.albums]
        table = "album"
        id = { name = "album_id", maximum = 2147483647 }
        lookups = ["artist_id"]
        [resources.albums.fields]
        title = { type = "string", max_length = 160 }
        artist_id = { type = "integer", minimum = 1, maximum = 2147483647 }
    """,
}


def names(kind: str) -> dict[str, str]:
    """Chinook's names on ``kind`` (SQLite and MySQL spell them alike)."""
    if kind == "postgres":
        return {
            "style": "snake",
            "Artist": "artist",
            "Album": "album",
            "ArtistId": "artist_id",
            "AlbumId": "album_id",
            "Name": "name",
            "Title": "title",
            "PlaylistTrack": "playlist_track",
            "PlaylistId": "playlist_id",
        }
    mysql = kind == "mysql"
    left, right = ("`", "`") if mysql else ("[", "]")
    spelled = (
        "Artist",
        "Album",
        "ArtistId",
        "AlbumId",
        "Name",
        "Title",
        "PlaylistTrack",
        "PlaylistId",
    )
    return {"style": "mixed"} | {name: f"{left}{name}{right}" for name in spelled}


class Chinook:
    """Chinook in a database of its own, and what a stranger does with it."""

    def __init__(self, kind: str, url: str, tmp_path: Path) -> None:
        self.kind = kind
        self.url = url
        self.tmp_path = tmp_path
        self.n = names(kind)
        driver = {"sqlite": "sqlite", "postgres": "postgresql+psycopg2", "mysql": "mysql+pymysql"}[
            kind
        ]
        self.engine = create_engine(make_url(url).set(drivername=driver))

    def declare(self, text_: str) -> str:
        path = self.tmp_path / "chinook.toml"
        path.write_text(text_)
        return str(path)

    def twotier(
        self, *args: str, resources: str | None, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
        env |= {"TWOTIER_DATABASE_URL": self.url} | (extra or {})
        if resources is not None:
            env |= {"TWOTIER_RESOURCES": resources}
        return subprocess.run(
            [TWOTIER, *args],
            env=env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def sql(self, statement: str, **values: Any) -> Any:
        """The user's own application: plain SQL, outside twotier."""
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), values)
            return result.all() if result.returns_rows else result.rowcount

    def columns(self, table: str) -> list[str]:
        from sqlalchemy import inspect

        with self.engine.connect() as conn:
            return [c["name"] for c in inspect(conn).get_columns(table)]


@pytest.fixture(params=KINDS)
def chinook(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chinook]:
    kind = str(request.param)
    with chinook_database(kind, tmp_path) as url:
        made = Chinook(kind, url, tmp_path)
        try:
            yield made
        finally:
            made.engine.dispose()


def test_every_contradiction_comes_at_once_and_nothing_changes(chinook: Chinook) -> None:
    naive = chinook.declare(NAIVE[chinook.n["style"]])
    for command in (["db", "init", "--plan"], ["db", "init"]):
        said = chinook.twotier(*command, resources=naive)
        assert said.returncode == 2, said.stderr
        lines = said.stderr.strip().splitlines()
        assert "Traceback" not in said.stderr
        assert lines[-1].endswith("contradictions: nothing was changed"), lines
        joined = "\n".join(lines)
        key, album = (
            ("playlist_id", "album_id") if chinook.kind == "postgres" else ("PlaylistId", "AlbumId")
        )
        assert f"key '{key}' is neither the primary key nor a unique column" in joined
        assert "an exact decimal" in joined  # Total / total
        assert f"column '{album}' takes its values from the database" in joined
        if chinook.kind == "postgres":
            assert "a sequence" in joined
    table = "playlist_track" if chinook.kind == "postgres" else "PlaylistTrack"
    assert "version" not in chinook.columns(table)
    assert "version" not in chinook.columns("album" if chinook.kind == "postgres" else "Album")


def test_served_beside_the_users_own_application(chinook: Chinook) -> None:
    n = chinook.n
    declared = SERVED[n["style"]]
    if chinook.kind != "postgres":
        # SQLite takes every name in any case; MySQL on Linux tells tables apart by case
        # (lower_case_table_names = 0), and says so in the plan.
        case_blind = chinook.declare(declared.replace("ARTIST_TABLE", "artist"))
        planned = chinook.twotier("db", "init", "--plan", resources=case_blind)
        assert planned.returncode == 0, planned.stderr
        # The plan: a script on stdout, a comment line a change.
        if chinook.kind == "mysql":
            assert "beside table Artist: this database tells names apart by case" in planned.stdout
            assert 'declare table = "Artist"' in planned.stdout
        else:
            assert "create table artist" not in planned.stdout
            assert "-- Artist: add column version" in planned.stdout
    served = chinook.declare(
        declared.replace("ARTIST_TABLE", "artist" if chinook.kind == "sqlite" else "Artist")
    )
    planned = chinook.twotier("db", "init", "--plan", resources=served)
    assert planned.returncode == 0, planned.stderr
    assert "add column version" in planned.stdout
    assert "create table" not in planned.stdout.replace("create table twotier_", "")
    made = chinook.twotier("db", "init", resources=served)
    assert made.returncode == 0, made.stderr
    # The user's own application writes as before: the triggers need the column they use.
    chinook.sql(f"INSERT INTO {n['Artist']} ({n['Name']}) VALUES ('Theirs')")
    chinook.sql(f"UPDATE {n['Artist']} SET {n['Name']} = 'Theirs 2' WHERE {n['Name']} = 'Theirs'")
    [(theirs,)] = chinook.sql(
        f"SELECT {n['ArtistId']} FROM {n['Artist']} WHERE {n['Name']} = 'Theirs 2'"
    )
    assert theirs == 276  # Chinook has 275 artists
    assert chinook.sql(f"DELETE FROM {n['Artist']} WHERE {n['ArtistId']} = 276") == 1

    settings = Settings(
        database_url=chinook.url,
        cache_url="memory://" if chinook.kind == "sqlite" else cache_url("redis"),
        cache_namespace=redis_namespace(),
        resources=served,
        follow="off",
    )
    key = make_key(chinook.url, "write")
    artist_id, album_id, title, name = (
        ("artist_id", "album_id", "title", "name")
        if chinook.kind == "postgres"
        else ("ArtistId", "AlbumId", "Title", "Name")
    )
    try:
        with TestClient(create_app(settings), headers={"X-API-Key": key}) as client:
            first = client.get("/albums/1")
            assert first.status_code == 200, first.text
            assert first.json() == {
                album_id: 1,
                title: "For Those About To Rock We Salute You",
                artist_id: 1,
            }
            by_artist = client.get("/albums", params={artist_id: 1}).json()["items"]
            assert [row[album_id] for row in by_artist] == [1, 4]
            refused = client.get("/albums", params={title: "Restless and Wild"})
            assert refused.status_code == 422  # no index serves it

            created = client.post("/artists", json={name: "Ours"})
            assert created.status_code == 201, created.text
            ours = created.json()[artist_id]
            assert ours == 277  # after the user's 276, never one of theirs
            # The user's next insert takes the next id: no duplicate key (PostgreSQL's
            # sequence was gone around when twotier wrote ids itself).
            chinook.sql(f"INSERT INTO {n['Artist']} ({n['Name']}) VALUES ('Theirs 3')")
            [(next_id,)] = chinook.sql(
                f"SELECT {n['ArtistId']} FROM {n['Artist']} WHERE {n['Name']} = 'Theirs 3'"
            )
            assert next_id == 278

            changed = client.put("/albums/1", json=first.json() | {title: "Rock"})
            assert changed.status_code == 200, changed.text
            [(stored,)] = chinook.sql(
                f"SELECT {n['Title']} FROM {n['Album']} WHERE {n['AlbumId']} = 1"
            )
            assert stored == "Rock"
            assert client.get("/albums/1").json()[title] == "Rock"  # the cache agrees

            gone = client.delete(f"/artists/{ours}")
            assert gone.status_code == 204
            assert chinook.sql(
                f"SELECT count(*) FROM {n['Artist']} WHERE {n['ArtistId']} = {ours}"
            ) == [(0,)]
    finally:
        forget_namespace(settings.cache_url, settings.cache_namespace)


def test_a_load_into_a_table_others_point_at_keeps_their_rows(chinook: Chinook) -> None:
    """Albums point at artists: a load of artists updates the existing ones where they are
    (MySQL's LOAD DATA … REPLACE deleted and inserted them again, which their foreign keys
    refuse or cascade), and a --replace, which would empty the table, is refused."""
    n = chinook.n
    served = chinook.declare(
        SERVED[n["style"]].replace(
            "ARTIST_TABLE", "artist" if chinook.kind == "sqlite" else "Artist"
        )
    )
    assert chinook.twotier("db", "init", resources=served).returncode == 0
    data = chinook.tmp_path / "artists.csv"
    data.write_text("1,AC/DC (loaded)\n300,Newcomer\n")
    loaded = chinook.twotier("load", "--resource", "artists", str(data), resources=served)
    assert loaded.returncode == 0, loaded.stderr
    assert chinook.sql(
        f"SELECT {n['Name']} FROM {n['Artist']} WHERE {n['ArtistId']} IN (1, 300) "
        f"ORDER BY {n['ArtistId']}"
    ) == [("AC/DC (loaded)",), ("Newcomer",)]
    assert chinook.sql(f"SELECT count(*) FROM {n['Album']} WHERE {n['ArtistId']} = 1") == [(2,)]
    emptied = chinook.twotier(
        "load", "--replace", "--resource", "artists", str(data), resources=served
    )
    assert emptied.returncode == 2, emptied.stderr
    assert "is referenced by the foreign keys of" in emptied.stderr
    assert chinook.sql(f"SELECT count(*) FROM {n['Artist']}") == [(276,)]


#: What introspection serves of Chinook (resource: table, key's columns), on every database.
INTROSPECTED: dict[str, tuple[str, str | tuple[str, ...]]] = {
    "album": ("Album", "AlbumId"),
    "artist": ("Artist", "ArtistId"),
    "customer": ("Customer", "CustomerId"),
    "employee": ("Employee", "EmployeeId"),
    "genre": ("Genre", "GenreId"),
    "invoice": ("Invoice", "InvoiceId"),
    "invoice_line": ("InvoiceLine", "InvoiceLineId"),
    "media_type": ("MediaType", "MediaTypeId"),
    "playlist": ("Playlist", "PlaylistId"),
    "playlist_track": ("PlaylistTrack", ("PlaylistId", "TrackId")),
    "track": ("Track", "TrackId"),
}


def test_introspected_and_served_as_written(chinook: Chinook) -> None:
    """`db introspect` writes a declaration of Chinook that `db init` adopts and the API
    serves unchanged: every table, the join table by its two-column key, its rows as the
    database's own SQL reads them, lookups from its indexes and foreign keys."""
    out = chinook.tmp_path / "api.toml"
    said = chinook.twotier("db", "introspect", "--out", str(out), resources=None)
    assert said.returncode == 0, said.stderr
    snake = chinook.kind == "postgres"
    assert "11 of 11 tables declared" in said.stderr
    written = out.read_text()
    keyed = '["playlist_id", "track_id"]' if snake else '["PlaylistId", "TrackId"]'
    assert f"key = {keyed}" in written
    # Invoice dates are date-times without a time zone: answered as stored, no offset.
    assert 'type = "local_datetime"' in written
    # Prices are exact decimals, as the columns are.
    assert 'type = "decimal", precision = 10, scale = 2' in written
    before = chinook.twotier("db", "introspect", resources=None).stdout
    made = chinook.twotier("db", "init", resources=str(out))
    assert made.returncode == 0, made.stderr
    # Adopted: the same declaration read again (twotier's version column is its own).
    assert chinook.twotier("db", "introspect", resources=None).stdout == before

    settings = Settings(
        database_url=chinook.url, cache_url="memory://", resources=str(out), follow="off"
    )
    with TestClient(create_app(settings)) as client:
        for resource, (table, key) in INTROSPECTED.items():
            keys = (key,) if isinstance(key, str) else key
            if snake:
                table, keys = _snake(table), tuple(_snake(part) for part in keys)
            order = ", ".join(f'"{part}"' if snake else part for part in keys)
            with chinook.engine.connect() as conn:
                rows = (
                    conn.execute(
                        text(f'SELECT * FROM "{table}" ORDER BY {order} LIMIT 5')
                        if snake
                        else text(f"SELECT * FROM {table} ORDER BY {order} LIMIT 5")
                    )
                    .mappings()
                    .all()
                )
            assert rows, table
            for row in rows:
                named = ",".join(str(row[part]) for part in keys)
                answer = client.get(f"/{resource}/{named}")
                assert answer.status_code == 200, (resource, answer.text)
                served = answer.json()
                for column, value in row.items():
                    if column in served:
                        assert same(served[column], value), (resource, column, value)
        artist_id = "artist_id" if snake else "ArtistId"
        by_artist = client.get("/album", params={artist_id: 1})
        assert by_artist.status_code == 200, by_artist.text  # a lookup, from its index
        assert [row["album_id" if snake else "AlbumId"] for row in by_artist.json()["items"]] == [
            1,
            4,
        ]
        # The join table's rows of one playlist, and of one track: a lookup on each part.
        playlist_id, track_id = ("playlist_id", "track_id") if snake else ("PlaylistId", "TrackId")
        with chinook.engine.connect() as conn:
            quoted = '"playlist_track"' if snake else "PlaylistTrack"
            on = f'"{track_id}"' if snake else track_id
            expected = conn.execute(text(f"SELECT count(*) FROM {quoted} WHERE {on} = 1")).scalar()
        by_track = client.get("/playlist_track", params={track_id: 1, "limit": 100})
        assert by_track.status_code == 200, by_track.text
        assert len(by_track.json()["items"]) == expected
        by_playlist = client.get("/playlist_track", params={playlist_id: 1, "limit": 2})
        assert [row[playlist_id] for row in by_playlist.json()["items"]] == [1, 1]
        # Relations from the foreign keys, as the database's own joins give them.
        album_id, artist_id, name, title = (
            ("album_id", "artist_id", "name", "title")
            if snake
            else ("AlbumId", "ArtistId", "Name", "Title")
        )
        q = (lambda name: f'"{name}"') if snake else (lambda name: name)
        album, artist, track = (q(_snake(t) if snake else t) for t in ("Album", "Artist", "Track"))
        with chinook.engine.connect() as conn:
            joined = conn.execute(
                text(
                    f"SELECT al.{q(album_id)}, ar.{q(name)} FROM {album} al "
                    f"JOIN {artist} ar ON ar.{q(artist_id)} = al.{q(artist_id)} "
                    f"ORDER BY al.{q(album_id)} LIMIT 5"
                )
            ).all()
            tracks = (
                conn.execute(
                    text(f"SELECT {q(name)} FROM {track} WHERE {q(album_id)} = 1 ORDER BY 1")
                )
                .scalars()
                .all()
            )
            titles = (
                conn.execute(
                    text(
                        f"SELECT {q(title)} FROM {album} WHERE {q(artist_id)} = 1 "
                        f"ORDER BY {q(album_id)}"
                    )
                )
                .scalars()
                .all()
            )
        for key, artist_name in joined:
            embedded = client.get(f"/album/{key}", params={"embed": "artist"})
            assert embedded.status_code == 200, embedded.text
            assert embedded.json()["artist"][name] == artist_name
        with_tracks = client.get("/album/1", params={"embed": "artist,track"}).json()
        assert sorted(row[name] for row in with_tracks["track"]["items"]) == sorted(tracks)
        nested = client.get("/artist/1/album")
        assert nested.status_code == 200, nested.text
        assert [row[title] for row in nested.json()["items"]] == titles


def test_detached_as_it_was_found(chinook: Chinook) -> None:
    """`db init --dry-run` prints every statement and runs none; `db detach` takes out
    everything twotier added — the version columns, triggers and functions, its indexes,
    its own tables, the follower's user, publication and replica identities — and every
    row of every table is as it was before `db init`, the catalog too. The user's own
    application writes throughout."""
    n = chinook.n
    follower = f"chinook_follower_{uuid.uuid4().hex[:8]}"
    extra = {"TWOTIER_FOLLOWER_USER": follower, "TWOTIER_FOLLOWER_PASSWORD": "s3cret-follow"}
    if chinook.kind == "sqlite":
        extra = {}  # no users: its follower runs in the server
    before = fingerprint(chinook.engine, chinook.kind)
    out = chinook.tmp_path / "api.toml"
    assert chinook.twotier("db", "introspect", "--out", str(out), resources=None).returncode == 0
    planned = chinook.twotier("db", "init", "--dry-run", resources=str(out), extra=extra)
    assert planned.returncode == 0, planned.stderr
    statements = planned.stdout + planned.stderr
    assert "ADD COLUMN" in statements, statements
    assert "CREATE TRIGGER" in statements
    assert "CREATE TABLE twotier_meta" in statements.replace('"', "").replace("`", "")
    assert fingerprint(chinook.engine, chinook.kind) == before  # a dry run runs nothing

    try:
        made = chinook.twotier("db", "init", resources=str(out), extra=extra)
        assert made.returncode == 0, made.stderr
        assert fingerprint(chinook.engine, chinook.kind) != before
        # The user's own application, while twotier is there: a row in, changed, out.
        chinook.sql(f"INSERT INTO {n['Artist']} ({n['Name']}) VALUES ('Theirs')")
        chinook.sql(f"UPDATE {n['Artist']} SET {n['Name']} = 'Both' WHERE {n['Name']} = 'Theirs'")
        assert chinook.sql(f"DELETE FROM {n['Artist']} WHERE {n['Name']} = 'Both'") == 1

        dry = chinook.twotier("db", "detach", "--dry-run", resources=str(out))
        assert dry.returncode == 0, dry.stderr
        shown = (dry.stdout + dry.stderr).replace('"', "").replace("`", "")
        assert "DROP COLUMN version" in shown, shown
        assert "DROP TRIGGER" in shown
        assert "DROP TABLE twotier_meta" in shown
        if chinook.kind != "sqlite":
            assert f"DROP {'ROLE' if chinook.kind == 'postgres' else 'USER'}" in shown
        if chinook.kind == "postgres":
            assert "DROP PUBLICATION twotier" in shown
            assert "REPLICA IDENTITY DEFAULT" in shown
        assert "version" in chinook.columns(n["Album"].strip("[]`"))  # nothing ran

        detached = chinook.twotier("db", "detach", resources=str(out))
        assert detached.returncode == 0, detached.stderr
        assert fingerprint(chinook.engine, chinook.kind) == before
        assert _follower_exists(chinook, follower) is (None if chinook.kind == "sqlite" else False)
        # The user's own application, after: as before twotier came.
        chinook.sql(f"INSERT INTO {n['Artist']} ({n['Name']}) VALUES ('After')")
        assert chinook.sql(f"DELETE FROM {n['Artist']} WHERE {n['Name']} = 'After'") == 1
        # Nothing more to take out; and it can be adopted again.
        again = chinook.twotier("db", "detach", "--dry-run", resources=str(out))
        assert "nothing of twotier's" in again.stdout + again.stderr
        assert chinook.twotier("db", "init", resources=str(out)).returncode == 0
    finally:
        if chinook.kind == "postgres":
            chinook.sql(f"DROP ROLE IF EXISTS {follower}")
        elif chinook.kind == "mysql":
            chinook.sql(f"DROP USER IF EXISTS '{follower}'@'%'")


def _follower_exists(chinook: Chinook, name: str) -> bool | None:
    """Whether the follower's user is there (None on SQLite, which has no users)."""
    if chinook.kind == "sqlite":
        return None
    query = (
        "SELECT count(*) FROM pg_roles WHERE rolname = :name"
        if chinook.kind == "postgres"
        else "SELECT count(*) FROM mysql.user WHERE User = :name"
    )
    return bool(chinook.sql(query, name=name)[0][0])


def _snake(name: str) -> str:
    from twotier.resources.introspected import resource_name

    return resource_name(name)


@pytest.mark.parametrize("kind", KINDS)
def test_a_dry_run_makes_no_database(kind: str, tmp_path: Path) -> None:
    """`db init --dry-run` over a database that is not there yet makes nothing, not even
    the database (nor SQLite's file): it says it would."""
    from tests.conftest import SERVER_URLS, require

    name = f"twotier_absent_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/absent/{name}.sqlite3"
    else:
        require(kind)
        url = make_url(SERVER_URLS[kind]).set(database=name).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    said = subprocess.run(
        [TWOTIER, "db", "init", "--dry-run"],
        env=env | {"TWOTIER_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert said.returncode == 0, said.stderr
    assert f"create database {name if kind != 'sqlite' else tmp_path}" in said.stdout + said.stderr
    if kind == "sqlite":
        assert not (tmp_path / "absent").exists()
        return
    driver = "postgresql+psycopg2" if kind == "postgres" else "mysql+pymysql"
    server = create_engine(make_url(SERVER_URLS[kind]).set(drivername=driver))
    try:
        with server.connect() as conn:
            query = (
                "SELECT count(*) FROM pg_database WHERE datname = :name"
                if kind == "postgres"
                else "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :name"
            )
            assert conn.execute(text(query), {"name": name}).scalar() == 0
    finally:
        server.dispose()
