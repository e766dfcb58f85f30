"""Rate limits 限流 for Open311 partners and the citizens' page: token buckets in process memory.

Each bucket holds ``burst`` tokens and refills at ``per_minute``; a request takes one token or
is refused with the seconds until the next one (the ``Retry-After`` of a 429). The buckets
live in this process only: with N server processes a partner may get up to N times the
rate. That is the intended trade (no shared store on the intake path); put a shared limiter
in the reverse proxy if a hard global limit is needed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    per_minute: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _noted: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Take a token for ``key``: None when allowed, else whole seconds to wait (>= 1)."""
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 50_000:
                    self._prune(now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate)) if rate > 0 else 3600

    def first_refusal(self, key: str, now: float | None = None, every: float = 60.0) -> bool:
        """Whether a refusal for ``key`` should be audited: once per ``every`` seconds, so a
        flood cannot turn into a flood of audit writes."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._noted.get(key)
            if last is not None and now - last < every:
                return False
            self._noted[key] = now
            return True

    def configure(self, *, per_minute: float | None = None, burst: int | None = None) -> None:
        """Change the limits (tests, operators) and forget every bucket."""
        with self._lock:
            if per_minute is not None:
                self.per_minute = per_minute
            if burst is not None:
                self.burst = burst
            self._buckets.clear()
            self._noted.clear()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._noted.clear()

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled completely (idle keys)."""
        rate = self.per_minute / 60.0
        full = [k for k, (tokens, at) in self._buckets.items() if tokens + (now - at) * rate >= self.burst]
        for k in full:
            del self._buckets[k]
        self._noted = {k: v for k, v in self._noted.items() if now - v < 3600}


#: Per partner API key: 60 requests a minute, bursts of 30.
PARTNER = RateLimiter(per_minute=60, burst=30)
#: Per client address on the citizens' page: 6 reports a minute, bursts of 5.
CITIZEN = RateLimiter(per_minute=6, burst=5)
#: Per client address, wrong or missing API keys: 10 a minute; more get 429 instead of 403.
BAD_KEY = RateLimiter(per_minute=10, burst=10)
