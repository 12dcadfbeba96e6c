"""What the load generators send: Zipf-distributed ids, a read/write mix."""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from string import Template

import orjson


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


@dataclass(frozen=True)
class HeroMix:
    """GET /heroes/{id} for ids 1..ids drawn from Zipf(skew); a share of PATCHes."""

    ids: int
    skew: float = 1.1
    write_ratio: float = 0.0
    bypass: bool = False
    seed: int = 0
    api_key: str = ""  # sent with the writes (X-API-Key)

    def write_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers

    def sampler(self) -> Zipf:
        return Zipf(self.ids, self.skew, random.Random(self.seed))

    def requests(self) -> RequestStream:
        return RequestStream(self)

    def lua(self) -> str:
        """The same mix as a wrk script; ``done`` prints the summary as one JSON line."""
        headers = {"Cache-Control": "no-cache"} if self.bypass else {}
        return (
            _HERO_MIX.substitute(
                n=self.ids,
                skew=self.skew,
                write_ratio=self.write_ratio,
                headers=_lua_table(headers),
                write_headers=_lua_table(self.write_headers()),
                seed=self.seed,
            )
            + _DONE
        )


class RequestStream:
    def __init__(self, mix: HeroMix) -> None:
        self._mix = mix
        self._zipf = mix.sampler()
        self._rng = random.Random(mix.seed + 1)
        self._get_headers = {"Cache-Control": "no-cache"} if mix.bypass else {}

    def __call__(self) -> Request:
        hero_id = self._zipf()
        if self._mix.write_ratio and self._rng.random() < self._mix.write_ratio:
            body = orjson.dumps({"xp": self._rng.randrange(10_000)})
            return Request("PATCH", f"/heroes/{hero_id}", self._mix.write_headers(), body)
        return Request("GET", f"/heroes/{hero_id}", self._get_headers)


def _lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"


def fixed(path: str) -> Request:
    return Request("GET", path, {})


def fixed_lua(path: str) -> str:
    return f'request = function() return wrk.format("GET", "{path}") end\n' + _DONE


PERCENTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97.5, 99, 99.5, 99.9, 99.99)

# Lua has no use for "$", so string.Template placeholders stay unambiguous.
_HERO_MIX = Template("""
local n, skew, write_ratio = $n, $skew, $write_ratio
local get_headers = $headers
local write_headers = $write_headers
local cdf = {}
local total = 0
for k = 1, n do total = total + 1 / (k ^ skew); cdf[k] = total end
for k = 1, n do cdf[k] = cdf[k] / total end
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("number", threads) end
init = function(args) math.randomseed($seed + (number or 0) * 7919) end
local function zipf()
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end
request = function()
  local hero_id = zipf()
  if write_ratio > 0 and math.random() < write_ratio then
    return wrk.format("PATCH", "/heroes/" .. hero_id, write_headers,
      '{"xp": ' .. math.random(0, 9999) .. '}')
  end
  return wrk.format("GET", "/heroes/" .. hero_id, get_headers)
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
