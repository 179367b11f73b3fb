"""The device kinds' pure rules: core/tasmota.py and core/esphome.py, value by value.

test_tasmota.py and test_esphome.py prove these rules against a broker, the server, the Tasmota
stand-in and ESPHome's own ``esphome config``; that takes minutes. This file states each rule of
docs/tasmota.md and docs/esphome.md on its own, with whole values (topics, URLs, parsed replies,
every refusal's words, the snippet as ESPHome reads it), so that the mutation run
(docs/testing.md) can judge a changed rule in milliseconds.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import yaml

from tinyota_mqtt.config import parse_config
from tinyota_mqtt.core import esphome, tasmota
from tinyota_mqtt.core.protocol import ProtocolError
from tinyota_mqtt.core.tokens import TOKEN_CHARS
from tinyota_mqtt.errors import ConfigError, NotFound, TinyOTAError

# == Tasmota ======================================================================================

# -- topics: FullTopic %prefix%/%topic%/ with cmnd, stat and tele ---------------------------------


def test_a_devices_topics_follow_the_default_full_topic() -> None:
    plug = tasmota.Topics("tasmota_A1B2C3")
    assert plug.full_topic == "%prefix%/%topic%/" == tasmota.DEFAULT_FULL_TOPIC
    assert plug.command("OtaUrl") == "cmnd/tasmota_A1B2C3/OtaUrl"
    assert plug.command("Upgrade") == "cmnd/tasmota_A1B2C3/Upgrade"
    assert plug.stat("RESULT") == "stat/tasmota_A1B2C3/RESULT"
    assert plug.tele("LWT") == "tele/tasmota_A1B2C3/LWT"
    assert plug.subscriptions() == ["stat/tasmota_A1B2C3/+", "tele/tasmota_A1B2C3/+"]


def test_a_custom_full_topic_puts_the_tokens_where_it_says_and_always_ends_in_a_slash() -> None:
    swapped = tasmota.Topics("plug", "home/%topic%/%prefix%/")
    assert swapped.command("Status") == "home/plug/cmnd/Status"
    assert swapped.subscriptions() == ["home/plug/stat/+", "home/plug/tele/+"]
    # Tasmota adds the '/' before the command itself when the FullTopic has none at its end.
    bare = tasmota.Topics("plug", "%prefix%/%topic%")
    assert (bare.command("Upgrade"), bare.stat("UPGRADE"), bare.tele("INFO1")) == \
        ("cmnd/plug/Upgrade", "stat/plug/UPGRADE", "tele/plug/INFO1")


@pytest.mark.parametrize(("topic", "where"), [
    ("stat/plug/RESULT", ("stat", "RESULT")),
    ("stat/plug/STATUS2", ("stat", "STATUS2")),
    ("stat/plug/UPGRADE", ("stat", "UPGRADE")),  # SetOption4 1
    ("tele/plug/LWT", ("tele", "LWT")),
    ("tele/plug/INFO1", ("tele", "INFO1")),
    ("cmnd/plug/Upgrade", None),  # what the server sends, not what the device says
    ("stat/plug/", None),  # no name
    ("stat/plug/a/b", None),  # deeper than one level
    ("stat/plug2/RESULT", None),  # another device whose topic starts alike
    ("stat/other/RESULT", None),
    ("tinyota/plug/status", None),
])
def test_split_names_only_this_devices_own_stat_and_tele_messages(topic: str, where: object) -> None:
    assert tasmota.Topics("plug").split(topic) == where


def test_split_reads_a_custom_full_topic() -> None:
    topics = tasmota.Topics("plug", "home/%topic%/%prefix%/")
    assert topics.split("home/plug/tele/LWT") == ("tele", "LWT")
    assert topics.split("home/plug/stat/RESULT") == ("stat", "RESULT")
    assert topics.split("tele/plug/LWT") is None


@pytest.mark.parametrize(("text", "problem"), [
    ("%prefix%/%topic%/", None),
    ("home/%topic%/%prefix%/", None),
    ("%prefix%/%topic%", None),
    ("X/%prefix%/%topic%/", None),
    ("%topic%/", "must contain both %prefix% and %topic% (Tasmota's MQTT docs ask for both)"),
    ("%prefix%/x/", "must contain both %prefix% and %topic% (Tasmota's MQTT docs ask for both)"),
    ("%prefix%/%topic%/%hostname%/", "only the %prefix% and %topic% tokens are supported here"),
    ("%prefix%/%topic%/100%", "only the %prefix% and %topic% tokens are supported here"),
    # A stray '%to' and 'pic%' around %prefix% are not a third %topic%: the device's stat topic
    # would be a literal 'x/%tostatpic%/'.
    ("%topic%/%to%prefix%pic%/", "only the %prefix% and %topic% tokens are supported here"),
    ("%prefix%/+/%topic%/", "must not contain MQTT wildcards or start with '/'"),
    ("%prefix%/%topic%/#", "must not contain MQTT wildcards or start with '/'"),
    ("%prefix%/\x00/%topic%/", "must not contain MQTT wildcards or start with '/'"),
    ("/%prefix%/%topic%/", "must not contain MQTT wildcards or start with '/'"),
])
def test_a_full_topic_needs_both_tokens_and_nothing_else_special(text: str, problem: str | None) -> None:
    assert tasmota.full_topic_problem(text) == problem


@pytest.mark.parametrize("text", ["a/b", "a+", "#", "a\x00", " plug", "plug ", ""])
def test_a_topic_is_one_mqtt_level(text: str) -> None:
    assert tasmota.topic_problem(text) == "must be one MQTT topic level: no '/', '+', '#' or surrounding spaces"


@pytest.mark.parametrize("text", ["tasmota_A1B2C3", "plug-1", "a b", "x"])
def test_a_topic_of_one_level_is_fine(text: str) -> None:
    assert tasmota.topic_problem(text) is None


# -- the download URL and OtaUrl's 100 characters -------------------------------------------------

def test_the_download_url_carries_the_device_and_its_token_and_no_password() -> None:
    assert tasmota.download_url("http://192.168.1.10:8000", "plug-1", "Qci0abc", gzip=True) == \
        "http://192.168.1.10:8000/t/plug-1/Qci0abc/firmware.bin.gz"
    assert tasmota.download_url("http://192.168.1.10:8000/", "plug-1", "Qci0abc", gzip=False) == \
        "http://192.168.1.10:8000/t/plug-1/Qci0abc/firmware.bin"
    assert tasmota.download_url("https://h/ota//", "d", "t", gzip=True) == "https://h/ota/t/d/t/firmware.bin.gz"
    assert tasmota.download_url("http://h/OTAX/", "d", "t", gzip=False) == "http://h/OTAX/t/d/t/firmware.bin"


def test_the_url_length_is_that_of_the_longest_url_the_device_can_be_sent() -> None:
    # 24 + "/t/" + 6 + "/" + 22 + "/firmware.bin.gz": the gzipped name is the longer one.
    assert tasmota.url_length("http://192.168.1.10:8000", "plug-1", TOKEN_CHARS) == 72
    assert tasmota.url_length("http://192.168.1.10:8000/", "plug-1", 1) == 51


TASMOTA_CONFIG = """\
server: {{public_url: "{url}"}}
images:
  plug: {{platform: esp8266}}
