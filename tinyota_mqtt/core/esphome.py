"""The ESPHome package that makes an ESPHome device a TinyOTA device, as a pure function.

``tinyota esphome-snippet DEVICE`` prints it; docs/esphome.md explains it part by part. The device
speaks the ordinary protocol (docs/protocol.md): it follows its retained announcement on
``<prefix>/<device>/update`` and reports on ``<prefix>/<device>/status``, so the server treats it
like an esp_client device. Written against ESPHome 2026.10 (``./dev esphome-venv``), whose
``esphome config`` checks it in tests/test_esphome.py; that check covers the YAML schema, not
the C++ inside the lambdas, which only a compile would.

Each ``if`` condition lambda starts with a ``// tinyota:<name>`` line. ESPHome ignores it (a C++
comment); the stand-in in tests/esphome_standin.py uses it to know which check a branch is, so it
follows the branches, topics and payloads of this very text instead of a copy of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from tinyota_mqtt.config.model import Config
from tinyota_mqtt.core import trust
from tinyota_mqtt.core.protocol import Topics
from tinyota_mqtt.errors import NotFound, TinyOTAError

ESPHOME_VERSION = "2026.10.0"  # the ESPHome whose `esphome config` the tests run (./dev)
ATTEMPT_ID_MAX = 64  # the protocol's limit, and what the restored global can hold
URL_MAX = 384  # as esp_client: longer URLs are refused, not cut
# What a server URL may contain to sit inside YAML, an ESPHome substitution and a C++ string
# literal unescaped: no quotes, backslashes, '$' or braces.
_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+$")
# Errors as ESPHome's OTA backends number them (components/ota/ota_backend.h and
# http_request/ota/ota_http_request.h), in words that core/retry.py can sort: only a
# connection error says nothing against the image.
OTA_ERRORS = {
    0x10: "MD5 missing",
    0x11: "bad URL",
    0x12: "connection failed or HTTP status not 200",
    0x80: "Verify Bin Header Failed (magic byte)",
    0x81: "update prepare failed",
    0x83: "flash write failed",
    0x84: "update end failed",
    0x86: "wrong current flash config",
    0x87: "New Binary Does Not Fit Flash Size",
    0x88: "Not Enough space",
    0x89: "Not Enough space",
    0x8A: "no update partition",
    0x8B: "MD5 mismatch",
    0x8C: "Not Enough space",
}


@dataclass(frozen=True)
class SnippetParams:
    device: str
    image: str
    platform: str  # esp8266, esp32, esp32s3, ...
    prefix: str
    server_url: str  # server.public_url: the device downloads only below it
    broker_host: str
    broker_port: int
    broker_tls: bool = False

    @property
    def esp8266(self) -> bool:
        return self.platform == "esp8266"

    @property
    def secret(self) -> str:
        return f"tinyota_{self.device}_password"

    @property
    def mqtt_secret(self) -> str:
        return f"tinyota_{self.device}_mqtt_password"


def params_from_config(config: Config, device_id: str) -> SnippetParams:
    device = config.devices.get(device_id)
    if device is None:
        known = ", ".join(sorted(config.devices)) or "none"
        raise NotFound(f"no device {device_id!r} in the config", f"configured devices: {known}")
    if device.kind != "esphome":
        # The package alone does not make it one: the server tells a device the way its configured
        # kind says, and that is what the dashboard, `tinyota status` and Home Assistant show.
        raise TinyOTAError(f"device {device_id!r} is of kind {device.kind!r}, not 'esphome'",
                           f"set `kind: esphome` on it (devices.{device_id}.kind), or on its group if all its "
                           "members run ESPHome, then ask for the snippet again")
    image_name = None if device.group is None else config.groups[device.group].image
    if image_name is None:
        raise TinyOTAError(f"device {device_id!r} is in no group, so it has no image and no platform",
                           "give it a group (devices.<id>.group) whose image names its platform")
    server_url = config.server.public_url  # the loader has taken off any trailing '/'
    if not _SAFE_URL.fullmatch(server_url) or not trust.is_usable_base(server_url):
        raise TinyOTAError(f"server.public_url {server_url!r} cannot go into an ESPHome lambda as it is",
                           "use a plain http:// or https:// URL without quotes, backslashes, '$' or braces")
    url = config.mqtt.url
    if url == "none":
        raise TinyOTAError("the config runs the server without MQTT (mqtt.url: none); an ESPHome device "
                           "needs a broker to hear of updates", "set mqtt.url to your broker")
    if url == "embedded":
        # The embedded broker listens where the server is: the device reaches it at the server's host.
        host, port, tls = host_of(server_url), config.mqtt.embedded_port, False
    else:
        # The loader accepts only mqtt(s)://host[:port] here, so there is a host.
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        host, port = host_of(url), parts.port or (8883 if tls else 1883)
    return SnippetParams(device=device_id, image=image_name, platform=config.images[image_name].platform,
                         prefix=config.mqtt.prefix, server_url=server_url, broker_host=host, broker_port=port,
                         broker_tls=tls)


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def _q(text: str) -> str:
    """A YAML double-quoted scalar, which is also a C++ string literal for ASCII text."""
    return json.dumps(text)


def _status(topic: str, fields: list[tuple[str, str]], *, qos: int, indent: int) -> str:
    """An ``mqtt.publish_json`` action of a status: ``fields`` are (key, C++ expression)."""
    pad = " " * indent
    body = "\n".join(f'{pad}      root["{key}"] = {value};' for key, value in fields)
    return (f"{pad}- mqtt.publish_json:\n"
            f"{pad}    topic: {topic}\n"
            f"{pad}    qos: {qos}\n"
            f"{pad}    retain: true\n"
            f"{pad}    payload: |-\n{body}\n")


def render(p: SnippetParams) -> str:
    topics = Topics(p.prefix)
    status = _q(topics.status(p.device))
    availability = _q(topics.availability(p.device))
    platform = _q(p.platform)
    running = ("version", "ESPHOME_PROJECT_VERSION")
    attempt = ("id", "id(tinyota_attempted)")
    error_cases = "\n".join(f"                case 0x{code:02X}: why = {_q(text)}; break;"
                            for code, text in OTA_ERRORS.items())
    https = p.server_url.startswith("https://")

    out = [f"""\
