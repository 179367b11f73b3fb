"""Runs the pure rollout model (core/rollout.py) over time: one job, the clock and the controls.

Every half second each live rollout is stepped with what the registry knows of its members'
attempts; the announcements it asks for go through the announcer (as an install of the
rollout's version, so the device's target sticks), withdrawals as a cancel. Rollouts live in
the registry and are flushed in the same transaction as the attempts they opened, so a restart,
even after kill -9, continues from the same members, waves and counts.

A group with a ``rollout:`` policy gets one automatically for each new release of its image
(started by "config"); anyone else starts one through the admin API.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import hass_rollout, protocol, retry
from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.errors import NotFound, TinyOTAError
from tinyota_mqtt.fleet.announcer import Announcer
from tinyota_mqtt.fleet.events import Events
from tinyota_mqtt.fleet.publisher import Publisher
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.store import FirmwareStore

log = logging.getLogger("tinyota.rollout")


class Conflict(TinyOTAError):
    status = 409


class Rollouts:
    def __init__(self, config: Config, store: FirmwareStore, registry: Registry, announcer: Announcer,
                 publisher: Publisher, events: Events, *, clock: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.announcer = announcer
        self.publisher = publisher
        self.events = events
        self.clock = clock
        self.topics = protocol.Topics(config.mqtt.prefix)

    # -- reading ---------------------------------------------------------------------------------

    def list(self) -> list[ro.Rollout]:
        return self.registry.rollouts()

    def get(self, rollout_id: str) -> ro.Rollout:
        rollout = self.registry.rollout(rollout_id)
        if rollout is None:
            raise NotFound(f"no rollout {rollout_id!r}", "`tinyota rollout list` shows them")
        return rollout

    def summary(self, rollout: ro.Rollout) -> dict[str, object]:
        return ro.summary(rollout, self.clock())

    # -- starting --------------------------------------------------------------------------------

    def start(self, image: str, version: str, *, groups: Sequence[str] = (), policy: ro.Policy | None = None,
              who: str) -> ro.Rollout:
        if image not in self.config.images:
            raise NotFound(f"image {image!r} is not in the config", "images: " + ", ".join(self.config.images))
        self.store.get(image, version)  # NotFound with a hint when it was never released
        using = [g.name for g in self.config.groups.values() if g.image == image]
        chosen = list(dict.fromkeys(groups)) or using
        for name in chosen:
            if name not in self.config.groups:
                raise NotFound(f"no group {name!r}", "groups: " + ", ".join(self.config.groups))
            if name not in using:
                raise TinyOTAError(f"group {name} runs image {self.config.groups[name].image}, not {image}",
                                   "groups of " + image + ": " + (", ".join(using) or "none"))
        if not chosen:
            raise TinyOTAError(f"no group runs image {image}", "give a group `image: " + image + "` in the config")
        if policy is None:
            own = [p for g in chosen if (p := self.config.groups[g].rollout) is not None]
            policy = own[0] if len(own) == 1 else ro.Policy()
        for other in self.registry.rollouts():
            if other.active and set(other.groups) & set(chosen):
                raise Conflict(f"rollout {other.id} ({other.image} {other.version}) is still {other.state} "
                               f"on {', '.join(sorted(set(other.groups) & set(chosen)))}",
                               f"`tinyota rollout abort {other.id}` first")
        members = sorted(d.id for g in chosen for d in self.config.members(g))
        for spec in policy.waves:
            strangers = [d for d in spec.devices if d not in members]
            if strangers:
                raise TinyOTAError(f"canary {', '.join(strangers)} is not a device of {', '.join(chosen)}")
        eligible = [d for d in members if self.registry.device(d).version != version]
        rollout = ro.start(self.registry.next_rollout_id(), image, version, chosen, policy, eligible,
                           self.clock(), who)
        log.info("rollout %s of %s %s by %s: %d device(s) in %d wave(s); %s", rollout.id, image, version, who,
                 len(rollout.members), rollout.waves, policy.describe())
        self._put(rollout, before=None)  # first: a crash while announcing leaves members to adopt
        self._advance(rollout, before=rollout)
        self.registry.flush()
        return self.get(rollout.id)

    def on_releases(self, *, startup: bool) -> None:
        """A release appeared (or the server started): groups with a rollout policy follow it.

        At start-up a release may have been added while the server was down, so it is rolled out
        too, but only when a device is *known* to run something else: on a fresh state file no
        device has reported yet, and the release already installed everywhere must not go out again.
        """
        for group in self.config.groups.values():
            if not (group.auto_update and group.rollout is not None):
                continue
            latest = self.store.latest(group.image)
            if latest is None:
                continue
            mine = [r for r in self.registry.rollouts() if group.name in r.groups]
            if any(r.version == latest.version for r in mine):
                continue  # already rolled out (or rolling), whatever became of it
            outdated = [d for d in self.config.members(group.name)
                        if self.registry.device(d.id).version != latest.version
                        and not (startup and self.registry.device(d.id).version is None)]
            if not outdated:
                continue
            for old in mine:
                if old.active:  # a newer build supersedes the one still going out
                    self._put(ro.abort(old, "config", self.clock(), f"superseded by {latest.version}"), before=old)
            # start() takes the group's own policy: it is the only group of this rollout.
            self.start(group.image, latest.version, groups=[group.name], who="config")

    # -- controls --------------------------------------------------------------------------------

    def control(self, rollout_id: str, action: str, who: str) -> ro.Rollout:
        rollout = self.get(rollout_id)
        now = self.clock()
        try:
            if action == "pause":
                changed = ro.pause(rollout, who, now)
            elif action == "resume":
                changed = ro.resume(rollout, who, now)
            elif action == "abort":
                changed = ro.abort(rollout, who, now)
            else:
                raise NotFound(f"no rollout action {action!r}", "pause, resume or abort")
        except ro.ControlError as exc:
            raise Conflict(str(exc)) from None
        log.info("rollout %s %s by %s", rollout.id, changed.state, who)
        self._advance(changed, before=rollout)  # kept even when the step changes nothing more
        self.registry.flush()
        return self.get(rollout_id)

    # -- the clock -------------------------------------------------------------------------------

    def tick(self) -> None:
        for rollout in self.registry.rollouts():
            if rollout.active or any(m.state in (ro.ANNOUNCED, ro.RETRY) for m in rollout.members):
                self._advance(rollout, before=rollout)

    def _observe(self, rollout: ro.Rollout) -> dict[str, ro.Observation]:
        now = self.clock()
        try:
            sha256: str | None = self.store.get(rollout.image, rollout.version).sha256
        except NotFound:
            sha256 = None  # deleted meanwhile; the next announce halts the rollout with the reason
        seen = {}
        for m in rollout.members:
            record = self.registry.device(m.device)
            current = self.registry.open_attempt(m.device)
            recent: list[att.Attempt] = [current] if current else []
            group = self.config.group_of(m.device)
            policy = retry.RetryPolicy(group.retries, group.retry_backoff) if group else retry.RetryPolicy()
            if current is None and m.state in (ro.ANNOUNCED, ro.RETRY):
                # Ended: the newest attempts say how, and whether the announcer tries again.
                recent = self.registry.recent_attempts(m.device, policy.retries + 1)
            newest = recent[0] if recent else None
            retrying = newest is not None and newest.state in (att.FAILED, att.TIMED_OUT) and \
                retry.decide((rollout.version, sha256), record.version, recent, policy, now).at is not None
            seen[m.device] = ro.Observation(
                version=record.version, attempt=newest.id if newest else None,
                target=newest.version if newest else None, state=newest.state if newest else None,
                error=newest.error if newest else None, retrying=retrying)
        return seen

    def _advance(self, rollout: ro.Rollout, *, before: ro.Rollout) -> None:
        """Step ``rollout`` and keep the result; ``before`` is what the registry holds."""
        now = self.clock()
        after, actions = ro.step(rollout, self._observe(rollout), now)
        for action in actions:
            if isinstance(action, ro.Withdraw):
                self.announcer.cancel([action.device])
                continue
            try:
                started = self.announcer.install([action.device], rollout.version)
            except TinyOTAError as exc:
                after = ro.unannounced(after, action.device, exc.message, now)
                break
            if started:
                after = ro.bind(after, action.device, started[-1].id)
        self._put(after, before=before)

    def _put(self, rollout: ro.Rollout, *, before: ro.Rollout | None) -> None:
        """Keep ``rollout``, which was ``before`` (None: it is new), and tell whoever follows it."""
        if before == rollout:
            return
        self.registry.put_rollout(rollout)
        if before is None or before.state != rollout.state or before.wave != rollout.wave:
            level = logging.WARNING if rollout.state == ro.HALTED else logging.INFO
            log.log(level, "rollout %s (%s %s): %s, wave %d of %d%s", rollout.id, rollout.image, rollout.version,
                    rollout.state, rollout.wave + 1, rollout.waves, f": {rollout.reason}" if rollout.reason else "")
        self.publish(rollout)
        if len(self.events):
            self.events.emit({"type": "rollout", "rollout": self.summary(rollout)})

    # -- MQTT and Home Assistant -----------------------------------------------------------------

    def publish(self, rollout: ro.Rollout) -> None:
        """Its retained state, and its image's when it is the image's newest rollout.

        Unchanged payloads are not sent again (the publisher remembers what it sent); after a
        reconnect the service makes it forget first, so ``publish_all`` sends everything.
        """
        body = json.dumps(self.summary(rollout), separators=(",", ":")).encode()
        self.publisher.publish(hass_rollout.rollout_topic(self.topics, rollout.id), body, retain=True)
        newest = max((r for r in self.registry.rollouts() if r.image == rollout.image), key=lambda r: int(r.id))
        if newest.id == rollout.id:
            self._discover(rollout.image)
            self.publisher.publish(hass_rollout.image_topic(self.topics, rollout.image), body, retain=True)

    def publish_all(self) -> None:
        """After a (re)connect: every rollout's retained state, and the Home Assistant sensors."""
        for rollout in self.registry.rollouts():
            self.publish(rollout)
        for group in self.config.groups.values():
            if group.rollout is not None:
                self._discover(group.image)

    def _discover(self, image: str) -> None:
        """A sensor for each image that has (or, by its groups' policy, will have) rollouts."""
        if self.config.homeassistant.enabled:
            topic, payload, retain = hass_rollout.discovery(self.config.homeassistant.discovery_prefix,
                                                            self.topics, image)
            self.publisher.publish(topic, payload, retain=retain)
