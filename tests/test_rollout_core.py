"""The pure rollout model (core/rollout.py): parsers, wave planning, and the transition function,
with property tests over random fleets, policies, device behaviours and clocks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import rollout as ro

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


# -- windows ------------------------------------------------------------------------------------

def test_window_weekday_nights_in_berlin() -> None:
    w = ro.parse_window("Mon-Fri 02:00+3h Europe/Berlin")
    assert w.days == frozenset(range(5)) and w.seconds == 3 * 3600
    assert w.is_open(at("2026-12-01 02:00"))       # a Tuesday
    assert w.is_open(at("2026-12-01 04:59"))
    assert not w.is_open(at("2026-12-01 05:00"))
    assert not w.is_open(at("2026-12-01 01:59"))
    assert not w.is_open(at("2026-12-05 03:00"))   # Saturday
    assert w.next_open(at("2026-12-04 06:00")) == at("2026-12-07 02:00")  # Friday morning → Monday


def test_window_past_midnight_and_wrapping_days() -> None:
    w = ro.parse_window("Fri-Mon 23:00+2h UTC")
    assert w.days == frozenset({4, 5, 6, 0})
    utc = ZoneInfo("UTC")
    assert w.is_open(at("2026-12-05 00:30", utc))   # Saturday, opened Friday 23:00
    assert w.is_open(at("2026-12-01 00:30", utc))   # Tuesday 00:30: Monday's opening still runs
    assert not w.is_open(at("2026-12-02 00:30", utc))  # Wednesday: Tuesday has no window


def test_window_keeps_its_length_when_the_clocks_change() -> None:
    w = ro.parse_window("daily 02:00+3h Europe/Berlin")
    # 29 March 2026: 02:00 does not exist in Berlin (clocks jump to 03:00); still three real hours.
    opens = ro.opening_at(w, at("2026-03-29 04:30"))
    assert opens is not None and w.is_open(opens + 3 * 3600 - 1) and not w.is_open(opens + 3 * 3600)


@pytest.mark.parametrize(("text", "fragment"), [
    ("Mon-Fri 02:00 Europe/Berlin", "DAYS HH:MM+DURATION"),
    ("Mon-Fri 25:00+3h UTC", "not a time of day"),
    ("Mon-Fry 02:00+3h UTC", "'fry' is not a day"),
    ("Mon-Fri 02:00+3x UTC", "not a duration"),
    ("Mon-Fri 02:00+3h", "has no time zone"),
    ("Mon-Fri 02:00+3h Europe/Berln", "Did you mean 'Europe/Berlin'"),
    ("daily 02:00+8d UTC", "from 1m to 7d"),
])
def test_window_errors_say_what_to_write(text: str, fragment: str) -> None:
    with pytest.raises(ro.RolloutError, match=fragment.replace("+", r"\+")):
        ro.parse_window(text)


def test_waves_parse_and_plan_deterministically() -> None:
    specs = ro.parse_waves("kitchen-3,25%,rest")
    assert specs == (ro.WaveSpec(devices=("kitchen-3",)), ro.WaveSpec(percent=25.0), ro.REST)
    ids = [f"d{i:02}" for i in range(20)] + ["kitchen-3"]
    waves = ro.plan_waves(specs, list(reversed(ids)))
    assert waves[0] == ("kitchen-3",)
    assert len(waves[1]) == 5 and waves[1] == tuple(sorted(ids)[:5])  # ceil(25% of 21) = 6, one taken
    assert sorted(itertools.chain(*waves)) == sorted(ids)
    assert ro.plan_waves(specs, ids) == waves  # the order devices come in does not matter
    # A canary that already runs the version (not eligible) is left out; empty waves vanish.
    assert ro.plan_waves(ro.parse_waves("x,1,rest"), ["a", "b"]) == (("a",), ("b",))
    assert ro.plan_waves(ro.parse_waves("1"), []) == ()


@pytest.mark.parametrize("text", ["0", "0%", "150%", "kitchen 1", ""])
def test_bad_waves_are_refused(text: str) -> None:
    with pytest.raises(ro.RolloutError):
        ro.parse_waves(text)


def test_only_server_refusals_and_timeouts_are_retried() -> None:
    from tinyota_mqtt.core import retry

    def ended(state: str, error: str | None) -> att.Attempt:
        return att.Attempt("a", "d", "2.0.0", "1.0.0", state, 0.0, 1.0, 1.0, error)

    # The rollout leans on the announcer's rule (core/retry.py): these are the cases it relies on.
    assert retry.transient(ended(att.TIMED_OUT, None))
    assert retry.transient(ended(att.FAILED, "HTTP error: 503 Service Unavailable"))
    assert retry.transient(ended(att.FAILED, "Wrong HTTP Code"))  # what ESP8266httpUpdate says for a 503
    assert not retry.transient(ended(att.FAILED, "MD5 check failed"))
    assert not retry.transient(ended(att.FAILED, "flash write failed (simulated with --fail)"))


# -- a small world that carries out actions -------------------------------------------------------

@dataclass
class World:
    """The registry and the announcer as the model sees them: attempts per device, each device
    with a fate. Like the real announcer, the world retries an attempt that ended for a reason
    not the image's (a timeout, a busy server) up to ``retries`` times, unless the device is held."""

    version: str = "2.0.0"
    fates: dict[str, str] = field(default_factory=dict)  # device -> succeed | fail | timeout | busy | silent
    retries: int = 0
    # device -> [(attempt id, state, error)], oldest first
    attempts: dict[str, list[tuple[str, str, str | None]]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    announced: list[tuple[float, str]] = field(default_factory=list)  # by the rollout
    retried: list[tuple[float, str]] = field(default_factory=list)  # by the "announcer"
    running: dict[str, str] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def _open(self, device: str) -> str:
        attempt = f"a{next(self.ids)}"
        self.attempts.setdefault(device, []).append((attempt, att.PENDING, None))
        return attempt

    def apply(self, r: ro.Rollout, actions: list[ro.Action], now: float) -> ro.Rollout:
        for action in actions:
            if isinstance(action, ro.Announce):
                self.held.discard(action.device)
                self.announced.append((now, action.device))
                r = ro.bind(r, action.device, self._open(action.device))
            else:
                self.held.add(action.device)
                history = self.attempts.get(action.device, [])
                if history and history[-1][1] == att.PENDING:
                    history[-1] = (history[-1][0], att.CANCELLED, "cancelled")
        return r

    def _retrying(self, device: str) -> bool:
        history = self.attempts.get(device, [])
        return bool(history) and device not in self.held and history[-1][1] in (att.FAILED, att.TIMED_OUT) \
            and self.fates.get(device) in ("timeout", "busy") and len(history) <= self.retries

    def progress(self, now: float) -> None:
        """Every pending attempt moves one step according to its device's fate; due retries go out."""
        for device, history in self.attempts.items():
            if self._retrying(device):
                self.retried.append((now, device))
                self._open(device)
                continue
            attempt, state, _ = history[-1]
            if state != att.PENDING:
                continue
            fate = self.fates.get(device, "succeed")
            if fate == "succeed":
                history[-1] = (attempt, att.SUCCEEDED, None)
                self.running[device] = self.version
            elif fate == "fail":
                history[-1] = (attempt, att.FAILED, "MD5 check failed")
            elif fate == "timeout":
                history[-1] = (attempt, att.TIMED_OUT, "no confirmation within 600 s")
            elif fate == "busy":
                history[-1] = (attempt, att.FAILED, "HTTP error: 503 Service Unavailable")
            # silent: stays pending (the device is off)

    def observe(self, r: ro.Rollout) -> dict[str, ro.Observation]:
        seen = {}
        for m in r.members:
            history = self.attempts.get(m.device)
            newest = history[-1] if history else None
            seen[m.device] = ro.Observation(
                version=self.running.get(m.device, "1.0.0"), attempt=newest[0] if newest else None,
                target=self.version if newest else None, state=newest[1] if newest else None,
                error=newest[2] if newest else None, retrying=self._retrying(m.device))
        return seen


def run(r: ro.Rollout, world: World, times: list[float]) -> list[ro.Rollout]:
    seen = [r]
    for now in times:
        r, actions = ro.step(r, world.observe(r), now)
        r = world.apply(r, actions, now)
        seen.append(r)
        world.progress(now)
    return seen


def fleet(n: int) -> list[str]:
    return [f"dev-{i:03}" for i in range(n)]


def test_canary_failure_halts_before_anyone_else_is_told() -> None:
    ids = fleet(10)
    world = World(fates={"dev-000": "fail"})
    r = ro.start("1", "kitchen", "2.0.0", ["lights"], ro.Policy(waves=ro.parse_waves("1,50%,rest"), halt_at=20),
                 ids, 0.0, "admin")
    states = run(r, world, [float(t) for t in range(10)])
    last = states[-1]
    assert last.state == ro.HALTED and "dev-000: MD5 check failed" in (last.reason or "")
    assert [d for _, d in world.announced] == ["dev-000"]


def test_clean_rollout_goes_wave_by_wave_with_soak() -> None:
    ids = fleet(8)
    world = World()
    policy = ro.Policy(waves=ro.parse_waves("1,50%,rest"), soak=10)
    states = run(ro.start("1", "k", "2.0.0", ["g"], policy, ids, 0.0, "admin"), world, [float(t) for t in range(40)])
    assert states[-1].state == ro.COMPLETED
    first_time = {d: t for t, d in reversed(world.announced)}
    assert first_time["dev-000"] == 0
    assert min(first_time[d] for d in ids[1:4]) >= 10  # wave 2 waits out wave 1's soak
    assert min(first_time[d] for d in ids[4:]) >= 20


def test_a_retry_is_not_an_ending_and_the_last_failure_counts() -> None:
    world = World(fates={"dev-000": "busy"}, retries=2)
    policy = ro.Policy(waves=(ro.REST,), halt_at=None, advance_at=0)
    states = run(ro.start("1", "k", "2.0.0", ["g"], policy, ["dev-000"], 0.0, "a"), world,
                 [float(t) for t in range(10)])
    assert [t for t, _ in world.announced] == [0.0]  # the rollout announces once...
    assert len(world.retried) == 2                    # ...the announcer retries twice
    assert [s.members[0].state for s in states[1:4]] == [ro.ANNOUNCED, ro.RETRY, ro.ANNOUNCED]
    # Waiting for its retry, the member shows as waiting on every surface (CLI, dashboard).
    assert [ro.summary(s)["waves"][0]["queued"] for s in states[1:4]] == [0, 1, 0]
    last = states[-1].members[0]
    assert last.state == ro.FAILED and last.tries == 3 and states[-1].state == ro.COMPLETED


def test_a_halt_holds_the_retries_the_announcer_had_scheduled() -> None:
    world = World(fates={"dev-000": "fail", "dev-001": "busy"}, retries=5)
    policy = ro.Policy(waves=(ro.REST,), halt_at=50)
    r = run(ro.start("1", "k", "2.0.0", ["g"], policy, fleet(2), 0.0, "a"), world, [0.0, 1.0, 2.0, 3.0])[-1]
    assert r.state == ro.HALTED
    assert "dev-001" in world.held and r.member("dev-001").state == ro.WAITING
    retried = len(world.retried)
    run(r, world, [4.0, 5.0, 6.0])
    assert len(world.retried) == retried  # nothing more reaches the device while halted


def test_pause_withdraws_unstarted_announcements_and_resume_continues() -> None:
    world = World(fates={d: "silent" for d in fleet(3)})
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(), fleet(3), 0.0, "admin")
    r = run(r, world, [0.0])[-1]
    assert all(m.state == ro.ANNOUNCED for m in r.members)
    r = ro.pause(r, "alice", 1.0)
    r, actions = ro.step(r, world.observe(r), 2.0)
    assert sorted(a.device for a in actions if isinstance(a, ro.Withdraw)) == fleet(3)
    r = world.apply(r, actions, 2.0)
    assert all(m.state == ro.WAITING for m in r.members) and world.held == set(fleet(3))
    world.fates.clear()
    r = ro.resume(r, "bob", 3.0)
    r = run(r, world, [4.0, 5.0, 6.0])[-1]
    assert r.state == ro.COMPLETED
    assert [(e.who, e.what) for e in r.log if e.who != "rollout"] == [
        ("admin", "started: waves rest, advance at 100%, halt at 20% of at least 1 ended"),
        ("alice", "paused"), ("bob", "resumed")]


