"""When the server tells a device about its target again, as a pure decision.

A device never retries an announcement id it failed on (it cannot tell a bad image from a bad
moment), so any second try is a new announcement, and the server decides it here:

- a new target (another version, or the same version re-released with other bytes): now;
- an attempt that ended for a reason the device could not help (the server was full or
  throttling, the network dropped, no outcome before the deadline), or one that succeeded but
  the device now runs something else: again after a back-off, doubling, up to ``retries`` times;
- an attempt the device failed on its own evidence (MD5, header, no room, a refused signature):
  never by itself. Trying a bad image in a loop is what bricks flash; ``tinyota install`` asks
  again on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tinyota_mqtt.core.attempts import CANCELLED, FAILED, SUCCEEDED, TIMED_OUT, Attempt

# Lower-case fragments of errors that say "not now" rather than "not this image". The ESP cores
# report a 429 or 503 as "Wrong HTTP Code"; connection trouble as "connection …" or "… Timeout";
# a 404 as "File Not Found (404)" (a release replaced between announcement and download).
_TRANSIENT = ("wrong http code", " 429", " 503", "(404)", "connection", "timeout", "timed out",
              "unavailable", "not yet available", "too many")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3  # further announcements after the first one, per target
    backoff: float = 60.0  # seconds before the first retry; doubles each time
    backoff_max: float = 3600.0


@dataclass(frozen=True)
class Decision:
    at: float | None  # when to announce (now or later); None: not by itself
    reason: str = ""

    @property
    def never(self) -> bool:
        return self.at is None


def transient(attempt: Attempt) -> bool:
    """Did the attempt end for a reason that says nothing against the image?"""
    if attempt.state == TIMED_OUT:
        return True
    if attempt.state != FAILED or not attempt.error:
        return False
    error = " " + attempt.error.lower()
    return any(marker in error for marker in _TRANSIENT)


def decide(target: tuple[str, str | None], installed: str | None, recent: Sequence[Attempt],
           policy: RetryPolicy, now: float) -> Decision:
    """Whether (and when) to announce ``target`` = (version, sha256) to a device.

    ``recent`` is the device's newest attempts, newest first: enough of them to count the tries
    at this target (``policy.retries + 1`` suffice).
    """
    version, sha256 = target
    if installed == version:
        return Decision(None, "runs it")
    if not recent:
        return Decision(now)
    last = recent[0]

    def same(a: Attempt) -> bool:
        return a.version == version and (a.sha256 is None or sha256 is None or a.sha256 == sha256)

    if not same(last):
        return Decision(now)
    if last.open:
        return Decision(None, "under way")
    if last.state == CANCELLED:
        return Decision(None, "cancelled")
    if last.state != SUCCEEDED and not transient(last):
        return Decision(None, f"failed on the device ({last.error}); `tinyota install` tries again")
    tries = 0
    for attempt in recent:
        if not same(attempt):
            break
        tries += 1
    if tries > policy.retries:
        return Decision(None, f"gave up after {tries} tries")
    delay = min(policy.backoff * 2 ** (tries - 1), policy.backoff_max)
    return Decision(max(now, last.updated + delay))
