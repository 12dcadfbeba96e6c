"""What the load generators send: Zipf-distributed keys of one resource, a read/write mix."""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from string import Template
from urllib.parse import quote

import orjson

from twotier.dataset import KeyNumbering
from twotier.resources import Resource


class Zipf:
    """Ranks 1..n with P(k) proportional to 1 / k**skew (rank 1 the hottest)."""

    def __init__(self, n: int, skew: float, rng: random.Random) -> None:
        weights = [1.0 / k**skew for k in range(1, n + 1)]
        total = sum(weights)
        self._cdf = [w / total for w in accumulate(weights)]
        self._rng = rng

    def __call__(self) -> int:
        return min(bisect_left(self._cdf, self._rng.random()), len(self._cdf) - 1) + 1


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


_NUMBERS = KeyNumbering("%d")  # an automatic id: the row's number


@dataclass(frozen=True)
class KeyMix:
    """GET /{resource}/{key} for the keys of rows 1..keys (``numbering``) drawn from
    Zipf(skew); a share of PATCHes, each with one of ``patches`` as its body."""

    keys: int
    path: str = "/heroes/"
    numbering: KeyNumbering = _NUMBERS
    patches: tuple[bytes, ...] = (b'{"xp": 5}',)
    skew: float = 1.1
    write_ratio: float = 0.0
    bypass: bool = False
    seed: int = 0
    api_key: str = ""  # sent with the writes and the reads that skip the cache (X-API-Key)

    def read_headers(self) -> dict[str, str]:
        """Nothing for a cached read; a read that skips the cache says so, with the key: one
        without it spends a small budget that all keyless clients share, then gets 429."""
        if not self.bypass:
            return {}
        headers = {"Cache-Control": "no-cache"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers

    def write_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers

    def sampler(self) -> Zipf:
        return Zipf(self.keys, self.skew, random.Random(self.seed))

    def requests(self) -> RequestStream:
        return RequestStream(self)

    def lua(self) -> str:
        """The same mix as a wrk script; ``done`` prints the summary as one JSON line."""
        bodies = "{" + ", ".join(_lua_string(body.decode()) for body in self.patches) + "}"
        return (
            _KEY_MIX.substitute(
                n=self.keys,
                skew=self.skew,
                write_ratio=self.write_ratio,
                headers=_lua_table(self.read_headers()),
                write_headers=_lua_table(self.write_headers()),
                seed=self.seed,
                prefix=_lua_string(self.path),
                form=_lua_string(self.numbering.form),
                offset=self.numbering.offset,
                cut=self.numbering.cut or 0,
                bodies=bodies,
            )
            + _DONE
        )


class RequestStream:
    def __init__(self, mix: KeyMix) -> None:
        self._mix = mix
        self._zipf = mix.sampler()
        self._rng = random.Random(mix.seed + 1)
        self._get_headers = mix.read_headers()

    def __call__(self) -> Request:
        path = f"{self._mix.path}{quote(str(self._mix.numbering.key(self._zipf())), safe='')}"
        if self._mix.write_ratio and self._rng.random() < self._mix.write_ratio:
            body = self._rng.choice(self._mix.patches)
            return Request("PATCH", path, self._mix.write_headers(), body)
        return Request("GET", path, self._get_headers)


def patches(resource: Resource, count: int = 64, seed: int = 0) -> tuple[bytes, ...]:
    """PATCH bodies for the bench: each sets the resource's first lookup field (else its
    first field that is not the key) to a generated value."""
    rng = random.Random(seed)
    changeable = [spec.name for spec in resource.changeable]
    name = next((f for f in resource.lookups if f in changeable), changeable[0])
    spec = resource.field(name)
    return tuple(
        orjson.dumps({name: spec.sample(rng)}, option=orjson.OPT_UTC_Z) for _ in range(count)
    )


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"


def fixed(path: str) -> Request:
    return Request("GET", path, {})


def fixed_lua(path: str) -> str:
    return f'request = function() return wrk.format("GET", "{path}") end\n' + _DONE


def writes_lua(method: str, path: str, keys: int, body: bytes, headers: dict[str, str]) -> str:
    """``method`` with one ``body``: to ``path`` (POST), or to ``path`` + a key drawn
    uniformly from 1..keys (``keys`` > 0: PUT to existing rows)."""
    target = f"{_lua_string(path)} .. math.random(1, {keys})" if keys else _lua_string(path)
    return (
        f"local headers = {_lua_table(headers)}\n"
        f"local body = {_lua_string(body.decode())}\n"
        f'request = function() return wrk.format("{method}", {target}, headers, body) end\n' + _DONE
    )


PERCENTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99)

# Lua has no use for "$", so string.Template placeholders stay unambiguous.
_KEY_MIX = Template("""
local n, skew, write_ratio = $n, $skew, $write_ratio
local get_headers = $headers
local write_headers = $write_headers
local prefix, form, offset, cut = $prefix, $form, $offset, $cut
local bodies = $bodies
local cdf = {}
if skew > 0 then  -- skew 0: uniform, drawn directly (a million-entry table costs seconds)
  local total = 0
  for k = 1, n do total = total + 1 / (k ^ skew); cdf[k] = total end
  for k = 1, n do cdf[k] = cdf[k] / total end
end
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("number", threads) end
init = function(args) math.randomseed($seed + (number or 0) * 7919) end
local function zipf()
  if skew == 0 then return math.random(1, n) end
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end
local function key(rank)
  if form == "%d" then return rank + offset end  -- a number: concatenated as it is, cheaply
  local text = string.format(form, rank + offset)
  if cut > 0 then text = string.sub(text, -cut) end
  return text
end
request = function()
  local path = prefix .. key(zipf())
  if write_ratio > 0 and math.random() < write_ratio then
    return wrk.format("PATCH", path, write_headers, bodies[math.random(1, #bodies)])
  end
  return wrk.format("GET", path, get_headers)
end
""")

_DONE = Template("""
done = function(summary, latency, requests)
  local e = summary.errors
  local cdf = {}
  for _, p in ipairs({$percentiles}) do
    cdf[#cdf + 1] = string.format("[%s, %d]", p, latency:percentile(p))
  end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, ' ..
    '"mean_us": %f, "max_us": %d, "cdf_us": [%s]}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency.mean, latency.max, table.concat(cdf, ", ")))
end
""").substitute(percentiles=", ".join(str(p) for p in PERCENTILES))
