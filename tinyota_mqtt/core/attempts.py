"""The life of one update attempt, as a pure transition function.

    pending ─▶ downloading ─▶ flashing ─▶ succeeded   (device reports the target version)
       │            │             │
       └────────────┴─────────────┴──▶ failed | timed_out | cancelled

"succeeded" is only ever decided by the device reporting the target version: a finished download
or a "rebooting" status proves nothing, because the bootloader may still refuse the new image.
Where the attempt ``needs_download`` (the group's ``confirm: download+report``), the server must
also have served that device the whole image: a device that says it runs the target without
having downloaded it is not believed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tinyota_mqtt.core.protocol import Status

PENDING, DOWNLOADING, FLASHING = "pending", "downloading", "flashing"
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED = "succeeded", "failed", "timed_out", "cancelled"
OPEN = (PENDING, DOWNLOADING, FLASHING)
FINAL = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)

# What the server saw of the download, in ``Attempt.download``.
NOT_SERVED, SERVING, SERVED = "", "started", "complete"


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
    sha256: str | None = None  # the release announced: a replaced release is a new target
    download: str = NOT_SERVED
    needs_download: bool = False
    late: bool = False  # confirmed after it had timed out: the outcome came, only late

    @property
    def open(self) -> bool:
        return self.state in OPEN


def _reports_target(attempt: Attempt, status: Status) -> bool:
    # Only a device that is not reporting a failure of *this* attempt. A 'failed' about another
    # announcement (or with no id at all) does not say this one failed, but neither does it
    # confirm it: the device may be reporting the error of an update it never finished.
    return status.version == attempt.version and status.state in ("idle", "rebooting")


def _confirmed(attempt: Attempt, now: float) -> Attempt:
    if attempt.needs_download and attempt.download != SERVED:
        if attempt.download == SERVING:
            # The device is done with the download before our side saw its last byte leave.
            # Wait in 'flashing' for on_served(), which then confirms.
            return replace(attempt, state=FLASHING, updated=now, progress=100)
        return replace(attempt, state=FAILED, updated=now,
                       error=f"no download: the device reports {attempt.version}, "
                             "but this server never served it the image")
    return replace(attempt, state=SUCCEEDED, updated=now, progress=100, error=None)


def on_status(attempt: Attempt, status: Status, now: float) -> Attempt:
    """The attempt after the device reported ``status``; unchanged if it says nothing new."""
    if attempt.state == TIMED_OUT and _reports_target(attempt, status):
        late = _confirmed(replace(attempt, state=PENDING), now)
        return replace(late, late=True) if late.state in FINAL else attempt  # never reopened
    if not attempt.open:
        return attempt
    if _reports_target(attempt, status):
        return _confirmed(attempt, now)
    if status.id is not None and status.id != attempt.id:
        return attempt  # about some older announcement; a retained leftover after a reconnect
    if status.id is None and status.state == "failed":
        return attempt  # a failure it does not tie to this announcement proves nothing about it
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


def on_download_started(attempt: Attempt, now: float) -> Attempt:
    """The server began to send this attempt's image: 'in progress' from the first byte."""
    if not attempt.open:
        return attempt
    state = DOWNLOADING if attempt.state == PENDING else attempt.state
    return replace(attempt, state=state, updated=now, download=attempt.download or SERVING,
                   progress=attempt.progress if attempt.progress is not None else 0)


def on_served(attempt: Attempt, now: float, device_version: str | None) -> Attempt:
    """The server sent the whole image. If the device already said it runs the target, confirm."""
    if not attempt.open:
        return attempt
    served = replace(attempt, download=SERVED, updated=now)
    if device_version == attempt.version and attempt.state == FLASHING:
        return _confirmed(served, now)
    return served


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


def cancel(attempt: Attempt, now: float, why: str = "cancelled") -> Attempt:
    if not attempt.open:
        return attempt
    return replace(attempt, state=CANCELLED, updated=now, error=why)
