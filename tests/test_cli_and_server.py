"""The installed ``twotier`` command, as a new user runs it: a real server process over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import forget_namespace, settings_for
from twotier.bench.target import free_port
from twotier.config import Settings

TWOTIER = str(Path(sys.executable).with_name("twotier"))


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    env.update(
        TWOTIER_DATABASE_URL=settings.database_url,
        TWOTIER_CACHE_URL=settings.cache_url,
        TWOTIER_CACHE_NAMESPACE=settings.cache_namespace,
    )
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWOTIER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def start_server(
    args: list[str], env: dict[str, str], cwd: Path
) -> tuple[subprocess.Popen[str], str]:
    """``twotier serve`` on a free port, once it answers /healthz: the process (its output
    in ``stdout``, for the caller to read after stopping it) and its URL."""
    port = free_port()
    process = subprocess.Popen(
        [TWOTIER, "serve", "--port", str(port), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"the server did not start: {process.communicate()[0]}")


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A served API's URL, and a write key made with `twotier keys create`."""
    store_kind, cache_kind, server_kind = request.param
    env = environment(settings_for(store_kind, cache_kind, tmp_path))
    assert run(["db", "init"], env, tmp_path).returncode == 0
    sample = run(["db", "sample", "--rows", "20"], env, tmp_path)
    assert sample.returncode == 0, sample.stderr
    made = run(["keys", "create", "--role", "write", "--name", "tester"], env, tmp_path)
    assert made.returncode == 0, made.stderr
    process, url = start_server(["--server", server_kind], env, tmp_path)
    try:
        yield url, made.stdout.strip()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "Traceback" not in output, output
        check_json_logs(output)
        # Leave the shared database as it was: drop this test's table.
        import asyncio

        from twotier.store.sql import SQLStore

        async def drop() -> None:
            store = SQLStore(env["TWOTIER_DATABASE_URL"])
            await store.drop_schema()
            await store.close()

        asyncio.run(drop())
        forget_namespace(env["TWOTIER_CACHE_URL"], env["TWOTIER_CACHE_NAMESPACE"])


def check_json_logs(output: str) -> None:
    """Whatever the server, every line it writes is one JSON object; the app says it
    started and logs each request it served."""
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and "level" in line for line in lines), output
    assert any(line["message"] == "started" for line in lines), output
    routes = {line.get("route") for line in lines if line["logger"] == "twotier.access"}
    assert "/healthz" in routes, output


@pytest.mark.parametrize(
    "server",
    [
        ("sqlite", "memory", "granian"),
        ("mysql", "redis", "granian"),
        ("sqlite", "memory", "uvicorn"),
    ],
    indirect=True,
    ids=["embedded", "mysql+redis", "embedded-uvicorn"],
)
def test_a_new_user_session(server: tuple[str, str], request: pytest.FixtureRequest) -> None:
    url, key = server
    first = httpx.get(f"{url}/heroes/1")
    second = httpx.get(f"{url}/heroes/1")
    # `db sample` writes through the cache: a shared one (Redis) holds the rows already;
    # an in-process one belonged to the `db sample` process.
    shared = "redis" in request.node.callspec.id
    assert (first.status_code, first.headers["x-cache"]) == (200, "HIT" if shared else "MISS")
    assert (second.headers["x-cache"], second.json()) == ("HIT", first.json())

    changed = first.json() | {"name": "Renamed"}
    del changed["id"]
    anonymous = httpx.put(f"{url}/heroes/1", json=changed)
    assert anonymous.status_code == 401
    assert "X-API-Key" in anonymous.json()["detail"]
    assert httpx.put(f"{url}/heroes/1", json=changed, headers={"X-API-Key": key}).status_code == 200
    after = httpx.get(f"{url}/heroes/1")
    assert after.json()["name"] == "Renamed"
    assert len(httpx.get(f"{url}/heroes", params={"limit": 50}).json()["items"]) == 20


def test_sample_is_idempotent_and_init_makes_the_sqlite_folder(tmp_path: Path) -> None:
    env = environment(Settings(database_url="sqlite:///./nested/dir/db.sqlite3"))
    assert run(["db", "init"], env, tmp_path).returncode == 0
    assert (tmp_path / "nested/dir/db.sqlite3").exists()
    assert "added 15 sample heroes" in run(["db", "sample", "--rows", "15"], env, tmp_path).stderr
    again = run(["db", "sample", "--rows", "15"], env, tmp_path)
    assert "already holds heroes" in again.stderr


def test_help_explains_every_setting(tmp_path: Path) -> None:
    result = run(["--help"], environment(Settings()), tmp_path)
    assert result.returncode == 0
    for name in Settings.model_fields:
        assert f"TWOTIER_{name.upper()}" in result.stdout
    assert "serve" in result.stdout
    assert "db" in result.stdout


