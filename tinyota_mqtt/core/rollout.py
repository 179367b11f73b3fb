"""Staged rollouts as a pure transition function: waves, advance and halt rules, windows.

A rollout takes one release to a fixed, ordered list of waves of devices::

    scheduled ─▶ running (wave k) ─▶ completed
        │            │   ▲
        │            ▼   │ resume
        │        paused | halted (a threshold, with its reason)
        └────────────┴──────────▶ aborted

``step(rollout, observations, now)`` is the only way time moves it: it folds what the devices'
attempts say into the members, halts on the failure threshold, advances a wave that reached its
success threshold (after its soak time), and returns the announcements to make or withdraw. The
runner (``fleet/rollouts.py``) carries those out and tells the result back with ``bind()``.
Nothing here reads a clock, a file or the network, so the rules can be checked by property tests.

Waves are planned once, at the start, from the eligible devices in sorted order, and stored: a
restarted server continues with the very same members.

Retries are not decided here: the announcer retries an attempt that ended for a reason not the
image's (``core/retry.py``, the group's ``retries`` and ``retry_backoff``), and the runner tells
this model whether a retry is coming (``Observation.retrying``). A member waiting for one is not
counted as ended, so it neither fails the halt rule nor completes its wave yet.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from tinyota_mqtt.core import attempts as att

SCHEDULED, RUNNING, PAUSED, HALTED, COMPLETED, ABORTED = (
    "scheduled", "running", "paused", "halted", "completed", "aborted")
STATES = (SCHEDULED, RUNNING, PAUSED, HALTED, COMPLETED, ABORTED)
FINAL = (COMPLETED, ABORTED)

# A member (one device of one rollout):
WAITING = "waiting"      # not announced yet (or its announcement was withdrawn before it started)
ANNOUNCED = "announced"  # an attempt is open
RETRY = "retry"          # its attempt ended, and the announcer will try again after a back-off
SUCCEEDED = "succeeded"
FAILED = "failed"        # failed or timed out with no tries left: counts against the halt rule
CANCELLED = "cancelled"  # someone cancelled or replaced its attempt: neither success nor failure
ENDED = (SUCCEEDED, FAILED, CANCELLED)

MAX_WINDOW_SECONDS = 7 * 86400
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class RolloutError(ValueError):
    """A rollout spec (waves, window, thresholds) that cannot be used; the message says why."""


# --------------------------------------------------------------------------- maintenance window


@dataclass(frozen=True)
class Window:
    """Announcements go out only while a window is open: from ``start`` on each of ``days`` (0 =
    Monday), for ``seconds``, in the time zone ``tz``. A window may run past midnight."""

    days: frozenset[int]
    start: time
    seconds: int
    tz: str
    text: str = ""  # as written, for display and storage

    def is_open(self, now: float) -> bool:
        return opening_at(self, now) is not None

    def next_open(self, now: float) -> float:
        """When the window next opens at or after ``now`` (``now`` itself if open)."""
        if self.is_open(now):
            return now
        zone = ZoneInfo(self.tz)
        today = datetime.fromtimestamp(now, zone).date()
        for ahead in range(8):
            day = today + timedelta(days=ahead)
            if day.weekday() in self.days:
                opens = datetime.combine(day, self.start, zone).timestamp()
                if opens >= now:
                    return opens
        raise AssertionError("a window with at least one day opens within a week")


def opening_at(window: Window, now: float) -> float | None:
    """The start of the window opening that contains ``now``, or None when it is closed."""
    zone = ZoneInfo(window.tz)
    today = datetime.fromtimestamp(now, zone).date()
    # An opening that started up to a week ago may still be running (long windows, past midnight).
    # One day more than the length in days: the days a clock change shortens to 23 hours let an
    # opening reach into a day further on than its length alone says.
    for back in range(math.ceil(window.seconds / 86400) + 2):
        day = today - timedelta(days=back)
        if day.weekday() not in window.days:
            continue
        # Absolute seconds, so "02:00+3h" lasts three hours on the nights the clocks change too.
        opens = datetime.combine(day, window.start, zone).timestamp()
        if opens <= now < opens + window.seconds:
            return opens
    return None


_WINDOW = re.compile(r"\s*(?P<days>\S+)\s+(?P<hh>[0-9]{1,2}):(?P<mm>[0-9]{2})\s*\+\s*(?P<dur>\S+)"
                     r"(?:\s+(?P<tz>\S+))?\s*")
_SPAN = re.compile(r"(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m(?:in)?)?")
WINDOW_USAGE = "write DAYS HH:MM+DURATION TIMEZONE, e.g. 'Mon-Fri 02:00+3h Europe/Berlin' or 'daily 23:30+90m UTC'"


def parse_window(text: str) -> Window:
    """Parse ``'Mon-Fri 02:00+3h Europe/Berlin'``; days may be ``daily``, ``Sat,Sun``, ``Mon,Wed-Fri``."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise RolloutError(f"{text!r} is not a maintenance window; {WINDOW_USAGE}")
    days = _parse_days(match["days"])
    hours, minutes = int(match["hh"]), int(match["mm"])
    if hours > 23 or minutes > 59:
        raise RolloutError(f"{match['hh']}:{match['mm']} is not a time of day (00:00 to 23:59)")
    span = _SPAN.fullmatch(match["dur"].lower())
    if span is None or not any(span.groupdict().values()):
        raise RolloutError(f"{match['dur']!r} is not a duration; write e.g. 3h, 90m or 1h30m")
    seconds = 60 * (1440 * int(span["d"] or 0) + 60 * int(span["h"] or 0) + int(span["m"] or 0))
    if not 60 <= seconds <= MAX_WINDOW_SECONDS:
        raise RolloutError(f"a window lasts from 1m to 7d, not {match['dur']}")
    tz = match["tz"]
    if tz is None:
        raise RolloutError(f"{text!r} has no time zone; add one such as Europe/Berlin or UTC "
                           "(the window follows that zone's clock, summer time included)")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        guess = _guess_zone(tz)
        hint = f". Did you mean '{guess}'?" if guess else " (use an IANA name such as Europe/Berlin)"
        raise RolloutError(f"unknown time zone {tz!r}{hint}") from None
    return Window(frozenset(days), time(hours, minutes), seconds, tz, " ".join(text.split()))


