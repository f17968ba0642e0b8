"""Per-key request rate limit: a token bucket per API key, per worker, with the limit divided.

Each uvicorn worker keeps its own buckets and admits ``rate / workers`` requests per second per
key (burst ``burst / workers``, at least one). The kernel spreads connections over the workers,
so the service as a whole admits about ``rate`` per key, without shared state or a database
write per request. A worker restart forgets its buckets (the limit errs towards admitting).
Rejected requests get 429 problem+json (code T429) with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from serving.errors import ApiError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate_per_second: float, burst: float, workers: int = 1, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        workers = max(1, workers)
        self.rate = rate_per_second / workers
        self.capacity = max(1.0, burst / workers)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one token for `key`; return 0 when admitted, else the seconds until a token is free."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate if self.rate > 0 else math.inf

    def check(self, key: str) -> None:
        wait = self.acquire(key)
        if wait > 0:
            from serving.metrics import RATE_LIMITED

            RATE_LIMITED.inc()
            retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 3600
            raise ApiError(429, "T429", "请求过于频繁", f"该 API 密钥的请求频率超过上限，请 {retry} 秒后重试",
                           headers={"Retry-After": str(retry)})
