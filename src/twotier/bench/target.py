"""The server under test: one the bench starts (and stops), or one at a URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

import httpx

from twotier.access.keys import key_id_of
from twotier.config import get_settings

TWOTIER = str(Path(sys.executable).with_name("twotier"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Target:
    """A server to measure. Started with a fresh cache namespace, so it starts cold, and
    with a write key of its own; a server at a URL takes the key in TWOTIER_API_KEY."""

    def __init__(
        self,
        url: str | None = None,
        *,
        server: str = "granian",
        workers: int = 1,
        env: dict[str, str] | None = None,
        key_role: str = "write",
    ) -> None:
        self._external = url
        self._server = server
        self._workers = workers
        self._process: subprocess.Popen[bytes] | None = None
        self._env = os.environ | (env or {})
        self._key_role = key_role
        self._namespace = ""
        self.url = url.rstrip("/") if url else ""
        self.api_key = self._env.get("TWOTIER_API_KEY", "")

    @property
    def headers(self) -> dict[str, str]:
        """What every request to this server carries: its API key, if there is one."""
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def __enter__(self) -> Target:
        if self._external:
            self._wait_healthy(self.url, timeout=10)
            return self
        port = free_port()
        self._namespace = (
            self._env.get("TWOTIER_CACHE_NAMESPACE") or f"bench-{uuid.uuid4().hex[:8]}"
        )
        env = self._env | {"TWOTIER_CACHE_NAMESPACE": self._namespace}
        self.api_key = self._create_key(env)
        self._process = subprocess.Popen(
            [
                TWOTIER,
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--server",
                self._server,
                "--workers",
                str(self._workers),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        self._wait_healthy(self.url, timeout=60)
        return self

    @staticmethod
    def _keys(env: dict[str, str], *args: str) -> str:
        done = subprocess.run(
            [TWOTIER, "keys", *args], env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"twotier keys {args[0]} failed: {done.stderr[-500:]}")
        return done.stdout.strip()

    def _create_key(self, env: dict[str, str]) -> str:
        return self._keys(env, "create", "--role", self._key_role, "--name", "bench")

    def _revoke_key(self) -> None:
        """Leave no usable key behind in the database measured."""
        key_id = key_id_of(self.api_key)
        if key_id:
            self._keys(self._env, "revoke", key_id)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._forget_namespace()
            self._revoke_key()

    def _forget_namespace(self) -> None:
        forget_keys(self._env.get("TWOTIER_CACHE_URL", get_settings().cache_url), self._namespace)

    def _wait_healthy(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError("the server under test exited at start-up")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no healthy server at {url}")

    def counters(self) -> dict[str, float]:
        """This server's Prometheus counters (summed over labels) by name."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        totals: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("twotier_") and not line.startswith("#"):
                name = line.split("{", 1)[0].split(" ", 1)[0]
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return totals


def forget_keys(cache_url: str, prefix: str) -> None:
    """Leave no bench keys (``prefix:…``) in a shared Redis (or cluster): expiring a million
    of them later would load the next run's Redis."""
    if not cache_url.startswith(("redis", "rediss", "unix")):
        return
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from twotier.cache.redis import RedisCache

    async def forget() -> None:
        cache = RedisCache(cache_url, namespace=prefix, timeout=10)
        try:
            await cache.clear()
        finally:
            await cache.close()

    # On a thread of its own: a caller may be inside a running event loop (a `with
    # Target(...)` in an async test).
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, forget()).result()


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)
