"""A circuit breaker, so that a dead cache costs no timeout per request."""

from __future__ import annotations

import time
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``threshold`` failures in a row; after ``cooldown`` seconds lets one try."""

    def __init__(self, threshold: int = 3, cooldown: float = 2.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_at = 0.0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if time.monotonic() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def closed(self) -> bool:
        return self._opened_at is None

    def allows(self) -> bool:
        """Whether a call may go to the cache now. Half-open lets one trial per cooldown."""
        if self._opened_at is None:
            return True
        now = time.monotonic()
        if now - self._opened_at < self.cooldown or now - self._trial_at < self.cooldown:
            return False
        self._trial_at = now
        return True

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failed(self) -> None:
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = time.monotonic()
