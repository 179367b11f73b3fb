"""Slow down password guessing: too many failed logins from one address earn a pause.

A device's password is short-lived only in theory; in a home lab it stays for years, so an
address that fails ``limit`` times within ``window`` seconds is refused (HTTP 429) until the
window has passed since its last failure. Successes do not count, so a fleet of devices behind
one NAT address is never blocked by its own downloads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class AuthThrottle:
    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] | None = None,
                 max_tracked: int = 10_000) -> None:
        import time

        self.limit, self.window = limit, window
        self._clock = clock or time.monotonic
        self._failures: dict[str, deque[float]] = {}
        self._max_tracked = max_tracked  # bounds memory under a spray from many addresses

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and now - times[0] > self.window:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str) -> float:
        """Seconds this address must wait before trying again; 0 when it may try now."""
        now = self._clock()
        times = self._recent(address, now)
        if len(times) < self.limit:
            return 0.0
        return max(0.0, self.window - (now - times[-1]))

    def failed(self, address: str) -> None:
        now = self._clock()
        if address not in self._failures and len(self._failures) >= self._max_tracked:
            oldest = min(self._failures, key=lambda a: self._failures[a][-1] if self._failures[a] else 0.0)
            del self._failures[oldest]
        times = self._failures.setdefault(address, deque(maxlen=self.limit * 2))
        times.append(now)
