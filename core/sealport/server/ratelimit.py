"""Token-bucket rate limits per account and per workstation key.

Why buckets and not fixed windows: an artist opening a scene legitimately
fires a burst of requests (catalogue, several deliveries, their payloads),
then nothing for minutes. A bucket allows that burst up to ``burst`` and then
a steady ``rate``; a fixed window would either refuse the burst or let a
scraper through at twice the limit around window edges. The answer for a
refused request carries how long until one token is back (``Retry-After``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBucket:
    """Many independent buckets (one per key), all with the same rate and burst."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("rate limits need per_minute > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of ``key``'s bucket: 0.0 if allowed, else seconds to wait."""
        with self._lock:
            now = self._clock()
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self._max_keys:
                    self._evict_full(now)
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
            if b.tokens >= cost:
                b.tokens -= cost
                return 0.0
            return (cost - b.tokens) / self.rate

    def _evict_full(self, now: float) -> None:
        """Forget buckets that have refilled completely (they hold no state worth keeping)."""
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * self.rate >= self.burst
        ]
        for k in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[k]


def retry_after_header(wait: float) -> str:
    """Whole seconds, at least 1 (RFC 9110 §10.2.3 delay-seconds)."""
    return str(max(1, math.ceil(wait)))
