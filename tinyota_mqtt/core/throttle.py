"""Slow down password guessing without letting a guesser lock anyone else out.

Three rules, each answering something an adversarial review measured:

* **Failures are counted per (address, account)**, and only failures. A fleet behind one NAT
  address shares that address with whoever guesses from it, so ten wrong passwords for one
  device id must not lock out the other devices or the admin; and a request whose credentials
  verify is never refused by the count (the HTTP layer only turns a *failure* past the limit
  into 429 instead of 401).
* **A costly check is counted before it runs.** A hashed password costs a KDF run (~0.2 s of
  CPU). Each one first reserves a failure slot, released on success, so 200 parallel guesses
  see the limit after the first ``limit`` reservations instead of all running before the first
  failure is counted. Past the limit that account gets no more KDF runs from that address
  until the window has passed; a correct password that is already known (checked once since
  start, or plain) is verified cheaply and still gets through.
* **KDF work in flight is bounded per address.** ``per_address`` checks may run or wait at once
  per address; more get 429 without running the KDF, so one address cannot queue up work in
  front of everyone else (the HTTP layer runs them on a small pool, which bounds the total).

Memory is bounded too: at most ``max_tracked`` (address, account) keys are remembered.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

Key = tuple[str, str]  # (client address, account name or "?" for names nobody has)


class Reservation:
    """One KDF check admitted by :meth:`LoginThrottle.reserve`; counts as a failure until it succeeds.

    Exactly one of :meth:`succeeded` or :meth:`failed` must be called when the check is done.
    """

    def __init__(self, throttle: LoginThrottle, key: Key) -> None:
        self._throttle, self._key, self._open = throttle, key, True

    def succeeded(self) -> None:
        self._close(failed=False)

    def failed(self) -> None:
        self._close(failed=True)

    def _close(self, *, failed: bool) -> None:
        if self._open:
            self._open = False
            self._throttle._release(self._key, failed)


class LoginThrottle:
    def __init__(self, limit: int = 10, window: float = 60.0, per_address: int = 4,
                 clock: Callable[[], float] | None = None, max_tracked: int = 10_000) -> None:
        self.limit, self.window, self.per_address = limit, window, per_address
        self._clock = clock or time.monotonic
        self._failures: dict[Key, deque[float]] = {}
        self._pending: dict[Key, int] = {}  # reserved KDF checks not yet decided, per key
        self._in_flight: dict[str, int] = {}  # the same, per address
        self._max_tracked = max_tracked

    def _recent(self, key: Key, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        # A failure as old as the window has passed it: retry_after() promised exactly that wait.
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key: Key) -> float:
        """Seconds until ``key`` is below the limit again; 0 when it is below it now.

        Reserved checks count as failures here: that is what stops a parallel burst.
        """
        now = self._clock()
        times = self._recent(key, now)
        if len(times) + self._pending.get(key, 0) < self.limit:
            return 0.0
        if not times:  # only reservations: they resolve within one check
            return 1.0
        return max(1.0, self.window - (now - times[-1]))

    def reserve(self, key: Key) -> Reservation | None:
        """Admit one KDF check for ``key``, or None: refuse it (429) without running the KDF."""
        address = key[0]
        if self.retry_after(key) > 0 or self._in_flight.get(address, 0) >= self.per_address:
            return None
        self._pending[key] = self._pending.get(key, 0) + 1
        self._in_flight[address] = self._in_flight.get(address, 0) + 1
        return Reservation(self, key)

    def busy(self, address: str) -> bool:
        """Whether ``address`` has used up its KDF checks in flight (a refusal that lasts ~1 s)."""
        return self._in_flight.get(address, 0) >= self.per_address

    def failed(self, key: Key) -> None:
        """A check that cost nothing (plain password, malformed credentials) failed."""
        now = self._clock()
        if key not in self._failures and len(self._failures) >= self._max_tracked:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0.0)
            del self._failures[oldest]
        times = self._failures.setdefault(key, deque(maxlen=self.limit * 2))
        times.append(now)

    def _release(self, key: Key, failed: bool) -> None:
        address = key[0]
        self._pending[key] -= 1
        if not self._pending[key]:
            del self._pending[key]
        self._in_flight[address] -= 1
        if not self._in_flight[address]:
            del self._in_flight[address]
        if failed:
            self.failed(key)