groups:
  plugs: {{image: plug, kind: tasmota}}
devices:
  plug-1: {{group: plugs}}
"""


def _url_problems(public_url: str) -> list[str]:
    try:
        parse_config(TASMOTA_CONFIG.format(url=public_url), "config.yaml")
    except ConfigError as exc:
        return list(exc.problems)
    return []


def test_an_otaurl_of_exactly_100_characters_is_accepted_and_101_is_refused_by_how_much() -> None:
    head = "http://192.168.1.10:8000/ota"
    exact = head + "p" * (tasmota.OTAURL_LIMIT - tasmota.url_length(head, "plug-1", TOKEN_CHARS))
    assert tasmota.url_length(exact, "plug-1", TOKEN_CHARS) == 100 == tasmota.OTAURL_LIMIT
    assert _url_problems(exact) == []
    assert _url_problems(exact + "q") == [
        "[config.yaml:7] devices.plug-1: its download URL would be 101 characters, and Tasmota's OtaUrl keeps "
        "only 100: shorten server.public_url (e.g. an IP address instead of a host name) or the device id by 1"]


@pytest.mark.parametrize(("url", "minimal"), [
    # The examples in the comment above Tasmota's own derivation (support_tasmota.ino).
    ("http://domus1:80/api/arduino/tasmota.bin", "http://domus1:80/api/arduino/tasmota-minimal.bin"),
    ("http://domus1:80/api/arduino/tasmota.bin.gz", "http://domus1:80/api/arduino/tasmota-minimal.bin.gz"),
    ("http://domus1:80/api/arduino/tasmota-DE.bin.gz", "http://domus1:80/api/arduino/tasmota-minimal.bin.gz"),
    ("http://domus1:80/api/ard-uino/tasmota-DE.bin.gz", "http://domus1:80/api/ard-uino/tasmota-minimal.bin.gz"),
    ("http://192.168.2.17/api/arduino/tasmota.bin.gz", "http://192.168.2.17/api/arduino/tasmota-minimal.bin.gz"),
    ("tasmota", "tasmota-minimal"),
    ("tasmota.bin", "tasmota-minimal.bin"),
    # The name is cut at its last '-', and only the name: a '-' or '.' in a folder does not count.
    ("http://h/a.b/tasmota-sensors-DE.bin", "http://h/a.b/tasmota-sensors-minimal.bin"),
    ("http://h/x/tasmota", "http://h/x/tasmota-minimal"),
    ("http://h/x/tasmota-DE", "http://h/x/tasmota-minimal"),
    ("http://h/ard-/tasmota", "http://h/ard-/tasmota-minimal"),
    ("http://h/v1./tasmota", "http://h/v1./tasmota-minimal"),
    # A name that starts with its '-' or its '.' keeps nothing of its stem.
    ("http://h/x/-DE.bin", "http://h/x/-minimal.bin"),
    ("http://h/x/.bin.gz", "http://h/x/-minimal.bin.gz"),
    ("-DE.bin", "-minimal.bin"),
    # Ours: the token may hold '-' and '_', the file name never does.
    ("http://h/t/plug-1/Ab-_9/firmware.bin.gz", "http://h/t/plug-1/Ab-_9/firmware-minimal.bin.gz"),
])
def test_the_minimal_url_is_derived_as_tasmota_derives_it(url: str, minimal: str) -> None:
    assert tasmota.minimal_url(url) == minimal


def test_our_urls_name_the_files_the_token_route_serves() -> None:
    url = tasmota.download_url("http://h:8000", "plug-1", "tok", gzip=True)
    assert tasmota.minimal_url(url) == "http://h:8000/t/plug-1/tok/firmware-minimal.bin.gz"
    assert (tasmota.FILE_STEM, tasmota.MINIMAL_STEM) == ("firmware", "firmware-minimal")


# -- versions: 14.3.0(tasmota) ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "version"), [
    ("14.3.0(tasmota)", tasmota.Version("14.3.0", "tasmota")),
    ("14.4.0(tasmota-sensors)", tasmota.Version("14.4.0", "tasmota-sensors")),
    ("9.1.0", tasmota.Version("9.1.0", "")),
    ("14.4.0.1(tasmota)", tasmota.Version("14.4.0.1", "tasmota")),  # a development build
    (" 14.3.0 ( tasmota ) ", tasmota.Version("14.3.0", "tasmota")),
    ("14.3.0()", tasmota.Version("14.3.0", "")),
    ("1" * 64, tasmota.Version("1" * 64, "")),
    ("1.0.0(" + "i" * 64 + ")", tasmota.Version("1.0.0", "i" * 64)),
])
def test_a_version_string_is_the_version_then_the_build_in_brackets(text: str, version: tasmota.Version) -> None:
    assert tasmota.parse_version(text) == version


@pytest.mark.parametrize("text", ["", "(tasmota)", "v14.3.0", "14.3.0(a(b))", "14.3.0(tasmota", "14.3.0 x",
                                  "1" * 65, "1.0.0(" + "i" * 65 + ")", "1.0.0(a)(b)"])
def test_anything_else_is_not_a_version(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        tasmota.parse_version(text)
    assert str(caught.value) == f"not a Tasmota version string: {text[:40]!r}"


def test_a_bad_version_is_echoed_only_in_part() -> None:
    with pytest.raises(ProtocolError, match=re.escape(f"not a Tasmota version string: {'x' * 40!r}")):
        tasmota.parse_version("x" * 500)


@pytest.mark.parametrize(("image", "step"), [
    ("minimal", True), ("safeboot", True), ("tasmota-minimal", True), ("tasmota32-safeboot", True),
    ("tasmota", False), ("tasmota-sensors", False), ("", False), ("minimalist", False), ("xminimal", False),
    ("safeboot-x", False), ("tasmota32", False),
])
def test_only_the_minimal_and_safeboot_builds_are_steps(image: str, step: bool) -> None:
    assert tasmota.Version("14.4.0", image).step is step


# -- what the device says: Upgrade replies, INFO1 / STATUS2, LWT -----------------------------------

@pytest.mark.parametrize(("text", "upgrade"), [
    ("Version 14.3.0(tasmota) from http://h/t/plug-1/tok/firmware.bin.gz",
     tasmota.Upgrade("started", "14.3.0(tasmota)")),
    ("Version 14.3.0(tasmota)", tasmota.Upgrade("started", "14.3.0(tasmota)")),
    # Spaced the way parse_version() still reads it: the detail keeps all of it.
    ("Version 14.3.0 (tasmota) from http://h/x", tasmota.Upgrade("started", "14.3.0 (tasmota)")),
    ("Successful. Restarting", tasmota.Upgrade("restarting", "")),
    ("Failed Not Enough space", tasmota.Upgrade("failed", "Not Enough space")),
    ("Failed  HTTP error: connection failed ", tasmota.Upgrade("failed", "HTTP error: connection failed")),
    ("Failed", tasmota.Upgrade("failed", "no reason given")),
    ("Failed   ", tasmota.Upgrade("failed", "no reason given")),
    # D_JSON_ONE_OR_GT: Upgrade was given neither 1 nor a newer version.
    ("1 or >14.3.0 to upgrade", tasmota.Upgrade("refused", "1 or >14.3.0 to upgrade")),
])
def test_an_upgrade_reply_says_how_the_upgrade_goes(text: str, upgrade: tasmota.Upgrade) -> None:
    assert tasmota.parse_upgrade(text) == upgrade


def test_an_unknown_upgrade_reply_is_refused_with_its_start() -> None:
    with pytest.raises(ProtocolError) as caught:
        tasmota.parse_upgrade("Downloading")
    assert str(caught.value) == "unknown Upgrade reply 'Downloading'"
    with pytest.raises(ProtocolError) as caught:
        tasmota.parse_upgrade("y" * 100)
    assert str(caught.value) == f"unknown Upgrade reply {'y' * 40!r}"


def test_a_reply_is_one_json_object_of_at_most_4096_bytes() -> None:
    assert tasmota.reply(b'{"OtaUrl":"http://h/x"}') == {"OtaUrl": "http://h/x"}
    filler = 4096 - len(b'{"a":""}')
    exact = b'{"a":"' + b"x" * filler + b'"}'
    assert len(exact) == tasmota.MAX_PAYLOAD == 4096
    assert tasmota.reply(exact) == {"a": "x" * filler}
    for payload, why in [(exact[:-2] + b'x"}', "payload is 4097 bytes, more than 4096"),
                         (b"\xff\xfe", "payload is not JSON"), (b"Online", "payload is not JSON"),
                         (b"", "payload is not JSON"), (b'["Upgrade"]', "payload is not a JSON object"),
                         (b'"x"', "payload is not a JSON object")]:
        with pytest.raises(ProtocolError) as caught:
            tasmota.reply(payload)
        assert str(caught.value) == why, payload


def test_the_upgrade_in_a_reply_is_read_from_upgrade_or_upload() -> None:
    assert tasmota.upgrade_of({"Upgrade": "Successful. Restarting"}) == tasmota.Upgrade("restarting")
    assert tasmota.upgrade_of({"Upload": "Failed Not Enough space"}) == tasmota.Upgrade("failed", "Not Enough space")
    assert tasmota.upgrade_of({"Upgrade": "Successful. Restarting", "Upload": "Failed x"}) == \
        tasmota.Upgrade("restarting")
    assert tasmota.upgrade_of({"OtaUrl": "http://h/x"}) is None  # the echo of OtaUrl says nothing
    assert tasmota.upgrade_of({}) is None
    with pytest.raises(ProtocolError, match=r"^'Upgrade' is not a string$"):
        tasmota.upgrade_of({"Upgrade": 1})
    with pytest.raises(ProtocolError, match=r"^'Upgrade' is not a string$"):
        tasmota.upgrade_of({"Upload": ["Failed"]})


def test_a_failure_reason_is_read_from_the_first_256_characters() -> None:
    long = "Failed " + "r" * 300
    assert tasmota.upgrade_of({"Upgrade": long}) == tasmota.Upgrade("failed", "r" * 249)


@pytest.mark.parametrize(("body", "version"), [
    ({"Info1": {"Module": "Sonoff Basic", "Version": "14.3.0(tasmota)"}}, tasmota.Version("14.3.0", "tasmota")),
    ({"StatusFWR": {"Version": "14.4.0(minimal)", "Core": "2_7_8"}}, tasmota.Version("14.4.0", "minimal")),
    ({"Version": "8.5.1(lite)", "Module": "Generic"}, tasmota.Version("8.5.1", "lite")),  # INFO1 before 9.x
    ({"Info1": {"Module": "x"}}, None),
    ({"Info1": {}, "Version": "1.0.0"}, None),  # the wrapped message holds no version: the outer one is not it
    ({"Info1": "x", "Version": "1.0.0"}, tasmota.Version("1.0.0", "")),  # not a wrapper at all
    ({"StatusFWR": None, "Version": "1.0.0"}, tasmota.Version("1.0.0", "")),
    ({"POWER": "ON"}, None),
])
def test_the_running_version_comes_from_info1_or_status2(body: dict[str, Any],
                                                        version: tasmota.Version | None) -> None:
    assert tasmota.version_of(body) == version


def test_info1_is_read_before_statusfwr() -> None:
    body = {"Info1": {"Version": "1.0.0(a)", "StatusFWR": {"Version": "2.0.0(b)"}}}
    assert tasmota.version_of(body) == tasmota.Version("1.0.0", "a")


@pytest.mark.parametrize("body", [{"Info1": {"Version": 14}}, {"StatusFWR": {"Version": ["1.0.0"]}},
                                  {"Version": {"v": "1.0.0"}}])
def test_a_version_that_is_not_a_string_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        tasmota.version_of(body)
    assert str(caught.value) == "'Version' is not a string"


def test_a_null_version_is_no_version() -> None:
    assert tasmota.version_of({"Version": None}) is None


@pytest.mark.parametrize(("payload", "online"), [
    (b"Online", True), (b"Offline", False), (b" Online\r\n", True), (b"\tOffline ", False),
])
def test_the_lwt_says_online_or_offline(payload: bytes, online: bool) -> None:
    assert tasmota.parse_lwt(payload) is online


def test_the_lwt_words_can_be_the_devices_own() -> None:
    assert tasmota.parse_lwt(b"up", "up", "down") is True
    assert tasmota.parse_lwt(b"down", "up", "down") is False
    with pytest.raises(ProtocolError) as caught:
        tasmota.parse_lwt(b"Online", "up", "down")
    assert str(caught.value) == "LWT is neither 'up' nor 'down': 'Online'"


@pytest.mark.parametrize(("payload", "echo"), [
    (b"online", "'online'"), (b"", "''"), (b"\xffOn", "'\ufffdOn'"), (b"z" * 90, repr("z" * 40)),
])
def test_any_other_lwt_is_refused_with_what_it_said(payload: bytes, echo: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        tasmota.parse_lwt(payload)
    assert str(caught.value) == f"LWT is neither 'Online' nor 'Offline': {echo}"


# -- decisions --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "live", "again"), [
    ("pending", True, True),  # told while offline: commands are not retained
    ("pending", False, False),  # a retained LWT from before is not the device coming back
    ("downloading", True, False), ("flashing", True, False), (None, True, False), ("succeeded", True, False),
])
def test_a_device_is_told_again_only_when_it_comes_online_with_an_attempt_not_started(
        state: str | None, live: bool, again: bool) -> None:
    assert tasmota.tell_again(state, online_live=live) is again


@pytest.mark.parametrize(("live", "attempt_open", "version_known", "ask"), [
    (True, True, True, True), (True, True, False, True), (True, False, False, True), (True, False, True, False),
    (False, True, False, False), (False, True, True, False), (False, False, False, False),
])
def test_status_2_is_asked_when_a_device_comes_online_and_its_version_matters(
        live: bool, attempt_open: bool, version_known: bool, ask: bool) -> None:
    assert tasmota.ask_version(live, attempt_open, version_known) is ask


# == ESPHome ======================================================================================

ESPHOME_CONFIG = """\
server: {{public_url: "{url}"}}
mqtt: {{url: "{mqtt}", prefix: home, embedded_port: 1884}}
images:
  kitchen: {{platform: esp8266}}
  sensor: {{platform: esp32s3}}