@pytest.mark.parametrize("state", ro.STATES)
def test_the_controls_a_summary_offers_are_exactly_the_ones_that_work(state: str) -> None:
    """The dashboard enables Pause, Resume and Abort from the summary's ``controls``: each one it
    offers must be accepted, and each one it greys out refused, in every state."""
    r = replace(ro.start("1", "k", "2.0.0", ["g"], ro.Policy(), fleet(2), 0.0, "admin"), state=state)
    offered = ro.summary(r)["controls"]
    for op, control in (("pause", ro.pause), ("resume", ro.resume), ("abort", ro.abort)):
        try:
            control(r, "u", 1.0)
            accepted = True
        except ro.ControlError:
            accepted = False
        assert offered[op] is accepted, f"{op} in {state}: offered {offered[op]}, accepted {accepted}"
    assert offered == {"pause": state in (ro.SCHEDULED, ro.RUNNING), "resume": state in (ro.PAUSED, ro.HALTED),
                       "abort": state not in (ro.COMPLETED, ro.ABORTED)}


def test_resume_past_a_halt_acknowledges_the_failures() -> None:
    world = World(fates={"dev-000": "fail"})
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(waves=ro.parse_waves("1,rest")), fleet(4), 0.0, "admin")
    r = run(r, world, [0.0, 1.0])[-1]
    assert r.state == ro.HALTED
    r = run(ro.resume(r, "admin", 2.0), world, [3.0, 4.0, 5.0])[-1]
    assert r.state == ro.COMPLETED and ro.counts(r.members)[ro.SUCCEEDED] == 3


