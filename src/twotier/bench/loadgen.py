"""Load generators: wrk where installed (C, never the bottleneck), else aiohttp.

A Python client saturates long before the server does (it would measure itself), so the
figures that matter come from wrk; the aiohttp fallback keeps the bench runnable anywhere.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from twotier.bench.workload import PERCENTILES, Request


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    non_2xx: int
    mean_ms: float
    max_ms: float
    #: (percentile, milliseconds), ascending.
    cdf_ms: list[tuple[float, float]] = field(default_factory=list)
    generator: str = "wrk"

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return next(ms for q, ms in self.cdf_ms if q >= p)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


async def run_wrk(
    url: str, script: str, *, duration: float, connections: int, threads: int = 1
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            lua.name,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
    finally:
        await asyncio.to_thread(Path(lua.name).unlink, missing_ok=True)
    text = output.decode()
    line = next((row for row in text.splitlines() if row.startswith("WRKJSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {text[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=raw["errors"],
        non_2xx=raw["non_2xx"],
        mean_ms=raw["mean_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        cdf_ms=[(float(p), us / 1000) for p, us in raw["cdf_us"]],
    )


async def run_aiohttp(
    url: str, next_request: Callable[[], Request], *, duration: float, connections: int
) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    errors = non_2xx = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(url, connector=connector) as session:
        deadline = loop.time() + duration

        async def worker() -> None:
            nonlocal errors, non_2xx
            while loop.time() < deadline:
                request = next_request()
                started = time.perf_counter()
                try:
                    async with session.request(
                        request.method, request.path, headers=request.headers, data=request.body
                    ) as response:
                        await response.read()
                        if not 200 <= response.status < 300 and response.status != 404:
                            non_2xx += 1
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - started
    latencies.sort()
    count = len(latencies)
    cdf = [(float(p), latencies[min(count - 1, int(count * p / 100))] * 1000) for p in PERCENTILES]
    return LoadResult(
        requests=count,
        seconds=seconds,
        errors=errors,
        non_2xx=non_2xx,
        mean_ms=sum(latencies) / count * 1000 if count else 0.0,
        max_ms=latencies[-1] * 1000 if count else 0.0,
        cdf_ms=cdf if count else [],
        generator="aiohttp",
    )