groups:
  kitchen-lights: {{image: kitchen, kind: esphome}}
  sensors: {{image: sensor}}
devices:
  kitchen-1: {{group: kitchen-lights, password: pw-kitchen-1}}
  sensor-1: {{group: sensors, password: pw-sensor-1, kind: esphome}}
  plain: {{group: sensors, password: pw-plain}}
  loner: {{kind: esphome, password: pw-loner}}
"""


def esphome_config(url: str = "http://192.168.1.10:8000", mqtt: str = "mqtt://10.0.0.2") -> Any:
    return parse_config(ESPHOME_CONFIG.format(url=url, mqtt=mqtt), "config.yaml")


# -- where the package's settings come from ----------------------------------------------------------

@pytest.mark.parametrize(("url", "mqtt", "device", "params"), [
    # An ESP8266 device of an esphome group; the broker's default port.
    ("http://192.168.1.10:8000/", "mqtt://10.0.0.2", "kitchen-1",
     esphome.SnippetParams("kitchen-1", "kitchen", "esp8266", "home", "http://192.168.1.10:8000", "10.0.0.2", 1883)),
    # Its own kind on the device; mqtts:// means TLS and port 8883 by default.
    ("https://ota.lan", "mqtts://broker.lan", "sensor-1",
     esphome.SnippetParams("sensor-1", "sensor", "esp32s3", "home", "https://ota.lan", "broker.lan", 8883, True)),
    ("http://h:8000", "mqtts://broker.lan:8884", "kitchen-1",
     esphome.SnippetParams("kitchen-1", "kitchen", "esp8266", "home", "http://h:8000", "broker.lan", 8884, True)),
    ("http://h:8000", "mqtt://[fd00::2]:1999", "kitchen-1",
     esphome.SnippetParams("kitchen-1", "kitchen", "esp8266", "home", "http://h:8000", "fd00::2", 1999)),
    # The embedded broker listens where the server is: the public URL's host, its own port.
    ("http://192.168.1.10:8000", "embedded", "sensor-1",
     esphome.SnippetParams("sensor-1", "sensor", "esp32s3", "home", "http://192.168.1.10:8000", "192.168.1.10", 1884)),
])
def test_the_package_takes_the_server_the_broker_and_the_prefix_from_the_config(
        url: str, mqtt: str, device: str, params: esphome.SnippetParams) -> None:
    assert esphome.params_from_config(esphome_config(url, mqtt), device) == params


def test_an_unknown_device_is_refused_with_the_configured_ones() -> None:
    with pytest.raises(NotFound) as caught:
        esphome.params_from_config(esphome_config(), "nosuch")
    assert (caught.value.message, caught.value.hint) == (
        "no device 'nosuch' in the config", "configured devices: kitchen-1, loner, plain, sensor-1")
    empty = parse_config('server: {public_url: "http://h:8000"}\nmqtt: {url: "mqtt://h"}\n', "config.yaml")
    with pytest.raises(NotFound) as caught:
        esphome.params_from_config(empty, "nosuch")
    assert caught.value.hint == "configured devices: none"


@pytest.mark.parametrize(("url", "mqtt", "device", "message", "hint"), [
    ("http://h:8000", "mqtt://h", "plain", "device 'plain' is of kind 'tinyota', not 'esphome'",
     "set `kind: esphome` on it (devices.plain.kind), or on its group if all its members run ESPHome, then ask "
     "for the snippet again"),
    ("http://h:8000", "mqtt://h", "loner", "device 'loner' is in no group, so it has no image and no platform",
     "give it a group (devices.<id>.group) whose image names its platform"),
    ("http://h:8000/a$b", "mqtt://h", "kitchen-1",
     "server.public_url 'http://h:8000/a$b' cannot go into an ESPHome lambda as it is",
     "use a plain http:// or https:// URL without quotes, backslashes, '$' or braces"),
    ("http://h:8000/{x}", "mqtt://h", "kitchen-1",
     "server.public_url 'http://h:8000/{x}' cannot go into an ESPHome lambda as it is",
     "use a plain http:// or https:// URL without quotes, backslashes, '$' or braces"),
    ("http://h:8000", "none", "kitchen-1",
     "the config runs the server without MQTT (mqtt.url: none); an ESPHome device needs a broker to hear of updates",
     "set mqtt.url to your broker"),
])
def test_what_the_package_cannot_be_made_for_is_refused_with_the_fix(url: str, mqtt: str, device: str,
                                                                     message: str, hint: str) -> None:
    with pytest.raises(TinyOTAError) as caught:
        esphome.params_from_config(esphome_config(url, mqtt), device)
    assert not isinstance(caught.value, NotFound)
    assert (caught.value.message, caught.value.hint) == (message, hint)


def test_a_server_url_the_device_could_not_download_below_is_refused() -> None:
    # The loader refuses such a URL already; the package checks it again, as it is what the device
    # compares every announced URL with.
    config = esphome_config()
    odd = dataclasses.replace(config, server=dataclasses.replace(config.server, public_url="http://h:8000/a?b"))
    with pytest.raises(TinyOTAError, match="cannot go into an ESPHome lambda"):
        esphome.params_from_config(odd, "kitchen-1")


def test_the_secrets_are_named_after_the_device() -> None:
    params = esphome.SnippetParams("kitchen-1", "kitchen", "esp8266", "home", "http://h", "b", 1883)
    assert (params.secret, params.mqtt_secret) == ("tinyota_kitchen-1_password", "tinyota_kitchen-1_mqtt_password")
    assert params.esp8266
    assert not dataclasses.replace(params, platform="esp32").esp8266
    assert esphome.host_of("http://[fd00::1]:8000/x") == "fd00::1"
    assert esphome.host_of("http://OTA.lan:8000") == "ota.lan"
    assert esphome.host_of("nothing") == ""


# -- the package, as ESPHome reads it -----------------------------------------------------------------

class _Tagged(yaml.SafeLoader):
    """ESPHome's two tags in the package, kept as what they say."""