def test_the_completion_note_counts_every_waves_successes() -> None:
    world = World(fates={})
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(waves=ro.parse_waves("1,1,rest")), fleet(4), 0.0, "admin")
    r = run(r, world, [float(t) for t in range(8)])[-1]
    assert r.state == ro.COMPLETED and r.waves == 3
    assert r.log[-1].what == "completed: 4 device(s) on 2.0.0"  # not the last wave's two


def test_json_round_trip_is_exact() -> None:
    policy = ro.Policy(waves=ro.parse_waves("a+b,25%,rest"), soak=60,
                       window=ro.parse_window("Mon-Fri 02:00+3h Europe/Berlin"))
    r = run(ro.start("7", "k", "2.0.0", ["g"], policy, [*fleet(9), "a", "b"], at("2026-12-01 02:10"), "admin"),
            World(fates={"dev-003": "busy"}, retries=1), [at("2026-12-01 02:10") + t for t in range(5)])[-1]
    import json

    assert ro.from_json(json.loads(json.dumps(ro.to_json(r)))) == r


# -- properties ----------------------------------------------------------------------------------

FATES = st.sampled_from(["succeed", "succeed", "succeed", "fail", "timeout", "busy", "silent"])
WAVES = st.lists(st.one_of(st.integers(1, 5).map(str), st.sampled_from(["10%", "25%", "50%", "rest"])),
                 min_size=1, max_size=4).map(",".join)
WINDOWS = st.one_of(st.none(), st.sampled_from(["Mon-Fri 02:00+3h Europe/Berlin", "daily 23:30+90m UTC",
                                                "Sat,Sun 10:00+1h America/New_York"]))


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 25), fates=st.lists(FATES, min_size=25, max_size=25), waves=WAVES, window=WINDOWS,
       halt_at=st.one_of(st.none(), st.floats(1, 100)), halt_min=st.integers(1, 5), retries=st.integers(0, 2),
       soak=st.sampled_from([0.0, 600.0, 7200.0]), start=st.floats(1.7e9, 1.8e9),
       steps=st.lists(st.floats(1, 4 * 3600), min_size=1, max_size=60),
       controls=st.lists(st.tuples(st.integers(0, 59), st.sampled_from(["pause", "resume", "abort"])), max_size=4))