def _parse_days(text: str) -> set[int]:
    if text.lower() in ("daily", "*"):
        return set(range(7))
    days: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        a, b = _day(first), _day(last or first)
        if a is None or b is None:
            bad = first if a is None else last
            import difflib

            guess = difflib.get_close_matches(bad, [d[:3] for d in DAYS] + list(DAYS), n=1, cutoff=0.5)
            hint = f"Did you mean '{guess[0][:3].title()}'?" if guess else "Write e.g. Mon-Fri, Sat,Sun or daily."
            raise RolloutError(f"{bad!r} is not a day. {hint}")
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # Fri-Mon wraps over the weekend
    return days


def _day(word: str) -> int | None:
    for index, name in enumerate(DAYS):
        if word in (name[:3], name):
            return index
    return None


def _guess_zone(name: str) -> str | None:
    import difflib

    zones = sorted(available_timezones())
    by_lower = {z.lower(): z for z in zones}
    hits = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[hits[0]] if hits else None


# --------------------------------------------------------------------------- waves and policy


@dataclass(frozen=True)
class WaveSpec:
    """One wave as written. Sizes are cumulative over the eligible devices: after ``25%`` a quarter
    of them have been reached, counting earlier waves; ``rest`` is 100 %. ``devices`` names a
    canary list, taken whole."""

    devices: tuple[str, ...] = ()
    count: int | None = None
    percent: float | None = None

    def text(self) -> str:
        if self.devices:
            return "+".join(self.devices)
        if self.count is not None:
            return str(self.count)
        assert self.percent is not None
        return "rest" if self.percent >= 100 else f"{self.percent:g}%"


REST = WaveSpec(percent=100.0)
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*%")
_DEVICE = re.compile(r"[A-Za-z0-9_-]+")


def parse_wave(text: str) -> WaveSpec:
    """``1`` (devices), ``25%`` (of the eligible, cumulative), ``rest``, or ``id+id`` (a canary list)."""
    word = text.strip()
    if word.lower() in ("rest", "all", "100%"):
        return REST
    if word.isdigit():
        if int(word) < 1:
            raise RolloutError("a wave of 0 devices reaches nobody; write at least 1")
        return WaveSpec(count=int(word))
    percent = _PERCENT.fullmatch(word)
    if percent:
        value = float(percent[1])
        if not 0 < value <= 100:
            raise RolloutError(f"{word} is not a share of the fleet; write more than 0% and at most 100%")
        return WaveSpec(percent=value)
    ids = tuple(word.split("+"))
    if all(_DEVICE.fullmatch(i) for i in ids):
        return WaveSpec(devices=ids)
    raise RolloutError(f"{text!r} is not a wave; write a count (1), a share (25%), 'rest', "
                       "or device ids joined by '+' (kitchen-1+kitchen-2)")