_Tagged.add_constructor("!secret", lambda loader, node: ("!secret", loader.construct_scalar(node)))
_Tagged.add_constructor("!lambda", lambda loader, node: ("!lambda", loader.construct_scalar(node)))


def read(text: str) -> dict[str, Any]:
    return dict(yaml.load(text, Loader=_Tagged))


def publish(topic: str, qos: int, fields: list[tuple[str, str]]) -> dict[str, Any]:
    """A retained status: each field a line ``root["key"] = <C++ expression>;``."""
    body = "\n".join(f'root["{key}"] = {value};' for key, value in fields)
    return {"mqtt.publish_json": {"topic": topic, "qos": qos, "retain": True, "payload": body}}


def statuses(platform: str) -> dict[str, list[dict[str, Any]]]:
    """The four OTA triggers' statuses in the server's format (docs/esphome.md, part by part)."""
    topic, where = "home/kitchen-1/status", f'"{platform}"'
    running, attempt = ("version", "ESPHOME_PROJECT_VERSION"), ("id", "id(tinyota_attempted)")
    return {
        "on_begin": [publish(topic, 1, [("state", '"downloading"'), running, ("progress", "0"), attempt,
                                        ("platform", where)])],
        # ESPHome calls on_progress at most once a second: QoS 0 is enough, the next one follows.
        "on_progress": [publish(topic, 0, [("state", 'x < 100 ? "downloading" : "flashing"'), running,
                                           ("progress", "(int) x"), attempt, ("platform", where)])],
        "on_end": [publish(topic, 1, [("state", '"rebooting"'), running, ("progress", "100"), attempt,
                                      ("platform", where)])],
    }


