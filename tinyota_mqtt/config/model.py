"""The validated configuration: frozen, typed, and safe to print (secrets are masked).

``loader.py`` builds these from YAML; nothing else in the package reads YAML. Mappings are
read-only views so a config cannot be changed after validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from types import MappingProxyType

from tinyota_mqtt.core import image as esp_image
from tinyota_mqtt.core.passwords import Password, Secret
from tinyota_mqtt.core.rollout import Policy

PLATFORMS = esp_image.PLATFORMS  # esp8266, esp32 and each ESP32 variant the image parser knows
# How an attempt is confirmed: by the device's report of the target version alone, or only when
# this server also served that device the whole image (a report alone can be forged or mistaken).
CONFIRM_MODES = ("download+report", "report")
# How a device is told to update and how it reports (docs/devices.md): the esp_client sketch and
# the ESPHome snippet speak the tinyota protocol; Tasmota speaks its own (drivers/tasmota.py).
KINDS = ("tinyota", "tasmota", "esphome")
ID_PATTERN = r"[A-Za-z0-9_-]+"  # one MQTT topic level and a Home Assistant object id
# Devices hold ids, image names and the topic prefix in fixed buffers (esp_client/limits.json).
MAX_ID_LENGTH = 64
MAX_PREFIX_LENGTH = 64
IPNetwork = IPv4Network | IPv6Network


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Account:
    username: str
    password: Password


@dataclass(frozen=True)
class TLSFiles:
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class Limits:
    max_connections: int = 2000
    idle_timeout: float = 60.0  # seconds a connection may stay silent
    max_upload_bytes: int = 16 * 1024 * 1024  # ESP32 app partitions top out well below this
    max_header_bytes: int = 16 * 1024
    # One address may hold this many; trusted proxies are exempt (cap clients in the proxy).
    max_connections_per_address: int = 100


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"  # base of announced URLs; no trailing slash
    store: Path = Path("var/firmware")
    state: Path = Path("var/tinyota.sqlite")
    admin: Account = field(default_factory=lambda: Account("admin", Password.parse("admin")))
    tls: TLSFiles | None = None
    limits: Limits = field(default_factory=Limits)
    access_log: bool = True
    signing_key: Path | None = None  # ECDSA P-256 private key (PEM): announcements carry a signature
    # Peers whose X-Forwarded-For / X-Real-IP name the real client (a reverse proxy in front).
    trusted_proxies: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class MqttConfig:
    # "embedded" runs an in-process broker on embedded_host:embedded_port (quickstart only);
    # "none" runs HTTP only; otherwise mqtt://host[:port] or mqtts://host[:port].
    url: str = "embedded"
    username: str | None = None
    password: Secret | None = None
    client_id: str = "tinyota-server"
    keepalive: int = 60
    protocol: str = "3.1.1"  # or "5"
    prefix: str = "tinyota"
    tls: TLSFiles | None = None
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 1883
    # Install commands on <prefix>/<device>/install may name a version (a rollback). Off: anyone who
    # can publish there could order a downgrade; the CLI, API and dashboard authenticate instead.
    version_commands: bool = False
    # Lets Home Assistant log in to the embedded broker as "homeassistant" (docs/mosquitto.md's
    # rights for it); None: no such login.
    embedded_homeassistant_password: Password | None = None

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = True
    discovery_prefix: str = "homeassistant"
    status_topic: str = "homeassistant/status"


@dataclass(frozen=True)
class Image:
    name: str
    platform: str  # one of PLATFORMS
    description: str = ""


@dataclass(frozen=True)
class Group:
    name: str
    image: str  # key into Config.images
    auto_update: bool = False  # announce every new release of the image to the group at once
    version: str | None = None  # pin: devices of the group should run exactly this release
    attempt_timeout: float = 600.0  # seconds from announcement to a confirmed outcome
    confirm: str = "download+report"  # one of CONFIRM_MODES
    retries: int = 3  # new announcements after a try that failed for a reason not the image's
    retry_backoff: float = 60.0  # seconds before the first retry; doubles each time
    # Automatic releases go out as a staged rollout (docs/rollouts.md) instead of all at once.
    rollout: Policy | None = None
    kind: str | None = None  # the default for its devices; None: "tinyota"
    # Tasmota only: the FullTopic its devices use, and the image whose release of the same version
    # is served when a device asks for the "-minimal" step of a two-step upgrade (docs/tasmota.md).
    full_topic: str | None = None
    minimal_image: str | None = None


@dataclass(frozen=True)
class Device:
    id: str
    group: str | None = None  # a device in no group is tracked but never told to update
    password: Password | None = None  # None: the device cannot download (no account)
    name: str = ""  # display name; falls back to id
    kind: str = "tinyota"  # one of KINDS; the loader fills in the group's when the device has none
    # Tasmota only (docs/tasmota.md): its MQTT Topic when it is not the device id, its FullTopic
    # (the loader fills in the group's, then Tasmota's default), and its MAC (the embedded broker
    # then holds it to its own discovery topic).
    topic: str | None = None
    full_topic: str | None = None
    mac: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def tasmota_topic(self) -> str:
        return self.topic or self.id


@dataclass(frozen=True)
class Config:
    source: Path | None = None  # the file it came from, for messages
    server: ServerConfig = field(default_factory=ServerConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    images: Mapping[str, Image] = field(default_factory=_empty)  # type: ignore[arg-type]
    groups: Mapping[str, Group] = field(default_factory=_empty)  # type: ignore[arg-type]
    devices: Mapping[str, Device] = field(default_factory=_empty)  # type: ignore[arg-type]

    def image_of(self, device_id: str) -> Image | None:
        """The image a device runs, by way of its group; None for unknown or ungrouped devices."""
        device = self.devices.get(device_id)
        if device is None or device.group is None:
            return None
        return self.images[self.groups[device.group].image]

    def group_of(self, device_id: str) -> Group | None:
        device = self.devices.get(device_id)
        return None if device is None or device.group is None else self.groups[device.group]

    def members(self, group: str) -> list[Device]:
        return [d for d in self.devices.values() if d.group == group]