def parse_waves(text: str) -> tuple[WaveSpec, ...]:
    """``'1,25%,rest'`` → three waves."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise RolloutError("no waves given; write e.g. 1,25%,rest")
    return tuple(parse_wave(p) for p in parts)


def parse_percent(text: str, what: str) -> float:
    match = _PERCENT.fullmatch(text.strip()) or re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)", text.strip())
    if match is None or not 0 <= float(match[1]) <= 100:
        raise RolloutError(f"{what}: {text!r} is not a percentage; write e.g. 20%")
    return float(match[1])


@dataclass(frozen=True)
class Policy:
    """How a rollout goes: its waves, when a wave advances, when it halts, its window."""

    waves: tuple[WaveSpec, ...] = (REST,)
    advance_at: float = 100.0   # % of a wave that must succeed before the next one starts
    soak: float = 0.0           # seconds to wait after a wave met advance_at
    halt_at: float | None = 20.0  # % of ended attempts failed or timed out that halts; None: never
    halt_min: int = 1           # ...once at least this many have ended (per wave and overall)
    window: Window | None = None

    def describe(self) -> str:
        parts = ["waves " + ",".join(w.text() for w in self.waves), f"advance at {self.advance_at:g}%"]
        if self.soak:
            parts.append(f"soak {self.soak:g}s")
        parts.append("never halt" if self.halt_at is None else
                     f"halt at {self.halt_at:g}% of at least {self.halt_min} ended")
        if self.window:
            parts.append(f"window {self.window.text}")
        return ", ".join(parts)


def plan_waves(specs: Sequence[WaveSpec], eligible: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The members of each wave, deterministic: canaries as listed, the rest in sorted id order.

    Only ``eligible`` devices are placed (a canary that already runs the version is left out);
    empty waves are dropped, and whatever the specs leave over goes into a final wave, so every
    eligible device is in exactly one wave.
    """
    pool = sorted(set(eligible))
    total = len(pool)
    taken: set[str] = set()
    waves: list[tuple[str, ...]] = []
    for spec in specs:
        if spec.devices:
            wave = [d for d in dict.fromkeys(spec.devices) if d in pool and d not in taken]
        else:
            goal = spec.count if spec.count is not None else math.ceil(total * (spec.percent or 0) / 100 - 1e-9)
            need = max(0, min(total, goal if spec.percent is not None else len(taken) + goal) - len(taken))
            wave = [d for d in pool if d not in taken][:need]
        taken.update(wave)
        if wave:
            waves.append(tuple(wave))
    rest = tuple(d for d in pool if d not in taken)
    if rest:
        waves.append(rest)
    return tuple(waves)


# --------------------------------------------------------------------------- the rollout


@dataclass(frozen=True)
class Member:
    device: str
    wave: int
    state: str = WAITING
    attempt: str | None = None
    tries: int = 0  # attempts seen for it (the announcer's retries included)
    error: str | None = None
    acknowledged: bool = False  # a failure someone resumed past: no longer counts in the thresholds


@dataclass(frozen=True)
class Entry:
    at: float
    who: str
    what: str


@dataclass(frozen=True)
class Rollout:
    id: str
    image: str
    version: str
    groups: tuple[str, ...]
    policy: Policy
    members: tuple[Member, ...]  # wave by wave, each in planned order
    waves: int
    state: str = SCHEDULED
    wave: int = 0
    reason: str | None = None
    created: float = 0.0
    updated: float = 0.0
    soak_from: float | None = None  # when the current wave met its success threshold
    started_by: str = "config"
    log: tuple[Entry, ...] = field(default=())

    @property
    def active(self) -> bool:
        return self.state not in FINAL

    def in_wave(self, k: int) -> list[Member]:
        return [m for m in self.members if m.wave == k]

    def member(self, device: str) -> Member | None:
        return next((m for m in self.members if m.device == device), None)