def test_rollout_invariants(n: int, fates: list[str], waves: str, window: str | None, halt_at: float | None,
                            halt_min: int, retries: int, soak: float, start: float, steps: list[float],
                            controls: list[tuple[int, str]]) -> None:
    ids = fleet(n)
    policy = ro.Policy(waves=ro.parse_waves(waves), halt_at=halt_at, halt_min=halt_min, soak=soak,
                       window=ro.parse_window(window) if window else None)
    world = World(fates=dict(zip(ids, fates, strict=False)), retries=retries)
    r = ro.start("1", "k", "2.0.0", ["g"], policy, ids, start, "admin")
    assert sorted(m.device for m in r.members) == ids  # every eligible device in exactly one wave
    members = {m.device: m.wave for m in r.members}
    now = start
    by_step = dict(controls)
    halted_at_wave: int | None = None
    for index, gap in enumerate(steps):
        now += gap
        control = by_step.get(index)
        try:
            if control == "pause":
                r = ro.pause(r, "u", now)
            elif control == "resume":
                r = ro.resume(r, "u", now)
                halted_at_wave = None
            elif control == "abort":
                r = ro.abort(r, "u", now)
        except ro.ControlError:
            pass
        before = r
        r, actions = ro.step(r, world.observe(r), now)
        for action in actions:
            if isinstance(action, ro.Announce):
                # Never outside the window, never to a device outside the waves, only in the current wave.
                assert policy.window is None or policy.window.is_open(now)
                assert action.device in members and members[action.device] == r.wave
                assert r.state == ro.RUNNING
        if r.state == ro.HALTED:
            if halted_at_wave is None:
                halted_at_wave = r.wave
            assert r.reason
            # Never advances past a halt.
            assert r.wave == halted_at_wave and not any(isinstance(a, ro.Announce) for a in actions)
        if before.state in ro.FINAL:
            assert r.state == before.state
        assert r.wave >= before.wave  # never goes back
        # What step() relies on instead of clearing it: a live rollout has no halt reason, only a
        # wave with a next one soaks, and a member waiting to be told has no attempt.
        if r.state in (ro.SCHEDULED, ro.RUNNING, ro.PAUSED):
            assert r.reason is None
        assert r.soak_from is None or r.wave + 1 < r.waves
        assert all(m.attempt is None for m in r.members if m.state == ro.WAITING)
        # Resuming from storage continues exactly: the stored form steps to the same result.
        import json

        again = ro.from_json(json.loads(json.dumps(ro.to_json(before))))
        assert ro.step(again, world.observe(before), now) == (r, actions)
        r = world.apply(r, actions, now)
        held_before = set(world.held)
        retried = len(world.retried)
        world.progress(now)
        # The announcer's retries never reach a device the rollout withdrew.
        assert not {d for _, d in world.retried[retried:]} & held_before
    for t, _ in world.announced:
        assert policy.window is None or policy.window.is_open(t)


# -- the summary every surface shows, and the controls, value by value ------------------------------
# docs/protocol.md "Rollouts": the summary's keys, a wave's counts, when the window keys appear.

def halted_rollout() -> ro.Rollout:
    policy = ro.Policy(waves=ro.parse_waves("1,rest"), window=ro.parse_window("Mon-Fri 02:00+3h Europe/Berlin"))
    r = ro.start("7", "kitchen", "2.0.0", ["lights", "hall"], policy, fleet(3), 100.0, "config")
    world = World(fates={"dev-000": "fail"})
    return run(r, world, [at("2026-12-01 02:10"), at("2026-12-01 02:20")])[-1]


def test_the_summary_is_the_documented_shape() -> None:
    r = halted_rollout()
    now = at("2026-12-01 06:00")  # a Tuesday, after the window closed
    assert ro.summary(r, now) == {
        "id": "7", "image": "kitchen", "version": "2.0.0", "groups": ["lights", "hall"], "state": ro.HALTED,
        "controls": {"pause": False, "resume": True, "abort": True}, "wave": 1,
        "waves": [{"wave": 1, "devices": 1, "waiting": 0, "announced": 0, "retry": 0, "succeeded": 0, "failed": 1,
                   "cancelled": 0, "queued": 0},
                  {"wave": 2, "devices": 2, "waiting": 2, "announced": 0, "retry": 0, "succeeded": 0, "failed": 0,
                   "cancelled": 0, "queued": 2}],
        "devices": 3, "counts": {"waiting": 2, "announced": 0, "retry": 0, "succeeded": 0, "failed": 1, "cancelled": 0},
        "reason": "1 of 1 ended attempts failed (wave 1; halts at 20%), e.g. dev-000: MD5 check failed",
        "policy": ("waves 1,rest, advance at 100%, halt at 20% of at least 1 ended, "
                   "window Mon-Fri 02:00+3h Europe/Berlin"),
        "started_by": "config", "created": 100.0, "updated": at("2026-12-01 02:20"),
        "window_open": False, "next_window": at("2026-12-02 02:00"),
    }
    # The window keys only while the rollout is live, and only when asked at a time.
    assert "window_open" not in ro.summary(r) and "next_window" not in ro.summary(r)
    assert "window_open" not in ro.summary(ro.abort(r, "admin", now), now)
    assert ro.summary(r, at("2026-12-02 02:30"))["window_open"] is True
    plain = ro.start("8", "k", "2.0.0", ["g"], ro.Policy(), fleet(1), 0.0, "admin")
    assert "window_open" not in ro.summary(plain, 5.0)
    assert ro.summary(plain)["wave"] == 1
    assert ro.summary(ro.start("9", "k", "2.0.0", ["g"], ro.Policy(), [], 0.0, "admin"))["wave"] == 0  # no waves


