"""The life of one update attempt, as a pure transition function.

    pending ─▶ downloading ─▶ flashing ─▶ succeeded   (device reports the target version)
       │            │             │
       └────────────┴─────────────┴──▶ failed | timed_out | cancelled

"succeeded" is only ever decided by the device reporting the target version: a finished download
or a "rebooting" status proves nothing, because the bootloader may still refuse the new image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tinyota_mqtt.core.protocol import Status

PENDING, DOWNLOADING, FLASHING = "pending", "downloading", "flashing"
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED = "succeeded", "failed", "timed_out", "cancelled"
OPEN = (PENDING, DOWNLOADING, FLASHING)
FINAL = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)


@dataclass(frozen=True)
class Attempt:
    id: str
    device: str
    version: str  # target
    from_version: str | None
    state: str
    created: float
    deadline: float
    updated: float
    error: str | None = None
    progress: int | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN


def on_status(attempt: Attempt, status: Status, now: float) -> Attempt:
    """The attempt after the device reported ``status``; unchanged if it says nothing new."""
    if not attempt.open:
        return attempt
    if status.version == attempt.version and status.state in ("idle", "rebooting", "failed") \
            and (status.state != "failed" or status.id != attempt.id):
        # Running the target: confirmed. (A 'failed' about another announcement does not undo it.)
        return replace(attempt, state=SUCCEEDED, updated=now, progress=100, error=None)
    if status.id is not None and status.id != attempt.id:
        return attempt  # about some older announcement; a retained leftover after a reconnect
    if status.state == "failed":
        return replace(attempt, state=FAILED, updated=now, error=status.error or "device reported failure")
    if status.state == "downloading":
        return replace(attempt, state=DOWNLOADING, updated=now, progress=status.progress)
    if status.state in ("flashing", "rebooting"):
        return replace(attempt, state=FLASHING, updated=now, progress=status.progress or 100)
    if status.state == "idle" and attempt.state == FLASHING and status.version is not None:
        # It rebooted but came back on something else: the new image did not take.
        return replace(attempt, state=FAILED, updated=now,
                       error=f"device restarted on {status.version}, not {attempt.version}")
    return attempt


def on_refused(attempt: Attempt, reason: str, now: float) -> Attempt:
    """The HTTP side refused the device's download (e.g. not enough free space)."""
    if not attempt.open:
        return attempt
    return replace(attempt, state=FAILED, updated=now, error=reason)


def on_clock(attempt: Attempt, now: float) -> Attempt:
    if attempt.open and now >= attempt.deadline:
        return replace(attempt, state=TIMED_OUT, updated=now,
                       error=f"no confirmation within {int(attempt.deadline - attempt.created)} s")
    return attempt


def cancel(attempt: Attempt, now: float) -> Attempt:
    if not attempt.open:
        return attempt
    return replace(attempt, state=CANCELLED, updated=now, error="cancelled")
