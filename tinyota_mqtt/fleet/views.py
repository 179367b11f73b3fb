"""The device view that the API, the dashboard and `tinyota status` show: one shape for all.

``device_view`` is a pure function of the config, the record, the attempts and the target, so
the CLI reading the files without a server (``snapshot.py``) builds the very same view.

How a device is *shown* is decided here too, once: ``display`` turns a view into what the
dashboard puts on screen (words, badges, which buttons apply, the progress bar), and
``attempt_display`` does the same for one attempt. The server-rendered pages and
``dashboard.js`` both only print these; neither derives a rule of its own from the raw fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core.attempts import Attempt
from tinyota_mqtt.fleet.targets import Targets
from tinyota_mqtt.registry import DeviceRecord, Registry


def pin(config: Config, record: DeviceRecord) -> str | None:
    """The version the device is held at, by command or by its group's pin, if any."""
    group = config.group_of(record.id)
    return record.commanded or (group.version if group else None)


ATTEMPT_WORDS = {att.PENDING: "announced, waiting for the device", att.DOWNLOADING: "downloading",
                 att.FLASHING: "flashing", att.SUCCEEDED: "succeeded", att.FAILED: "failed",
                 att.TIMED_OUT: "timed out", att.CANCELLED: "cancelled"}
_UNDER_WAY = (att.DOWNLOADING, att.FLASHING)  # the device is working on it: a progress bar
_WENT_WRONG = (att.FAILED, att.TIMED_OUT)
HELD_TEXT = "yes: cancelled, waits for the next install"
# A device kind (config/model.py KINDS) as people call the firmware: `tinyota` is the sketch.
KIND_NAMES = {"tinyota": "esp_client", "tasmota": "Tasmota", "esphome": "ESPHome"}


def size_text(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / (1024 * 1024):.1f} MiB"


def attempt_display(attempt: dict[str, Any]) -> dict[str, str]:
    """One attempt (its JSON) as the dashboard shows it, in the activity list and the history.

    ``text``: "1.4.0: downloading 42%", with the error of one that went wrong; ``outcome``: the
    history's column ("timed out", "downloading 42%"); ``kind``: ok, bad or info (its colour);
    ``activity``: the activity list's line ("1.3.0 → 1.4.0: succeeded").
    """
    state = attempt["state"]
    progress = attempt.get("progress")
    percent = f" {progress}%" if state == att.DOWNLOADING and progress is not None else ""
    text = f"{attempt['version']}: {ATTEMPT_WORDS[state]}{percent}"
    if state in _WENT_WRONG and attempt.get("error"):
        text += f" ({attempt['error']})"
    origin = attempt.get("from_version")
    return {
        "text": text,
        "outcome": state.replace("_", " ") + percent,
        "kind": "ok" if state == att.SUCCEEDED else "bad" if state in _WENT_WRONG else "info",
        "activity": f"{origin} → {text}" if origin else text,
    }


def display(view: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard shows for a device view: every rule about its look lives here.

    ``online``: online, offline or unknown (never heard from); ``outdated``: a target it does not
    run; ``updating``: an attempt is open, so Cancel applies (and the Updating counter counts it);
    ``busy``: downloading or flashing, so the progress bar shows; ``failed``: the newest attempt
    failed or timed out; ``classes``: the row's classes for those; ``installable``: it has an
    image, so Install applies; ``kind``: the firmware it runs, by name ("" when nothing says).
    """
    attempt = view["attempt"]
    state = attempt["state"] if attempt else None
    online = view["online"]
    outdated = bool(view["target"]) and view["installed"] != view["target"]
    busy = state in _UNDER_WAY
    failed = state in _WENT_WRONG
    # The open attempt's progress while one is open (``attempt`` is then that one), else the last one's.
    progress = (attempt or {}).get("progress")
    flags = {"outdated": outdated, "busy": busy, "failed": failed, "offline": online is False}
    return {
        "online": "unknown" if online is None else "online" if online else "offline",
        "outdated": outdated,
        "updating": state in att.OPEN,
        "busy": busy,
        "failed": failed,
        "progress": int(progress or 0),
        "attempt": attempt_display(attempt)["text"] if attempt else "",
        "attempt_state": state or "",
        "classes": " ".join(["device", *(name for name, on in flags.items() if on)]),
        "installable": view["image"] is not None,
        "held": HELD_TEXT if view["held"] else "no",
        "free_space": size_text(view["free_space"]) or "—",
        "kind": KIND_NAMES.get(view["kind"] or "", ""),
    }


def running(views: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Which devices run each release: image → installed version → device ids, in view order.
    The releases page prints its "Running on" column from this, rendered and live alike."""
    found: dict[str, dict[str, list[str]]] = {}
    for view in views:
        if view["image"] is not None and view["installed"] is not None:
            found.setdefault(view["image"], {}).setdefault(view["installed"], []).append(view["id"])
    return found


def device_view(config: Config, record: DeviceRecord, current: Attempt | None, newest: Attempt | None,
                target: str | None, kind: str | None = None, adopt: str | None = None) -> dict[str, Any]:
    """``current``: the open attempt, if any; ``newest``: that, or else the last one that ended.
    ``kind``: what is known of an unconfigured device's kind (Tasmota discovery), if anything;
    ``adopt``: the config.yaml lines that would make such a device configured."""
    device = config.devices.get(record.id)
    image = config.image_of(record.id)
    view = {
        "id": record.id,
        "name": device.display_name if device else record.id,
        "known": device is not None,
        "kind": device.kind if device else kind,
        "group": device.group if device else None,
        "image": image.name if image else None,
        "online": record.online,
        "state": record.state,
        "installed": record.version,
        "target": target,
        "announced": current.version if current else None,
        "progress": current.progress if current else None,
        "last_seen": record.last_seen,
        "platform": record.platform or (image.platform if image else None),
        "free_space": record.free_space,
        "last_error": record.last_error,
        "last_error_at": record.last_error_at,
        "pinned": pin(config, record),
        "held": record.held,
        "attempt": asdict(newest) if newest else None,
        "adopt": None if device else adopt,
    }
    view["show"] = display(view)
    return view


class Views:
    def __init__(self, config: Config, registry: Registry, targets: Targets, *,
                 kind_of: Callable[[str], str | None] = lambda _device: None,
                 adopt_of: Callable[[str], str | None] = lambda _device: None) -> None:
        self.config = config
        self.registry = registry
        self.targets = targets
        self.kind_of = kind_of
        self.adopt_of = adopt_of

    def device_ids(self) -> list[str]:
        """Configured devices first (in config order), then unknown ones that reported."""
        known = list(self.config.devices)
        return known + [r.id for r in self.registry.devices() if r.id not in self.config.devices]

    def device(self, device_id: str) -> dict[str, Any]:
        current = self.registry.open_attempt(device_id)
        newest = current or self.registry.last_attempt(device_id)
        return device_view(self.config, self.registry.device(device_id), current, newest,
                           self.targets.version(device_id), self.kind_of(device_id), self.adopt_of(device_id))