def test_halt_abort_and_pause_stamp_the_time_and_write_the_log() -> None:
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(), fleet(2), 0.0, "admin")
    started = r.log
    assert ro.halt(r, "the broker is gone", 5.0) == replace(
        r, state=ro.HALTED, reason="the broker is gone", updated=5.0,
        log=(*started, ro.Entry(5.0, "rollout", "halted: the broker is gone")))
    assert ro.abort(r, "alice", 6.0) == replace(
        r, state=ro.ABORTED, reason="aborted by alice", updated=6.0,
        log=(*started, ro.Entry(6.0, "alice", "aborted: aborted by alice")))
    assert ro.abort(r, "config", 6.0, "the group was removed").reason == "the group was removed"
    assert ro.pause(r, "bob", 7.0) == replace(r, state=ro.PAUSED, updated=7.0,
                                              log=(*started, ro.Entry(7.0, "bob", "paused")))
    done = ro.abort(r, "alice", 6.0)
    assert ro.halt(done, "late", 8.0) is done  # a finished rollout stays as it ended
    with pytest.raises(ro.ControlError, match=r"^rollout 1 is already aborted$"):
        ro.abort(done, "bob", 9.0)
    with pytest.raises(ro.ControlError, match=r"^rollout 1 is aborted; only a scheduled or running rollout can be "
                                              r"paused$"):
        ro.pause(done, "bob", 9.0)


def test_a_device_that_cannot_be_announced_to_halts_the_rollout_and_waits() -> None:
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(), fleet(3), 0.0, "admin")
    r, actions = ro.step(r, {}, 1.0)
    assert [a.device for a in actions] == fleet(3)
    r = ro.bind(r, "dev-000", "a1")  # its announcement went out; the next one could not
    after = ro.unannounced(r, "dev-001", "broker refused the publish", 2.0)
    assert after.state == ro.HALTED and after.updated == 2.0
    assert after.reason == "cannot announce to dev-001: broker refused the publish"
    assert after.log[-1] == ro.Entry(2.0, "rollout", "halted: cannot announce to dev-001: broker refused the publish")
    assert after.members == (
        r.members[0],  # announced and bound: left as it is
        replace(r.members[1], state=ro.WAITING, attempt=None, tries=0),  # never told: announced again later
        r.members[2])


@pytest.mark.parametrize(("text", "want"), [("20%", 20.0), ("20", 20.0), (" 12.5 % ", 12.5), ("0", 0.0),
                                            ("100%", 100.0)])
def test_a_percentage_is_read_with_or_without_its_sign(text: str, want: float) -> None:
    assert ro.parse_percent(text, "halt_at") == want


@pytest.mark.parametrize("text", ["100.5%", "101", "-1", "twenty", "20%%", ""])
def test_a_percentage_outside_0_to_100_is_refused_by_name(text: str) -> None:
    with pytest.raises(ro.RolloutError) as caught:
        ro.parse_percent(text, "halt_at")
    assert str(caught.value) == f"halt_at: {text!r} is not a percentage; write e.g. 20%"


def test_the_next_opening_is_found_in_the_windows_own_time_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    w = ro.parse_window("Tue 07:00+30m Asia/Tokyo")
    # Tuesday 08:00 in Tokyo is still Monday in UTC: the next opening is a week on, not lost.
    assert w.next_open(at("2026-12-01 08:00", tokyo)) == at("2026-12-08 07:00", tokyo)
    assert w.next_open(at("2026-12-01 07:10", tokyo)) == at("2026-12-01 07:10", tokyo)  # open now: now


def test_an_unknown_time_zone_without_a_close_name_gets_the_general_hint() -> None:
    with pytest.raises(ro.RolloutError) as caught:
        ro.parse_window("daily 02:00+1h Qqqq/Zzzzzz")
    assert str(caught.value) == "unknown time zone 'Qqqq/Zzzzzz' (use an IANA name such as Europe/Berlin)"


def test_a_member_is_found_by_its_device() -> None:
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(), fleet(2), 0.0, "admin")
    assert r.member("dev-001") == ro.Member("dev-001", 0)
    assert r.member("nobody") is None


def test_resume_acknowledges_only_the_failures_and_says_what_it_resumed_past() -> None:
    r = halted_rollout()
    failed, waiting = r.members[0], r.members[1:]
    resumed = ro.resume(r, "bob", 9.0)
    assert resumed == replace(
        r, state=ro.RUNNING, reason=None, updated=9.0,
        members=(replace(failed, acknowledged=True), *waiting),  # a success or a wait stays counted
        log=(*r.log, ro.Entry(9.0, "bob", f"resumed past: {r.reason}")))
    paused = ro.pause(resumed, "bob", 10.0)
    assert ro.resume(paused, "eve", 11.0).log[-1] == ro.Entry(11.0, "eve", "resumed")
    with pytest.raises(ro.ControlError, match=r"^rollout 7 is running; only a paused or halted rollout can be "
                                              r"resumed$"):
        ro.resume(resumed, "bob", 12.0)


def test_every_rule_of_the_policy_survives_storage() -> None:
    policy = ro.Policy(waves=ro.parse_waves("1,rest"), advance_at=80.0, soak=30.0, halt_at=None, halt_min=3)
    r = ro.start("1", "k", "2.0.0", ["g"], policy, fleet(2), 0.0, "admin")
    assert ro.from_json(ro.to_json(r)).policy == policy


# -- the parsers, value by value and word by word ----------------------------------------------------

