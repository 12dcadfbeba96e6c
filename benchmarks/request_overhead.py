"""What one cached GET /heroes/{id} costs the server, in process: the ASGI app called
directly (no network, no load generator), so the figure is the app's own work.

    .venv/bin/python benchmarks/request_overhead.py >/dev/null     # access log on (as served)
    TWOTIER_ACCESS_LOG=false .venv/bin/python benchmarks/request_overhead.py >/dev/null

Another tree (an earlier commit) is measured the same way with PYTHONPATH=<tree>/src.
Log lines go to stdout, as a server's do (through the same buffered handler); the figures go to
stderr: microseconds per request for the hot path and for /healthz, median of 5 rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from typing import Any

from twotier import logs
from twotier.api.app import create_app
from twotier.config import Settings

ROUNDS, REQUESTS = 5, 20_000


async def measure() -> dict[str, float]:
    work = tempfile.mkdtemp()
    settings = Settings(database_url=f"sqlite:///{work}/db.sqlite3", cache_url="memory://")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        hero = await app.state.service.resource("heroes").create(
            {"name": "Ada", "hero": "Captain Ada", "power": "math", "xp": 5, "color": "blue"}
        )
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

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(_message: Any) -> None:
            pass

        results = {}
        for name, path in [
            ("cached GET /heroes/{id}", f"/heroes/{hero.key}"),
            ("/healthz", "/healthz"),
        ]:
            rounds = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                for _ in range(REQUESTS):
                    await app(dict(base, path=path), receive, send)
                rounds.append((time.perf_counter() - started) / REQUESTS * 1e6)
            results[name] = statistics.median(rounds)
        return results


def main() -> None:
    logs.configure("info", buffered=True)
    results = asyncio.run(measure())
    for name, micros in results.items():
        sys.stderr.write(f"{name}: {micros:.1f} us/request\n")


if __name__ == "__main__":
    main()
