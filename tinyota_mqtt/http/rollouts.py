"""Admin API for staged rollouts, and the one-call install of many devices.

    GET  /api/rollouts                    every rollout's summary, newest first
    POST /api/rollouts                    start one: {"image", "version", "groups"?, "waves"?, ...}
    GET  /api/rollouts/<id>               summary + members + history
    POST /api/rollouts/<id>/pause|resume|abort
    POST /api/install                     {"devices": [...]} or {"group": G}, "version"?: one call for many
    GET  /rollouts                        the dashboard's rollout page (live through /api/events)

The JSON is documented in docs/protocol.md. Who started, paused or aborted a rollout is the
admin user name the request authenticated with.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from tinyota_mqtt.core import rollout as ro
from tinyota_mqtt.errors import TinyOTAError
from tinyota_mqtt.http.api import AdminHandler
from tinyota_mqtt.http.dashboard import DashboardHandler

_POLICY_FIELDS = ("waves", "advance_at", "soak", "halt_at", "halt_min", "window")


def routes(ctx: dict[str, Any]) -> list[Any]:
    return [
        (r"/api/rollouts", RolloutsHandler, ctx),
        (r"/api/rollouts/([0-9]{1,12})", RolloutHandler, ctx),
        (r"/api/rollouts/([0-9]{1,12})/(pause|resume|abort)", RolloutControlHandler, ctx),
        (r"/api/install", BulkInstallHandler, ctx),
        (r"/rollouts", RolloutsPage, ctx),
    ]


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise TinyOTAError(f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


def _percent(body: dict[str, Any], key: str) -> float:
    value = body[key]
    if isinstance(value, str):
        try:
            return ro.parse_percent(value, key)
        except ro.RolloutError as exc:
            raise TinyOTAError(str(exc)) from None
    return _number(body, key, 0, 100)


def policy_from(body: dict[str, Any], base: ro.Policy) -> ro.Policy:
    """``base`` (the group's own policy, or the defaults) with the fields the request gives."""
    unknown = [k for k in body if k not in (*_POLICY_FIELDS, "image", "version", "groups")]
    if unknown:
        raise TinyOTAError(f"unknown field(s): {', '.join(sorted(unknown))}",
                           "fields: image, version, groups, " + ", ".join(_POLICY_FIELDS))
    changes: dict[str, Any] = {}
    try:
        if body.get("waves") is not None:
            waves = body["waves"]
            if isinstance(waves, list) and all(isinstance(w, str) for w in waves):
                changes["waves"] = tuple(ro.parse_wave(w) for w in waves)
            elif isinstance(waves, str):
                changes["waves"] = ro.parse_waves(waves)
            else:
                raise TinyOTAError('waves must be a string such as "1,25%,rest" or a list of such strings')
        if "window" in body:
            window = body["window"]
            if window is not None and not isinstance(window, str):
                raise TinyOTAError("window must be a string such as 'Mon-Fri 02:00+3h Europe/Berlin', or null")
            changes["window"] = ro.parse_window(window) if window else None
    except ro.RolloutError as exc:
        raise TinyOTAError(str(exc)) from None
    if body.get("advance_at") is not None:
        changes["advance_at"] = _percent(body, "advance_at")
    if "halt_at" in body:
        changes["halt_at"] = None if body["halt_at"] in (None, "never") else _percent(body, "halt_at")
    if body.get("soak") is not None:
        changes["soak"] = _number(body, "soak", 0, 30 * 86400)
    if body.get("halt_min") is not None:
        if not isinstance(body["halt_min"], int) or isinstance(body["halt_min"], bool):
            raise TinyOTAError("halt_min must be a whole number")
        changes["halt_min"] = int(_number(body, "halt_min", 1, 1_000_000))
    return replace(base, **changes)


def detail(summary: dict[str, Any], rollout: ro.Rollout) -> dict[str, Any]:
    return {
        **summary,
        "members": [{"device": m.device, "wave": m.wave + 1, "state": m.state, "attempt": m.attempt,
                     "tries": m.tries, "error": m.error, "acknowledged": m.acknowledged}
                    for m in rollout.members],
        "history": [asdict(e) for e in rollout.log],
    }


class RolloutsHandler(AdminHandler):
    def get(self) -> None:
        rollouts = self.service.rollouts
        self.write_json([rollouts.summary(r) for r in reversed(rollouts.list())])

    def post(self) -> None:
        body = self.json_body()
        image, version, groups = body.get("image"), body.get("version"), body.get("groups") or []
        if not isinstance(image, str) or not isinstance(version, str):
            raise TinyOTAError("image and version are required strings")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise TinyOTAError("groups must be a list of group names")
        config = self.service.config
        own = [p for g in groups or [n for n, grp in config.groups.items() if grp.image == image]
               if g in config.groups and (p := config.groups[g].rollout) is not None]
        base = own[0] if len(own) == 1 else ro.Policy()
        policy = policy_from(body, base)
        assert self.principal is not None
        rollout = self.service.rollouts.start(image, version, groups=groups, policy=policy,
                                              who=self.principal.username)
        self.write_json(detail(self.service.rollouts.summary(rollout), rollout), 201)


class RolloutHandler(AdminHandler):
    def get(self, rollout_id: str) -> None:
        rollout = self.service.rollouts.get(rollout_id)
        self.write_json(detail(self.service.rollouts.summary(rollout), rollout))


class RolloutControlHandler(AdminHandler):
    def post(self, rollout_id: str, action: str) -> None:
        assert self.principal is not None
        rollout = self.service.rollouts.control(rollout_id, action, self.principal.username)
        self.write_json(detail(self.service.rollouts.summary(rollout), rollout))


class BulkInstallHandler(AdminHandler):
    """One request for many devices: the dashboard's ticked rows, or every outdated device of a group."""

    def post(self) -> None:
        body = self.json_body()
        version, devices, group = body.get("version"), body.get("devices"), body.get("group")
        if version is not None and not isinstance(version, str):
            raise TinyOTAError("version must be a string")
        if (devices is None) == (group is None):
            raise TinyOTAError('give "devices": [ids] or "group": name, not both')
        if group is not None:
            if not isinstance(group, str):
                raise TinyOTAError("group must be a group name")
            started = self.service.install_group(group, version)
        else:
            if not isinstance(devices, list) or not devices or not all(isinstance(d, str) for d in devices):
                raise TinyOTAError("devices must be a non-empty list of device ids")
            started = self.service.install(list(dict.fromkeys(devices)), version)
        self.service.registry.flush()
        self.write_json({"attempts": [asdict(a) for a in started]}, 202)


class RolloutsPage(DashboardHandler):
    """GET /rollouts : every rollout, newest first, with its waves; dashboard.js keeps it live."""

    def get(self) -> None:
        rollouts = self.service.rollouts
        self.render("rollouts.html", title="Rollouts", page="rollouts",
                    rollouts=[rollouts.summary(r) for r in reversed(rollouts.list())])