@pytest.mark.parametrize(("text", "days", "start", "seconds", "stored"), [
    ("daily 23:59+1m UTC", range(7), "23:59", 60, "daily 23:59+1m UTC"),  # the shortest, the last minute
    ("* 00:00+7d UTC", range(7), "00:00", 7 * 86400, "* 00:00+7d UTC"),  # the longest
    ("  Sat,Sun   10:00 + 30m   UTC ", (5, 6), "10:00", 1800, "Sat,Sun 10:00 + 30m UTC"),
    ("mon,wed-fri 2:05+1h30m UTC", (0, 2, 3, 4), "02:05", 5400, "mon,wed-fri 2:05+1h30m UTC"),
    ("sunday 01:00+90min UTC", (6,), "01:00", 5400, "sunday 01:00+90min UTC"),
    ("Fri-Mon 22:00+2d3h4m UTC", (4, 5, 6, 0), "22:00", 60 * (2 * 1440 + 3 * 60 + 4), "Fri-Mon 22:00+2d3h4m UTC"),
])
def test_a_window_is_read_as_written(text: str, days: tuple[int, ...], start: str, seconds: int, stored: str) -> None:
    w = ro.parse_window(text)
    assert (w.days, w.start.strftime("%H:%M"), w.seconds, w.tz, w.text) == (frozenset(days), start, seconds, "UTC",
                                                                             stored)


@pytest.mark.parametrize(("text", "message"), [
    ("daily 24:00+1h UTC", "24:00 is not a time of day (00:00 to 23:59)"),
    ("daily 23:60+1h UTC", "23:60 is not a time of day (00:00 to 23:59)"),
    ("daily 02:00+0m UTC", "a window lasts from 1m to 7d, not 0m"),
    ("daily 02:00+7d1m UTC", "a window lasts from 1m to 7d, not 7d1m"),
    ("daily 02:00+1h", "'daily 02:00+1h' has no time zone; add one such as Europe/Berlin or UTC (the window follows "
                       "that zone's clock, summer time included)"),
    ("Mon-Fry 02:00+1h UTC", "'fry' is not a day. Did you mean 'Fri'?"),
    ("Mnday 02:00+1h UTC", "'mnday' is not a day. Did you mean 'Mon'?"),
    ("xyz-Fri 02:00+1h UTC", "'xyz' is not a day. Write e.g. Mon-Fri, Sat,Sun or daily."),
    # One-letter days, as in "M-F", get the three-letter name they start.
    ("M-F 02:00+1h UTC", "'m' is not a day. Did you mean 'Mon'?"),
    ("Mon-F 02:00+1h UTC", "'f' is not a day. Did you mean 'Fri'?"),
])
def test_a_bad_window_is_refused_in_words(text: str, message: str) -> None:
    with pytest.raises(ro.RolloutError) as caught:
        ro.parse_window(text)
    assert str(caught.value) == message


def test_a_window_open_for_days_is_still_open_on_its_last_one() -> None:
    w = ro.parse_window("Mon 12:00+2d UTC")  # Monday noon to Wednesday noon
    utc = ZoneInfo("UTC")
    assert w.is_open(at("2026-12-02 11:59", utc)) and not w.is_open(at("2026-12-02 12:00", utc))
    # A window of exactly one day, and the look back at every day it may have opened on.
    day = ro.parse_window("Tue 12:00+1d UTC")
    assert day.is_open(at("2026-12-02 11:59", utc)) and not day.is_open(at("2026-12-02 12:00", utc))
    # Three real days from Saturday 23:59, over the night the clocks go forward: until Wednesday
    # 00:59, a day further than three calendar days reach.
    spring = ro.parse_window("Sat 23:59+3d Europe/Berlin")
    assert spring.is_open(at("2026-04-01 00:30")) and not spring.is_open(at("2026-04-01 00:59"))
    assert spring.next_open(at("2026-04-01 01:00")) == at("2026-04-04 23:59")
    tokyo = ZoneInfo("Asia/Tokyo")
    late = ro.parse_window("Mon 23:00+2h Asia/Tokyo")  # Monday 23:00 to Tuesday 01:00 in Tokyo
    assert late.is_open(at("2026-12-01 00:30", tokyo))  # still Monday 15:30 in UTC


@pytest.mark.parametrize(("text", "wave"), [
    ("rest", ro.REST), ("ALL", ro.REST), ("100%", ro.REST), ("100.0%", ro.REST), ("0.5%", ro.WaveSpec(percent=0.5)),
    ("3", ro.WaveSpec(count=3)), ("kitchen-1+kitchen-2", ro.WaveSpec(devices=("kitchen-1", "kitchen-2"))),
])
def test_a_wave_is_read_as_written(text: str, wave: ro.WaveSpec) -> None:
    assert ro.parse_wave(text) == wave


@pytest.mark.parametrize(("text", "message"), [
    ("0", "a wave of 0 devices reaches nobody; write at least 1"),
    ("100.5%", "100.5% is not a share of the fleet; write more than 0% and at most 100%"),
    ("0%", "0% is not a share of the fleet; write more than 0% and at most 100%"),
    ("kitchen 1", "'kitchen 1' is not a wave; write a count (1), a share (25%), 'rest', or device ids joined by '+' "
                  "(kitchen-1+kitchen-2)"),
])
def test_a_bad_wave_is_refused_in_words(text: str, message: str) -> None:
    with pytest.raises(ro.RolloutError) as caught:
        ro.parse_wave(text)
    assert str(caught.value) == message
    with pytest.raises(ro.RolloutError) as caught:
        ro.parse_waves(" , ")
    assert str(caught.value) == "no waves given; write e.g. 1,25%,rest"