ERROR_CASES = [
    # ESPHome's OTA error codes (ota_backend.h, ota_http_request.h) in the words docs/esphome.md lists.
    (0x10, "MD5 missing"), (0x11, "bad URL"), (0x12, "connection failed or HTTP status not 200"),
    (0x80, "Verify Bin Header Failed (magic byte)"), (0x81, "update prepare failed"), (0x83, "flash write failed"),
    (0x84, "update end failed"), (0x86, "wrong current flash config"), (0x87, "New Binary Does Not Fit Flash Size"),
    (0x88, "Not Enough space"), (0x89, "Not Enough space"), (0x8A, "no update partition"), (0x8B, "MD5 mismatch"),
    (0x8C, "Not Enough space"),
]


def on_error(platform: str) -> str:
    cases = "\n".join(f'    case 0x{code:02X}: why = "{why}"; break;' for code, why in ERROR_CASES)
    return ('const char *why = "OTA error";\n'
            "switch (x) {\n" + cases + "\n}\n"
            'static const char *const digits = "0123456789ABCDEF";\n'
            "std::string error = why;\n"
            'error += " (ESPHome OTA error 0x";\n'
            "error += digits[(x >> 4) & 15];\n"
            "error += digits[x & 15];\n"
            'error += ")";\n'
            'root["state"] = "failed";\n'
            'root["version"] = ESPHOME_PROJECT_VERSION;\n'
            'root["id"] = id(tinyota_attempted);\n'
            'root["error"] = error;\n'
            f'root["platform"] = "{platform}";')