# TinyOTA for ESPHome: firmware updates for device {p.device!r} (image {p.image!r}, {p.platform}).
# Made by `tinyota esphome-snippet {p.device}` for ESPHome {ESPHOME_VERSION}; docs/esphome.md explains it.
#
# 1. Save this beside the device's YAML as tinyota-{p.device}.yaml and include it there:
#      packages:
#        tinyota: !include tinyota-{p.device}.yaml
# 2. Put the device's passwords into secrets.yaml, never into a YAML you share:
#      {p.secret}: the device's password of the TinyOTA config (its downloads)
#      {p.mqtt_secret}: its MQTT password (usually the same)
# 3. Build each firmware with the version you will release it as, in the device's YAML:
#      substitutions:
#        tinyota_version: "1.4.0"
#    then `tinyota release <firmware.ota.bin> --image {p.image} --version 1.4.0`.
"""]
    if p.broker_tls:
        out.append("# mqtt.url is mqtts://: ESPHome speaks TLS to a broker only on the ESP32, with\n"
                   "# mqtt: certificate_authority: set it in the device's YAML.\n")
    out.append(f"""
substitutions:
  tinyota_version: "0.0.0"
  tinyota_server_url: {_q(p.server_url)}

esphome:
  project:
    name: {_q("tinyota." + p.image.replace(".", "_"))}
    version: ${{tinyota_version}}
""")
    if p.esp8266:
        out.append("""
esp8266:
  # The attempted id below must outlive a power cut, not only a reboot: keep preferences in flash.
  restore_from_flash: true
""")
    out.append("""
http_request:
  # The device's password goes only to the TinyOTA server: a redirect would carry it elsewhere.
  follow_redirects: false
""")
    if p.esp8266 and not https:
        out.append("  esp8266_disable_ssl_support: true  # the server URL is http://; saves flash\n")
    elif p.esp8266:
        out.append("  verify_ssl: false  # ESPHome cannot check certificates on the ESP8266\n")
    out.append(f"""
globals:
  # The attempt this device last started, restored at boot: an attempt id is tried once only,
  # so a bad image or a crash mid-update can never make it update in a loop.
  - id: tinyota_attempted
    type: std::string
    restore_value: true
    max_restore_data_length: {ATTEMPT_ID_MAX}
    initial_value: '""'

ota:
  - platform: http_request
    on_begin:
""")
    out.append(_status(status, [("state", '"downloading"'), running, ("progress", "0"), attempt,
                                ("platform", platform)], qos=1, indent=6))
    out.append("    on_progress:\n")
    out.append(_status(status, [("state", 'x < 100 ? "downloading" : "flashing"'), running,
                                ("progress", "(int) x"), attempt, ("platform", platform)], qos=0, indent=6))
    out.append("    on_end:\n")
    out.append(_status(status, [("state", '"rebooting"'), running, ("progress", "100"), attempt,
                                ("platform", platform)], qos=1, indent=6))
    out.append("    on_error:\n")
    out.append(f"""\
      - mqtt.publish_json:
          topic: {status}
          qos: 1
          retain: true
          payload: |-
            const char *why = "OTA error";
            switch (x) {{
{error_cases}
            }}
            static const char *const digits = "0123456789ABCDEF";
            std::string error = why;
            error += " (ESPHome OTA error 0x";
            error += digits[(x >> 4) & 15];
            error += digits[x & 15];
            error += ")";
            root["state"] = "failed";
            root["version"] = ESPHOME_PROJECT_VERSION;
            root["id"] = id(tinyota_attempted);
            root["error"] = error;
            root["platform"] = {platform};