@dataclass(frozen=True)
class Observation:
    """What the registry says about one member's device: what it runs, and its newest attempt."""

    version: str | None = None
    attempt: str | None = None
    target: str | None = None  # the version that attempt announced
    state: str | None = None  # the attempt's state (core/attempts.py)
    error: str | None = None
    retrying: bool = False  # it ended, and the announcer will announce again (core/retry.py)


@dataclass(frozen=True)
class Announce:
    device: str


@dataclass(frozen=True)
class Withdraw:
    """Cancel the device's unstarted announcement and hold it, so no retry goes out either."""

    device: str


Action = Announce | Withdraw


def start(rollout_id: str, image: str, version: str, groups: Sequence[str], policy: Policy,
          eligible: Sequence[str], now: float, who: str) -> Rollout:
    waves = plan_waves(policy.waves, eligible)
    members = tuple(Member(d, k) for k, wave in enumerate(waves) for d in wave)
    return Rollout(rollout_id, image, version, tuple(groups), policy, members, len(waves), created=now,
                   updated=now, started_by=who, log=(Entry(now, who, f"started: {policy.describe()}"),))


def counts(members: Sequence[Member]) -> dict[str, int]:
    found = {s: 0 for s in (WAITING, ANNOUNCED, RETRY, SUCCEEDED, FAILED, CANCELLED)}
    for m in members:
        found[m.state] += 1
    return found


def _note(r: Rollout, now: float, who: str, what: str) -> tuple[Entry, ...]:
    return (*r.log, Entry(now, who, what))


def _fold(r: Rollout, m: Member, o: Observation | None) -> Member:
    """A member after what its device and its newest attempt say."""
    if o is None:
        return m
    if o.version == r.version and m.state in (WAITING, RETRY, ANNOUNCED):
        return replace(m, state=SUCCEEDED, error=None)
    mine = o.attempt is not None and o.target == r.version
    if m.state == WAITING:
        if mine and o.state in att.OPEN:
            # Announced before a crash took the rollout's own record of it: adopt the attempt.
            return replace(m, state=ANNOUNCED, attempt=o.attempt, tries=m.tries + 1)
        return m
    if m.state not in (ANNOUNCED, RETRY) or m.attempt is None:
        return m
    if o.attempt is None:
        return replace(m, state=WAITING, attempt=None)  # its attempt is unknown: announce again
    if not mine:
        return replace(m, state=CANCELLED, error=f"replaced by an announcement of {o.target}")
    if o.attempt != m.attempt:
        m = replace(m, attempt=o.attempt, tries=m.tries + 1)  # the announcer's retry
    if o.state in att.OPEN:
        return replace(m, state=ANNOUNCED)
    if o.state == att.SUCCEEDED:
        return replace(m, state=SUCCEEDED, error=None)
    if o.state == att.CANCELLED:
        return replace(m, state=CANCELLED, error=o.error or "cancelled")
    if o.state in (att.FAILED, att.TIMED_OUT):
        return replace(m, state=RETRY if o.retrying else FAILED, error=o.error or o.state)
    return m


def _halt_reason(r: Rollout) -> str | None:
    p = r.policy
    if p.halt_at is None:
        return None
    scopes = [(f"wave {r.wave + 1}", r.in_wave(r.wave)),
              ("overall", [m for m in r.members if m.wave <= r.wave])]
    for scope, members in scopes:
        counted = [m for m in members if not m.acknowledged]
        failed = [m for m in counted if m.state == FAILED]
        ended = len(failed) + sum(m.state == SUCCEEDED for m in counted)
        if failed and ended >= p.halt_min and 100 * len(failed) >= p.halt_at * ended:
            first = failed[0]
            return (f"{len(failed)} of {ended} ended attempts failed ({scope}; halts at {p.halt_at:g}%), "
                    f"e.g. {first.device}: {first.error}")
    return None


def _withdrawals(r: Rollout, observations: Mapping[str, Observation]) -> tuple[list[Member], list[Action]]:
    """Take back what would still reach a device: announcements no device has started, and the
    retries the announcer has scheduled. Used whenever a rollout may not announce (paused,
    halted, aborted, outside its window); those members are announced again when it may."""
    members: list[Member] = []
    actions: list[Action] = []
    for m in r.members:
        o = observations.get(m.device)
        unstarted = m.state == ANNOUNCED and o is not None and o.attempt == m.attempt and o.state == att.PENDING
        if unstarted or m.state == RETRY:
            actions.append(Withdraw(m.device))
            m = replace(m, state=WAITING, attempt=None)
        members.append(m)
    return members, actions