MALFORMED = """\
// tinyota:malformed: not an announcement this device can act on
auto text = [&](const char *key, size_t most) {
  JsonVariantConst value = x[key];
  if (!value.is<const char *>()) return false;
  const char *s = value.as<const char *>();
  size_t n = strlen(s);
  if (n == 0 || n > most) return false;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '!' || s[i] > '~') return false;
  }
  return true;
};
if (!text("id", 64) || !text("version", 64)) return true;
if (!text("url", 384) || !text("md5", 32)) return true;
const std::string md5 = x["md5"].as<std::string>();
if (md5.size() != 32) return true;
for (char c : md5) {
  if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return true;
}
return false;"""
RUNS_IT = """\
// tinyota:runs-it: the announced version is the one running
return x["version"].as<std::string>() == ESPHOME_PROJECT_VERSION;"""
ATTEMPTED = """\
// tinyota:attempted: this attempt was started before; never again
return x["id"].as<std::string>() == id(tinyota_attempted);"""
FOREIGN_URL = """\
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
return url.compare(n - 2, 2, "/.") == 0 || url.compare(n - 3, 3, "/..") == 0;"""


def on_announcement(platform: str) -> dict[str, Any]:
    """on_json_message: the checks in esp_client's order (docs/esphome.md), then the download."""
    topic, where = "home/kitchen-1/status", f'"{platform}"'
    running, announced = ("version", "ESPHOME_PROJECT_VERSION"), ("id", 'x["id"].as<std::string>()')
    refused = ("error", '"refused: \\"url\\" is not under the server this device was built for; '
                        'nothing was requested"')
    download = [
        {"globals.set": {"id": "tinyota_attempted", "value": ("!lambda", 'return x["id"].as<std::string>();')}},
        {"lambda": "tinyota_attempted->update();\nglobal_preferences->sync();"},
        {"ota.http_request.flash": {"url": ("!lambda", 'return x["url"].as<std::string>();'),
                                    "md5": ("!lambda", 'return x["md5"].as<std::string>();'),
                                    "username": "kitchen-1", "password": ("!secret", "tinyota_kitchen-1_password")}},
    ]
    foreign = {"if": {"condition": {"lambda": FOREIGN_URL},
                      "then": [publish(topic, 1, [("state", '"failed"'), running, announced, refused,
                                                  ("platform", where)])],
                      "else": download}}
    attempted = {"if": {"condition": {"lambda": ATTEMPTED},
                        "then": [{"logger.log": {"level": "INFO",
                                                 "format": "tinyota: attempt already tried once, not again"}}],
                        "else": [foreign]}}
    runs_it = {"if": {"condition": {"lambda": RUNS_IT},
                      "then": [publish(topic, 1, [("state", '"idle"'), running, announced, ("platform", where)])],
                      "else": [attempted]}}
    warned = {"logger.log": {"level": "WARN", "format": "tinyota: ignored an announcement that is not well-formed"}}
    malformed = {"if": {"condition": {"lambda": MALFORMED}, "then": [warned],
                        "else": [runs_it]}}
    return {"topic": "home/kitchen-1/update", "qos": 1, "then": [malformed]}


