"""Superhero data sets in the seed's ``mp6data.csv`` shape, generated deterministically."""

from __future__ import annotations

import random
from collections.abc import Iterator

from twotier.heroes import HeroIn

_SYLLABLES = (
    "al an ar bel cor da el fa gor ha is ja ka lo mi na or pa qui ra sa ta ul va wen".split()
)
_HERO_PREFIXES = "Captain Doctor Iron Night Star Shadow Silver Storm Thunder Mighty".split()
_HERO_SUFFIXES = "Hawk Wolf Blade Fist Storm Spark Shield Arrow Flame Frost Viper Comet".split()
_POWERS = (
    "flight strength speed invisibility telepathy telekinesis healing laser_eyes "
    "shapeshifting time_travel teleport ice fire lightning sonic_scream"
).split()
_COLORS = "red blue green yellow black white purple orange silver gold crimson teal".split()

XP_MAX_DEFAULT = 10_000


def generate(rows: int, seed: int = 0, xp_max: int = XP_MAX_DEFAULT) -> Iterator[HeroIn]:
    """``rows`` heroes, the same for the same ``seed``; every text fits VARCHAR(20)."""
    rng = random.Random(seed)
    for _ in range(rows):
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
        hero = f"{rng.choice(_HERO_PREFIXES)} {rng.choice(_HERO_SUFFIXES)}"
        yield HeroIn(
            name=name[:20],
            hero=hero[:20],
            power=rng.choice(_POWERS),
            xp=rng.randrange(xp_max),
            color=rng.choice(_COLORS),
        )