def step(r: Rollout, observations: Mapping[str, Observation], now: float) -> tuple[Rollout, list[Action]]:
    """The rollout after ``observations`` at ``now``, and what to announce or withdraw."""
    before = r
    members = tuple(_fold(r, m, observations.get(m.device)) for m in r.members)
    r = replace(r, members=members)
    if r.state in (SCHEDULED, RUNNING):
        reason = _halt_reason(r)
        if reason is not None:
            r = replace(r, state=HALTED, reason=reason, log=_note(r, now, "rollout", f"halted: {reason}"))
    while r.state in (SCHEDULED, RUNNING):
        wave = r.in_wave(r.wave)
        if any(m.state not in ENDED for m in wave):
            break
        counted = [m for m in wave if not (m.acknowledged and m.state == FAILED)]
        succeeded = sum(m.state == SUCCEEDED for m in counted)
        if counted and 100 * succeeded < r.policy.advance_at * len(counted):
            reason = (f"wave {r.wave + 1} ended with {succeeded} of {len(counted)} succeeded, "
                      f"below the {r.policy.advance_at:g}% it needs to advance")
            r = replace(r, state=HALTED, reason=reason, log=_note(r, now, "rollout", f"halted: {reason}"))
            break
        if r.wave + 1 >= r.waves:
            # Nothing to clear: a running rollout has no reason (resume drops it), and only a wave
            # with a next one soaks (its soak_from goes when the next one starts).
            done = sum(m.state == SUCCEEDED for m in r.members)  # every wave's, not the last one's
            r = replace(r, state=COMPLETED, log=_note(r, now, "rollout", f"completed: {done} device(s) on {r.version}"))
            break
        soak_from = r.soak_from if r.soak_from is not None else now
        if now < soak_from + r.policy.soak:
            r = replace(r, soak_from=soak_from)
            break
        r = replace(r, wave=r.wave + 1, soak_from=None,
                    log=_note(r, now, "rollout", f"wave {r.wave + 1} done; wave {r.wave + 2} starts"))
    window = r.policy.window
    may_announce = r.state in (SCHEDULED, RUNNING) and (window is None or window.is_open(now))
    actions: list[Action] = []
    if not may_announce:
        kept, actions = _withdrawals(r, observations)
        r = replace(r, members=tuple(kept))
    else:
        if r.state == SCHEDULED:
            r = replace(r, state=RUNNING, log=_note(r, now, "rollout", "running"))
        out = []
        for m in r.members:
            if m.wave == r.wave and m.state == WAITING:
                actions.append(Announce(m.device))
                m = replace(m, state=ANNOUNCED, tries=m.tries + 1)  # a waiting member has no attempt; bind() sets it
            out.append(m)
        r = replace(r, members=tuple(out))
    return (replace(r, updated=now) if r != before else r), actions


def bind(r: Rollout, device: str, attempt_id: str) -> Rollout:
    """Record the attempt the runner opened for an ``Announce``."""
    return replace(r, members=tuple(replace(m, attempt=attempt_id) if m.device == device and m.state == ANNOUNCED
                                    else m for m in r.members))


def unannounced(r: Rollout, device: str, error: str, now: float) -> Rollout:
    """The runner could not announce to ``device``: halt, because the next one would fail the same way."""
    members = tuple(replace(m, state=WAITING, tries=m.tries - 1) if m.device == device
                    and m.state == ANNOUNCED and m.attempt is None else m for m in r.members)
    return halt(replace(r, members=members), f"cannot announce to {device}: {error}", now)


def halt(r: Rollout, reason: str, now: float) -> Rollout:
    if r.state in FINAL:
        return r
    return replace(r, state=HALTED, reason=reason, updated=now, log=_note(r, now, "rollout", f"halted: {reason}"))


class ControlError(RolloutError):
    """A pause, resume or abort that makes no sense in the rollout's state."""


def controls(state: str) -> dict[str, bool]:
    """Which of pause, resume and abort a rollout in ``state`` accepts: the functions below refuse
    the others, and the dashboard disables their buttons from this, not from a copy of the rule."""
    return {"pause": state in (SCHEDULED, RUNNING), "resume": state in (PAUSED, HALTED), "abort": state not in FINAL}