def test_a_pause_withdraws_only_what_no_device_has_started() -> None:
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(), fleet(4), 0.0, "admin")
    r, _ = ro.step(r, {}, 1.0)
    for device, attempt in zip(fleet(4), ("a0", "a1", "a2", "a3"), strict=True):
        r = ro.bind(r, device, attempt)
    r = ro.pause(r, "admin", 2.0)
    seen = {
        "dev-000": ro.Observation("1.0.0", "a0", "2.0.0", att.PENDING),  # not started: taken back
        "dev-001": ro.Observation("1.0.0", "a1", "2.0.0", att.DOWNLOADING),  # under way: left to finish
        "dev-002": ro.Observation("1.0.0", "r2", "2.0.0", att.PENDING),  # the announcer's retry, not started
        # dev-003: nothing known about it
    }
    after, actions = ro.step(r, seen, 3.0)
    assert actions == [ro.Withdraw("dev-000"), ro.Withdraw("dev-002")]
    assert after.members[0] == replace(r.members[0], state=ro.WAITING, attempt=None)  # nothing of it left
    assert after.members[2] == replace(r.members[2], state=ro.WAITING, attempt=None, tries=2)
    assert after.member("dev-001") == r.members[1] and after.member("dev-003") == r.members[3]


# -- what one observation does to one member, and the thresholds at their edges --------------------

M = ro.Member("d", 0)
SEEN = ro.Observation  # version, attempt, target, state, error, retrying


@pytest.mark.parametrize(("member", "seen", "after"), [
    # Running the version ends it as a success, whatever it waited for; an old error goes.
    (replace(M, state=ro.RETRY, attempt="a1", error="busy"), SEEN("2.0.0"), replace(M, state=ro.SUCCEEDED,
                                                                                    attempt="a1")),
    (replace(M, state=ro.SUCCEEDED), SEEN("1.0.0"), replace(M, state=ro.SUCCEEDED)),  # ended stays ended
    # Announced before a crash lost the rollout's record of it: the open attempt is adopted.
    (M, SEEN("1.0.0", "a1", "2.0.0", att.PENDING), replace(M, state=ro.ANNOUNCED, attempt="a1", tries=1)),
    (M, SEEN("1.0.0", "a1", "1.5.0", att.PENDING), M),  # another version's attempt is not ours
    (M, SEEN("1.0.0", None, "2.0.0", att.PENDING), M),
    # Announced but not bound yet: nothing to compare with.
    (replace(M, state=ro.ANNOUNCED), SEEN("1.0.0"), replace(M, state=ro.ANNOUNCED)),
    (replace(M, state=ro.ANNOUNCED, attempt="a1", tries=1), SEEN("1.0.0"), replace(M, tries=1)),  # its attempt lost
    (replace(M, state=ro.ANNOUNCED, attempt="a1"), SEEN("1.0.0", "a2", "3.0.0", att.PENDING),
     replace(M, state=ro.CANCELLED, attempt="a1", error="replaced by an announcement of 3.0.0")),
    (replace(M, state=ro.RETRY, attempt="a1", tries=1, error="busy"), SEEN("1.0.0", "a2", "2.0.0", att.DOWNLOADING),
     replace(M, state=ro.ANNOUNCED, attempt="a2", tries=2, error="busy")),  # the announcer's retry
    (replace(M, state=ro.ANNOUNCED, attempt="a1", error="x"), SEEN("1.0.0", "a1", "2.0.0", att.SUCCEEDED),
     replace(M, state=ro.SUCCEEDED, attempt="a1")),
    (replace(M, state=ro.ANNOUNCED, attempt="a1"), SEEN("1.0.0", "a1", "2.0.0", att.CANCELLED, "by alice"),
     replace(M, state=ro.CANCELLED, attempt="a1", error="by alice")),
    (replace(M, state=ro.ANNOUNCED, attempt="a1"), SEEN("1.0.0", "a1", "2.0.0", att.CANCELLED),
     replace(M, state=ro.CANCELLED, attempt="a1", error="cancelled")),
    (replace(M, state=ro.ANNOUNCED, attempt="a1"), SEEN("1.0.0", "a1", "2.0.0", att.FAILED, "MD5", retrying=True),
     replace(M, state=ro.RETRY, attempt="a1", error="MD5")),
    (replace(M, state=ro.ANNOUNCED, attempt="a1"), SEEN("1.0.0", "a1", "2.0.0", att.TIMED_OUT),
     replace(M, state=ro.FAILED, attempt="a1", error=att.TIMED_OUT)),
])
def test_each_observation_moves_a_member_exactly_so(member: ro.Member, seen: ro.Observation,
                                                    after: ro.Member) -> None:
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(), [], 0.0, "admin")
    assert ro._fold(r, member, seen) == after