def test_several_workers_need_a_shared_cache(tmp_path: Path) -> None:
    result = run(["serve", "--workers", "2"], environment(Settings()), tmp_path)
    assert result.returncode == 2
    assert "needs a shared cache" in result.stderr


def test_passwords_are_not_printed(tmp_path: Path) -> None:
    env = environment(Settings(database_url="mysql://root:s3cr3t-pw@127.0.0.1:1/superhero_db"))
    result = run(["db", "init"], env, tmp_path)
    assert result.returncode != 0
    assert "s3cr3t-pw" not in result.stdout + result.stderr


def test_a_declaration_that_cannot_be_served_stops_in_one_line(tmp_path: Path) -> None:
    env = environment(settings_for("sqlite", "memory", tmp_path))
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[resources.items]\nlookups = ["colour"]\n[resources.items.fields]\nname = "string"\n'
    )
    for command in (["serve"], ["db", "init"], ["load", "nothing.csv"], ["keys", "list"]):
        result = run(command, env | {"TWOTIER_RESOURCES": str(broken)}, tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        said = result.stderr.strip()
        assert said == f"{broken}: resources.items.lookups: 'colour' is not one of its fields"
    # A declaration the table contradicts: the same, from the database's side.
    assert run(["db", "init"], env, tmp_path).returncode == 0
    shorter = tmp_path / "shorter.toml"
    shorter.write_text(
        (Path(__file__).parent.parent / "src/twotier/resources/heroes.toml")
        .read_text()
        .replace("max_length = 20 }\nhero", "max_length = 30 }\nhero")
    )
    for command in (["db", "init"], ["serve"]):
        result = run(command, env | {"TWOTIER_RESOURCES": str(shorter)}, tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2, lines  # the contradiction, and that nothing was changed
        assert "column 'name' is VARCHAR(20)" in lines[0]
        assert lines[1] == "1 contradiction: nothing was changed"
        assert "Traceback" not in result.stderr


def test_the_log_level_holds_in_the_workers(tmp_path: Path) -> None:
    # At warning, a request writes no access line: the workers take the level given, not
    # one the serving command read before it was set.
    env = environment(settings_for("sqlite", "memory", tmp_path))
    process, url = start_server(["--log-level", "warning"], env, tmp_path)
    try:
        assert httpx.get(f"{url}/heroes/1").status_code == 404
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "twotier.access" not in output
    assert '"level":"INFO"' not in output


def test_a_port_in_use_is_refused_naming_it(tmp_path: Path) -> None:
    """A second server on a port another listens on stops in one line: granian shares a
    port with SO_REUSEPORT, and requests then alternated between the two (404 200 404 …)."""
    env = environment(settings_for("sqlite", "memory", tmp_path))
    assert run(["db", "init"], env, tmp_path).returncode == 0
    process, url = start_server([], env, tmp_path)
    try:
        port = url.rsplit(":", 1)[1]
        second = run(["serve", "--port", port], env, tmp_path)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip() == (
            f"cannot serve on 127.0.0.1:{port}: Address already in use (another server "
            "listens there: stop it, or choose another --port)"
        )
        assert httpx.get(f"{url}/healthz").status_code == 200  # the first one serves on
    finally:
        process.terminate()
        process.communicate(timeout=30)


SHOP = """
[resources.products]
key = "sku"
[resources.products.fields]
sku = { type = "string", max_length = 32 }
name = { type = "string", max_length = 200 }
"""


def test_a_users_tables_get_no_rows_unasked_and_a_file_of_their_own(tmp_path: Path) -> None:
    """`make run` with TWOTIER_RESOURCES naming the user's own tables: nothing is generated
    into them (only a resource that declares `samples` gets rows, or one named with
    --resource), and the embedded database is a file named for the declaration."""
    (tmp_path / "shop.toml").write_text(SHOP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    env["TWOTIER_RESOURCES"] = "shop.toml"
    assert run(["db", "init"], env, tmp_path).returncode == 0
    assert (tmp_path / "var" / "shop.sqlite3").exists()
    assert not (tmp_path / "var" / "superhero_db.sqlite3").exists()
    unasked = run(["db", "sample"], env, tmp_path)
    assert unasked.returncode == 0, unasked.stderr
    assert "no resource asks for sample rows" in unasked.stderr
    asked = run(["db", "sample", "--resource", "products", "--rows", "3"], env, tmp_path)
    assert "added 3 sample products" in asked.stderr
    # The built-in heroes ask for theirs.
    heroes = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    assert run(["db", "init"], heroes, tmp_path).returncode == 0
    assert "added 1000 sample heroes" in run(["db", "sample"], heroes, tmp_path).stderr


def test_make_run_installs_what_serving_needs(tmp_path: Path) -> None:
    """The server and the drivers the tiers need, not the test, bench or CDK toolchains
    (they were 152 packages, 1.3 GB, to serve SQLite): a new virtual environment with
    what `make run` installs serves the embedded default."""
    root = Path(__file__).parent.parent

    def planned(**settings: str) -> str:
        """The line of `make -n run` that installs, with these settings only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
        lines = subprocess.run(
            ["make", "-n", "run"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            env=env | settings,
        ).stdout.splitlines()
        [install] = [line for line in lines if "pip install --quiet -e" in line]
        return install

    assert planned().endswith("-e '.[server]'")
    mysql = planned(TWOTIER_DATABASE_URL="mysql://x/y", TWOTIER_CACHE_URL="redis://z")
    assert mysql.endswith("-e '.[server,mysql,redis]'"), mysql
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "-e", f"{root}[server]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    installed = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for toolchain in ("pytest", "aws-cdk-lib", "matplotlib", "moto", "mypy", "boto3"):
        assert f"{toolchain}==" not in installed, toolchain
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
    twotier = str(venv / "bin/twotier")
    for command in (["db", "init"], ["db", "sample"]):
        done = subprocess.run(
            [twotier, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    port = free_port()
    server = subprocess.Popen(
        [twotier, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/heroes/1", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer.status_code == 200
        bench = subprocess.run(
            [twotier, "bench", "http"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bench.returncode == 2
        assert "twotier bench needs the bench extra" in bench.stderr
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_the_access_log_names_the_documents_route(tmp_path: Path) -> None:
    env = environment(settings_for("sqlite", "memory", tmp_path))
    assert run(["db", "init"], env, tmp_path).returncode == 0
    process, url = start_server([], env, tmp_path)
    try:
        assert httpx.get(f"{url}/openapi.json").status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    lines = [json.loads(line) for line in output.splitlines() if line.strip().startswith("{")]
    routes = [line.get("route") for line in lines if line["logger"] == "twotier.access"]
    assert "/openapi.json" in routes, routes
    assert "unmatched" not in routes


def test_a_load_beside_a_running_server_leaves_nothing_stale(tmp_path: Path) -> None:
    """The embedded default: a server with its in-process cache (and its follower), and a
    `twotier load --replace` from another process. Once the load returns, the server
    answers the loaded rows, and a row the load removed is gone: the load is recorded as
    one change of the whole table, which the server's follower takes (emptying its cache)
    before the load returns. Before, the load dropped the recording triggers and the
    server answered the old row (X-Cache: HIT), and the deleted one, until the TTL."""
    env = environment(settings_for("sqlite", "memory", tmp_path))
    assert run(["db", "init"], env, tmp_path).returncode == 0
    assert run(["db", "sample", "--rows", "5"], env, tmp_path).returncode == 0
    process, url = start_server([], env, tmp_path)
    try:
        for hero_id in (1, 2):
            httpx.get(f"{url}/heroes/{hero_id}")
            assert httpx.get(f"{url}/heroes/{hero_id}").headers["x-cache"] == "HIT"
        data = tmp_path / "new.csv"
        data.write_text("1,Loaded,Hero,power,7,red\n3,Other,Hero,power,8,blue\n")
        loaded = run(["load", "--replace", str(data)], env, tmp_path)
        assert loaded.returncode == 0, loaded.stderr
        assert httpx.get(f"{url}/heroes/1").json()["name"] == "Loaded"
        assert httpx.get(f"{url}/heroes/2").status_code == 404
        assert httpx.get(f"{url}/heroes/3").json()["name"] == "Other"
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_a_server_reports_its_metrics_and_readiness_as_emf(tmp_path: Path) -> None:
    """In a container, CloudWatch reads the server's figures from stdout (EMF): readiness
    (what the CDK stack alarms on, since the load balancer checks only liveness), and the
    cache's hits and misses (its hit-ratio alarm)."""
    env = environment(settings_for("sqlite", "memory", tmp_path))
    assert run(["db", "init"], env, tmp_path).returncode == 0
    process, url = start_server([], env | {"TWOTIER_EMF_EVERY": "0.2"}, tmp_path)
    try:
        for _ in range(2):
            httpx.get(f"{url}/heroes/1")
        time.sleep(0.6)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    documents = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    assert any(document.get("Ready") == 1.0 for document in documents), output
    assert any("CacheHits" in document for document in documents), output


def test_without_the_bench_harness_the_cli_serves_and_says_where_the_bench_is() -> None:
    """The server image and the Lambda package leave ``twotier.bench`` out: every other
    command works, and ``twotier bench`` says in one line why it is not there (exit 2)."""
    hidden = textwrap.dedent(
        """
        import importlib.abc, sys

        class LeftOut(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "twotier.bench" or name.startswith("twotier.bench."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, LeftOut())
        from twotier.cli import app
        app(sys.argv[1:], prog_name="twotier")
        """
    )
    bench = subprocess.run(
        [sys.executable, "-c", hidden, "bench", "http"], capture_output=True, text=True, timeout=60
    )
    assert bench.returncode == 2, bench.stderr
    assert "twotier bench is not in this install" in bench.stderr
    served = subprocess.run(
        [sys.executable, "-c", hidden, "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 0, served.stderr
