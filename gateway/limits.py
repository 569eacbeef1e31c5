"""Per-device rate limits: a token bucket per device (rate per second, burst size)."""

from __future__ import annotations

import time


class RateLimiter:
    """Each device may send ``burst`` messages at once and ``rate`` per second on average."""

    def __init__(self, rate: float, burst: int, max_devices: int = 200_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # device -> (tokens, at)
        self._max_devices = max_devices

    def take(self, device: str, count: int = 1, now: float | None = None) -> float:
        """Take ``count`` tokens (a batch larger than the burst costs a full bucket); 0.0 when
        allowed, else the seconds until it would be."""
        now = time.monotonic() if now is None else now
        need = min(float(count), self.burst)
        tokens, at = self._buckets.get(device, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if need > tokens:
            self._buckets[device] = (tokens, now)
            return (need - tokens) / self.rate
        if len(self._buckets) >= self._max_devices and device not in self._buckets:
            self._forget_full(now)
        self._buckets[device] = (tokens - need, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they hold no information."""
        self._buckets = {
            d: (t, a)
            for d, (t, a) in self._buckets.items()
            if t + (now - a) * self.rate < self.burst
        }
