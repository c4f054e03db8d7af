"""Per-key fixed-window rate limits, kept in process memory.

With several API processes each enforces its own window, so the effective limit is per process;
put a shared limiter in front (or one API process) where the exact figure matters.
"""

from __future__ import annotations

import math
import time


class RateLimiter:
    def __init__(self, window_seconds: float = 60.0) -> None:
        self.window_seconds = window_seconds
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, limit: int) -> float | None:
        """Count one request; return None if allowed, else the seconds until the window resets."""
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.window_seconds:
            start, count = now, 0
        if count >= limit:
            return max(1.0, math.ceil(self.window_seconds - (now - start)))
        self._windows[key] = (start, count + 1)
        return None