def ended(states: list[str], policy: ro.Policy, wave: int = 0, size: int = 2) -> ro.Rollout:
    """A running rollout whose members (dev-000, …, in waves of ``size``) ended so."""
    members = tuple(ro.Member(f"dev-{i:03}", i // size, state, f"a{i}", 1, "MD5" if state == ro.FAILED else None)
                    for i, state in enumerate(states))
    return ro.Rollout("1", "k", "2.0.0", ("g",), policy, members, -(-len(states) // size), state=ro.RUNNING,
                      wave=wave)


def test_the_halt_threshold_is_reached_at_its_value_and_counts_overall_too() -> None:
    r, _ = ro.step(ended([ro.FAILED, ro.SUCCEEDED], ro.Policy(halt_at=50)), {}, 5.0)
    reason = "1 of 2 ended attempts failed (wave 1; halts at 50%), e.g. dev-000: MD5"
    assert (r.state, r.reason, r.updated, r.log[-1]) == (ro.HALTED, reason, 5.0,
                                                         ro.Entry(5.0, "rollout", f"halted: {reason}"))
    assert ro.step(ended([ro.FAILED, ro.SUCCEEDED], ro.Policy(halt_at=50.4, advance_at=0)), {}, 5.0)[0].state \
        == ro.COMPLETED
    assert ro.step(ended([ro.SUCCEEDED] * 2, ro.Policy(halt_at=0)), {}, 5.0)[0].state == ro.COMPLETED  # no failure
    # Too few ended in this wave to judge it, but enough counting the waves before.
    r = ro.step(ended([ro.SUCCEEDED, ro.SUCCEEDED, ro.FAILED, ro.ANNOUNCED], ro.Policy(halt_min=2), wave=1), {},
                5.0)[0]
    assert r.reason == "1 of 3 ended attempts failed (overall; halts at 20%), e.g. dev-002: MD5"


def test_a_halt_counts_every_failure_against_every_ending() -> None:
    # 2 of 5 ended failed is 40 %: halts at 40 %, not at 41 % (the three still open do not count).
    states = [ro.FAILED, ro.FAILED, ro.SUCCEEDED, ro.SUCCEEDED, ro.SUCCEEDED, ro.ANNOUNCED, ro.ANNOUNCED,
              ro.ANNOUNCED]
    r = ro.step(ended(states, ro.Policy(halt_at=40), size=8), {}, 5.0)[0]
    assert r.reason == "2 of 5 ended attempts failed (wave 1; halts at 40%), e.g. dev-000: MD5"
    assert ro.step(ended(states, ro.Policy(halt_at=41), size=8), {}, 5.0)[0].state == ro.RUNNING


def test_a_rollout_writes_its_own_steps_in_its_log() -> None:
    """What the rollout did by itself is in its log, stamped, under "rollout": the history the
    API and the dashboard show beside who started, paused or resumed it."""
    r = ro.start("1", "k", "2.0.0", ["g"], ro.Policy(waves=ro.parse_waves("1,1,rest"), soak=0), fleet(3), 0.0, "ann")
    r, actions = ro.step(r, {}, 1.0)
    assert actions == [ro.Announce("dev-000")] and r.member("dev-000") == ro.Member("dev-000", 0, ro.ANNOUNCED,
                                                                                     tries=1)
    for now, device in ((2.0, "dev-000"), (3.0, "dev-001"), (4.0, "dev-002")):
        r, actions = ro.step(r, {device: ro.Observation(version="2.0.0")}, now)
    assert (r.state, r.wave, r.updated, actions) == (ro.COMPLETED, 2, 4.0, [])
    assert r.log[1:] == (ro.Entry(1.0, "rollout", "running"),
                         ro.Entry(2.0, "rollout", "wave 1 done; wave 2 starts"),
                         ro.Entry(3.0, "rollout", "wave 2 done; wave 3 starts"),
                         ro.Entry(4.0, "rollout", "completed: 3 device(s) on 2.0.0"))
    assert ro.summary(r)["wave"] == 3


def test_the_last_wave_completes_without_soaking() -> None:
    # The soak is the wait before the next wave; after the last one there is none to wait for.
    r = ro.step(ended([ro.SUCCEEDED], ro.Policy(soak=3600)), {}, 5.0)[0]
    assert (r.state, r.soak_from) == (ro.COMPLETED, None)


def test_a_wave_advances_only_at_its_success_threshold() -> None:
    r = ro.step(ended([ro.FAILED, ro.SUCCEEDED, ro.ANNOUNCED], ro.Policy(halt_at=None, advance_at=50.4)), {}, 5.0)[0]
    reason = "wave 1 ended with 1 of 2 succeeded, below the 50.4% it needs to advance"
    assert (r.state, r.reason, r.updated, r.log[-1]) == (ro.HALTED, reason, 5.0,
                                                         ro.Entry(5.0, "rollout", f"halted: {reason}"))
    r = ro.step(ended([ro.FAILED, ro.SUCCEEDED, ro.ANNOUNCED], ro.Policy(halt_at=None, advance_at=50)), {}, 5.0)[0]
    assert (r.state, r.wave) == (ro.RUNNING, 1)
    done = ro.step(ended([ro.SUCCEEDED], ro.Policy()), {}, 5.0)[0]
    assert done.state == ro.COMPLETED and ro.step(done, {}, 9.0) == (done, [])  # nothing changed: not restamped


def test_a_rollout_starts_stamped_and_logged_by_whoever_started_it() -> None:
    policy = ro.Policy(halt_at=None)
    assert policy.describe() == "waves rest, advance at 100%, never halt"
    assert ro.start("3", "k", "2.0.0", ["g"], policy, ["b", "a"], 50.0, "alice") == ro.Rollout(
        "3", "k", "2.0.0", ("g",), policy, (ro.Member("a", 0), ro.Member("b", 0)), 1, created=50.0, updated=50.0,
        started_by="alice", log=(ro.Entry(50.0, "alice", "started: waves rest, advance at 100%, never halt"),))


def test_shares_round_up_and_a_share_already_reached_adds_no_wave() -> None:
    many = [f"d{i:04}" for i in range(1010)]
    assert [len(w) for w in ro.plan_waves(ro.parse_waves("10%,rest"), many)] == [101, 909]  # ceil(10% of 1010)
    assert [len(w) for w in ro.plan_waves(ro.parse_waves("5,10%,rest"), fleet(20))] == [5, 15]