def test_the_package_for_an_esp8266_is_what_docs_esphome_md_describes() -> None:
    text = esphome.snippet(esphome_config(), "kitchen-1")
    availability = "home/kitchen-1/availability"
    assert read(text) == {
        "substitutions": {"tinyota_version": "0.0.0", "tinyota_server_url": "http://192.168.1.10:8000"},
        "esphome": {"project": {"name": "tinyota.kitchen", "version": "${tinyota_version}"}},
        "esp8266": {"restore_from_flash": True},
        "http_request": {"follow_redirects": False, "esp8266_disable_ssl_support": True},
        "globals": [{"id": "tinyota_attempted", "type": "std::string", "restore_value": True,
                     "max_restore_data_length": 64, "initial_value": '""'}],
        "ota": [{"platform": "http_request", **statuses("esp8266"),
                 "on_error": [{"mqtt.publish_json": {"topic": "home/kitchen-1/status", "qos": 1, "retain": True,
                                                     "payload": on_error("esp8266")}}]}],
        "mqtt": {
            "broker": "10.0.0.2", "port": 1883, "username": "kitchen-1",
            "password": ("!secret", "tinyota_kitchen-1_mqtt_password"),
            "birth_message": {"topic": availability, "payload": "online", "qos": 1, "retain": True},
            "will_message": {"topic": availability, "payload": "offline", "qos": 1, "retain": True},
            "shutdown_message": {"topic": availability, "payload": "offline", "qos": 1, "retain": True},
            "log_topic": None,
            "on_connect": [publish("home/kitchen-1/status", 1, [("state", '"idle"'),
                                                                ("version", "ESPHOME_PROJECT_VERSION"),
                                                                ("platform", '"esp8266"')])],
            "on_json_message": on_announcement("esp8266"),
        },
    }


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