def pause(r: Rollout, who: str, now: float) -> Rollout:
    if not controls(r.state)["pause"]:
        raise ControlError(f"rollout {r.id} is {r.state}; only a scheduled or running rollout can be paused")
    return replace(r, state=PAUSED, updated=now, log=_note(r, now, who, "paused"))


def resume(r: Rollout, who: str, now: float) -> Rollout:
    """Continue a paused or halted rollout where it stopped. Failures so far are acknowledged:
    they no longer count towards the thresholds, or the same failures would halt it again."""
    if not controls(r.state)["resume"]:
        raise ControlError(f"rollout {r.id} is {r.state}; only a paused or halted rollout can be resumed")
    members = tuple(replace(m, acknowledged=True) if m.state == FAILED else m for m in r.members)
    note = "resumed" + (f" past: {r.reason}" if r.state == HALTED else "")
    return replace(r, state=RUNNING, reason=None, members=members, updated=now, log=_note(r, now, who, note))


def abort(r: Rollout, who: str, now: float, reason: str | None = None) -> Rollout:
    if not controls(r.state)["abort"]:
        raise ControlError(f"rollout {r.id} is already {r.state}")
    why = reason or f"aborted by {who}"
    return replace(r, state=ABORTED, reason=why, updated=now, log=_note(r, now, who, f"aborted: {why}"))


# --------------------------------------------------------------------------- views and storage


def summary(r: Rollout, now: float | None = None) -> dict[str, Any]:
    """The JSON every surface shows (API, CLI, MQTT state, dashboard): small, without members."""
    waves = []
    for k in range(r.waves):
        members = r.in_wave(k)
        found = counts(members)
        # What every surface shows as the wave's "waiting": nothing under way for the member now,
        # whether it was never told or waits for a retry's back-off. Decided here, once.
        waves.append({"wave": k + 1, "devices": len(members), **found, "queued": found[WAITING] + found[RETRY]})
    total = counts(r.members)
    body: dict[str, Any] = {
        "id": r.id, "image": r.image, "version": r.version, "groups": list(r.groups), "state": r.state,
        "controls": controls(r.state), "wave": r.wave + 1 if r.waves else 0, "waves": waves,
        "devices": len(r.members), "counts": total,
        "reason": r.reason, "policy": r.policy.describe(), "started_by": r.started_by, "created": r.created,
        "updated": r.updated,
    }
    window = r.policy.window
    if window is not None and now is not None and r.active:
        body["window_open"] = window.is_open(now)
        body["next_window"] = window.next_open(now)
    return body


def to_json(r: Rollout) -> dict[str, Any]:
    p = r.policy
    return {
        "id": r.id, "image": r.image, "version": r.version, "groups": list(r.groups),
        "policy": {"waves": [w.text() for w in p.waves], "advance_at": p.advance_at, "soak": p.soak,
                   "halt_at": p.halt_at, "halt_min": p.halt_min, "window": p.window.text if p.window else None},
        "members": [[m.device, m.wave, m.state, m.attempt, m.tries, m.error, m.acknowledged]
                    for m in r.members],
        "waves": r.waves, "state": r.state, "wave": r.wave, "reason": r.reason, "created": r.created,
        "updated": r.updated, "soak_from": r.soak_from, "started_by": r.started_by,
        "log": [[e.at, e.who, e.what] for e in r.log],
    }


def from_json(body: Mapping[str, Any]) -> Rollout:
    p = body["policy"]
    policy = Policy(waves=tuple(parse_wave(w) for w in p["waves"]), advance_at=p["advance_at"], soak=p["soak"],
                    halt_at=p["halt_at"], halt_min=p["halt_min"],
                    window=parse_window(p["window"]) if p["window"] else None)
    return Rollout(
        id=body["id"], image=body["image"], version=body["version"], groups=tuple(body["groups"]), policy=policy,
        members=tuple(Member(*m) for m in body["members"]), waves=body["waves"], state=body["state"],
        wave=body["wave"], reason=body["reason"], created=body["created"], updated=body["updated"],
        soak_from=body["soak_from"], started_by=body["started_by"], log=tuple(Entry(*e) for e in body["log"]))