""")
    out.append(f"""
mqtt:
  broker: {_q(p.broker_host)}
  port: {p.broker_port}
  username: {_q(p.device)}
  password: !secret {p.mqtt_secret}
  birth_message: {{topic: {availability}, payload: online, qos: 1, retain: true}}
  will_message: {{topic: {availability}, payload: offline, qos: 1, retain: true}}
  shutdown_message: {{topic: {availability}, payload: offline, qos: 1, retain: true}}
  # No log lines over MQTT: at the VERY_VERBOSE level ESPHome logs the download URL with the
  # password in it.
  log_topic: null
  on_connect:
""")
    out.append(_status(status, [("state", '"idle"'), running, ("platform", platform)], qos=1, indent=4))
    out.append(f"""\
  on_json_message:
    topic: {_q(topics.update(p.device))}
    qos: 1
    then:
      - if:
          condition:
            lambda: |-
              // tinyota:malformed: not an announcement this device can act on
              auto text = [&](const char *key, size_t most) {{
                JsonVariantConst value = x[key];
                if (!value.is<const char *>()) return false;
                const char *s = value.as<const char *>();
                size_t n = strlen(s);
                if (n == 0 || n > most) return false;
                for (size_t i = 0; i < n; i++) {{
                  if (s[i] < '!' || s[i] > '~') return false;
                }}
                return true;
              }};
              if (!text("id", {ATTEMPT_ID_MAX}) || !text("version", 64)) return true;
              if (!text("url", {URL_MAX}) || !text("md5", 32)) return true;
              const std::string md5 = x["md5"].as<std::string>();
              if (md5.size() != 32) return true;
              for (char c : md5) {{
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return true;
              }}
              return false;
          then:
            - logger.log:
                level: WARN
                format: "tinyota: ignored an announcement that is not well-formed"
          else:
            - if:
                condition:
                  lambda: |-
                    // tinyota:runs-it: the announced version is the one running
                    return x["version"].as<std::string>() == ESPHOME_PROJECT_VERSION;
                then:
""")
    out.append(_status(status, [("state", '"idle"'), running, ("id", 'x["id"].as<std::string>()'),
                                ("platform", platform)], qos=1, indent=18))
    out.append("""\
                else:
                  - if:
                      condition:
                        lambda: |-
                          // tinyota:attempted: this attempt was started before; never again
                          return x["id"].as<std::string>() == id(tinyota_attempted);
                      then:
                        - logger.log:
                            level: INFO
                            format: "tinyota: attempt already tried once, not again"
                      else:
                        - if:
                            condition:
                              lambda: |-
                                // tinyota:foreign-url: not under the server this device was built for
                                const std::string base = "${tinyota_server_url}/";
                                const std::string url = x["url"].as<std::string>();
                                if (url.compare(0, base.size(), base) != 0) return true;
                                static const char *const refused[] = {"@", "\\\\", "/./", "/../",
                                                                      "%2e", "%2E", "%2f", "%2F", "%5c", "%5C"};
                                for (const char *bad : refused) {
                                  if (url.find(bad) != std::string::npos) return true;
                                }
                                const size_t n = url.size();
                                return url.compare(n - 2, 2, "/.") == 0 || url.compare(n - 3, 3, "/..") == 0;
                            then:
""")
    out.append(_status(status, [("state", '"failed"'), running, ("id", 'x["id"].as<std::string>()'),
                                ("error", _q(trust.NOT_OUR_SERVER)), ("platform", platform)], qos=1, indent=30))
    out.append(f"""\
                            else:
                              # Remember the attempt before the download, so that neither a
                              # failure nor a crash or power cut mid-update repeats it. Saved and
                              # written to flash now: the global saves itself once a second from
                              # the main loop, which the download blocks until it ends.
                              - globals.set:
                                  id: tinyota_attempted
                                  value: !lambda 'return x["id"].as<std::string>();'
                              - lambda: |-
                                  tinyota_attempted->update();
                                  global_preferences->sync();
                              - ota.http_request.flash:
                                  url: !lambda 'return x["url"].as<std::string>();'
                                  md5: !lambda 'return x["md5"].as<std::string>();'
                                  username: {_q(p.device)}
                                  password: !secret {p.secret}
""")
    return "".join(out)


def snippet(config: Config, device_id: str) -> str:
    return render(params_from_config(config, device_id))