HEADER = [
    "# TinyOTA for ESPHome: firmware updates for device 'kitchen-1' (image 'kitchen', esp8266).",
    "# Made by `tinyota esphome-snippet kitchen-1` for ESPHome 2026.10.0; docs/esphome.md explains it.",
    "#",
    "# 1. Save this beside the device's YAML as tinyota-kitchen-1.yaml and include it there:",
    "#      packages:",
    "#        tinyota: !include tinyota-kitchen-1.yaml",
    "# 2. Put the device's passwords into secrets.yaml, never into a YAML you share:",
    "#      tinyota_kitchen-1_password: the device's password of the TinyOTA config (its downloads)",
    "#      tinyota_kitchen-1_mqtt_password: its MQTT password (usually the same)",
    "# 3. Build each firmware with the version you will release it as, in the device's YAML:",
    "#      substitutions:",
    '#        tinyota_version: "1.4.0"',
    "#    then `tinyota release <firmware.ota.bin> --image kitchen --version 1.4.0`.",
]
# Why each setting is there, for whoever reads the file they compile (docs/esphome.md says the same).
REASONS = [
    "# The attempted id below must outlive a power cut, not only a reboot: keep preferences in flash.",
    "# The device's password goes only to the TinyOTA server: a redirect would carry it elsewhere.",
    "# The attempt this device last started, restored at boot: an attempt id is tried once only,",
    "# so a bad image or a crash mid-update can never make it update in a loop.",
    "# No log lines over MQTT: at the VERY_VERBOSE level ESPHome logs the download URL with the",
    "# password in it.",
    "# Remember the attempt before the download, so that neither a",
    "# failure nor a crash or power cut mid-update repeats it. Saved and",
    "# written to flash now: the global saves itself once a second from",
    "# the main loop, which the download blocks until it ends.",
]


def test_the_package_says_how_to_use_it_and_why_each_setting_is_there() -> None:
    text = esphome.snippet(esphome_config(), "kitchen-1")
    assert comments(text) == [*HEADER, *REASONS]
    assert "esp8266_disable_ssl_support: true  # the server URL is http://; saves flash\n" in text
    assert "pw-kitchen-1" not in text  # the passwords stay in secrets.yaml


def test_an_esp32_package_has_no_esp8266_settings_and_a_tls_broker_is_noted() -> None:
    config = esphome_config("https://ota.lan:8443", "mqtts://broker.lan")
    text = esphome.snippet(config, "sensor-1")
    doc = read(text)
    assert "esp8266" not in doc
    assert doc["http_request"] == {"follow_redirects": False}
    assert doc["substitutions"]["tinyota_server_url"] == "https://ota.lan:8443"
    assert doc["esphome"]["project"]["name"] == "tinyota.sensor"
    assert (doc["mqtt"]["broker"], doc["mqtt"]["port"]) == ("broker.lan", 8883)
    assert doc["ota"][0]["on_begin"][0]["mqtt.publish_json"]["topic"] == "home/sensor-1/status"
    assert doc["ota"][0]["on_error"][0]["mqtt.publish_json"]["payload"].endswith('root["platform"] = "esp32s3";')
    assert comments(text)[:2] == [
        "# TinyOTA for ESPHome: firmware updates for device 'sensor-1' (image 'sensor', esp32s3).",
        "# Made by `tinyota esphome-snippet sensor-1` for ESPHome 2026.10.0; docs/esphome.md explains it."]
    assert comments(text)[13:15] == [
        "# mqtt.url is mqtts://: ESPHome speaks TLS to a broker only on the ESP32, with",
        "# mqtt: certificate_authority: set it in the device's YAML."]
    assert "mqtts" not in esphome.snippet(esphome_config("https://ota.lan:8443", "mqtt://broker.lan"), "sensor-1")


def test_an_esp8266_downloading_over_https_cannot_check_the_certificate() -> None:
    text = esphome.snippet(esphome_config("https://ota.lan"), "kitchen-1")
    assert read(text)["http_request"] == {"follow_redirects": False, "verify_ssl": False}
    assert "  verify_ssl: false  # ESPHome cannot check certificates on the ESP8266\n" in text
    assert "esp8266_disable_ssl_support" not in text


def test_the_project_name_has_one_dot_whatever_the_image_is_called() -> None:
    # ESPHome's project name is <author>.<name>: a dot in the image's name would make a third part.
    params = esphome.SnippetParams("d", "a.b", "esp32", "p", "http://h", "b", 1883)
    assert read(esphome.render(params))["esphome"]["project"]["name"] == "tinyota.a_b"


def test_the_error_words_are_the_ones_the_server_sorts() -> None:
    # core/retry.py retries only what says nothing against the image: a connection error.
    assert dict(ERROR_CASES) == esphome.OTA_ERRORS
    assert esphome.ATTEMPT_ID_MAX == 64 and esphome.URL_MAX == 384
