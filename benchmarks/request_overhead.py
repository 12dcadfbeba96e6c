"""What one request costs the server, in process: the ASGI app called directly (no
network, no load generator), so the figure is the app's own work. A cached GET by an
integer key (the heroes) and by a text key (a resource with a client-given key), a PATCH
of one row (its body through the body guard, the write, the write-through), /healthz.

    .venv/bin/python benchmarks/request_overhead.py >/dev/null     # access log on (as served)
    TWOTIER_ACCESS_LOG=false .venv/bin/python benchmarks/request_overhead.py >/dev/null

Another tree (an earlier commit) is measured the same way with PYTHONPATH=<tree>/src.
Log lines go to stdout, as a server's do (through the same buffered handler); the figures go to
stderr: microseconds per request, median of 5 rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twotier import logs
from twotier.api.app import create_app
from twotier.config import Settings

ROUNDS, REQUESTS = 5, 20_000


#: The heroes, and a resource keyed by text (declared as any user's would be).
RESOURCES = """
[resources.heroes]
table = "superheroes"
lookups = ["xp"]
[resources.heroes.fields]
name  = { type = "string", max_length = 20 }
hero  = { type = "string", max_length = 20 }
power = { type = "string", max_length = 20 }
xp    = { type = "integer", minimum = 0, maximum = 4294967295 }
color = { type = "string", max_length = 20 }

[resources.products]
key = "sku"
[resources.products.fields]
sku   = { type = "string", max_length = 32 }
name  = { type = "string", max_length = 200 }
stock = { type = "integer", minimum = 0, maximum = 1000000 }
"""


async def measure() -> dict[str, float]:
    work = tempfile.mkdtemp()
    declared = Path(work) / "resources.toml"
    declared.write_text(RESOURCES)  # before the loop serves anything
    settings = Settings(
        database_url=f"sqlite:///{work}/db.sqlite3",
        cache_url="memory://",
        resources=str(declared),
        require_key_for_writes=False,
    )
    app = create_app(settings)
    async with app.api.router.lifespan_context(app.api):
        service = app.state.service
        hero = await service.resource("heroes").create(
            {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}
        )
        await service.resource("products").create({"sku": "LAMP-1", "name": "Lamp", "stock": 1})
        base: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "raw_path": b"",
            "query_string": b"",
            "headers": [(b"host", b"bench"), (b"accept", b"*/*")],
            "client": ("127.0.0.1", 1),
            "server": ("bench", 80),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
            "app": app,
        }

        patch = b'{"stock": 2}'

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def receive_patch() -> dict[str, Any]:
            return {"type": "http.request", "body": patch, "more_body": False}

        async def send(_message: Any) -> None:
            pass

        patching = dict(
            base,
            method="PATCH",
            headers=[
                *base["headers"],
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(patch)),
            ],
        )
        results = {}
        for name, scope, count, received in [
            ("cached GET /heroes/{id}", dict(base, path=f"/heroes/{hero.key}"), REQUESTS, receive),
            ("cached GET /products/{sku}", dict(base, path="/products/LAMP-1"), REQUESTS, receive),
            ("PATCH /products/{sku}", dict(patching, path="/products/LAMP-1"), 2000, receive_patch),
            ("/healthz", dict(base, path="/healthz"), REQUESTS, receive),
        ]:
            rounds = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                for _ in range(count):
                    await app(dict(scope), received, send)
                rounds.append((time.perf_counter() - started) / count * 1e6)
            results[name] = statistics.median(rounds)
        return results


def main() -> None:
    logs.configure("info", buffered=True)
    results = asyncio.run(measure())
    for name, micros in results.items():
        sys.stderr.write(f"{name}: {micros:.1f} us/request\n")


if __name__ == "__main__":
    main()
