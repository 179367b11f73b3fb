"""Config loading: real files in tmp_path, exact file:line and key path in every refusal."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyota_mqtt.config import Config, load_config, parse_config, redact
from tinyota_mqtt.config.model import Limits, MqttConfig, ServerConfig
from tinyota_mqtt.core.passwords import hash_password
from tinyota_mqtt.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
HASH = hash_password("hashed-device-secret", iterations=1000)

# A valid base the error tests append to; its images and groups are referenced by devices.
BASE = """\
images:
  kitchen: {platform: esp8266}
groups:
  kitchen-lights: {image: kitchen}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    assert caught.value.path == str(tmp_path / "config.yaml")
    return caught.value.problems


def only(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    found = problems(tmp_path, text, env)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------ the sample and the defaults


def test_repository_sample_loads_cleanly() -> None:
    config = load_config(REPO / "config.yaml", env={})
    assert config.source == REPO / "config.yaml"
    assert config.server.host == "127.0.0.1"
    assert config.server.public_url == "http://127.0.0.1:8000"
    assert config.server.store == REPO / "var/firmware"
    assert config.server.state == REPO / "var/tinyota.sqlite"
    assert config.server.admin.password.matches("change-me")
    # A plain `pip install .` runs it: a broker on this machine, not the [embedded] extra. The
    # demo's embedded broker keeps off mosquitto's port.
    assert not config.mqtt.embedded and config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.mqtt.embedded_port == 1884
    assert config.homeassistant.enabled
    assert {i: img.platform for i, img in config.images.items()} == {"kitchen": "esp8266", "sensor": "esp32"}
    assert config.groups["kitchen-lights"].auto_update and not config.groups["sensors"].auto_update
    assert [d.id for d in config.members("kitchen-lights")] == ["kitchen-1", "kitchen-2"]
    assert config.image_of("sensor-1") == config.images["sensor"]
    assert config.devices["sensor-1"].password is not None
    assert config.devices["sensor-1"].password.hashed is not None
    assert config.devices["sensor-1"].password.matches("sensor-1-demo")


def test_sample_admin_password_comes_from_the_environment() -> None:
    config = load_config(REPO / "config.yaml", env={"TINYOTA_ADMIN_PASSWORD": "s3cret"})
    assert config.server.admin.password.matches("s3cret")
    assert not config.server.admin.password.matches("change-me")


def test_defaults_come_from_the_model(tmp_path: Path) -> None:
    config = load(tmp_path, "homeassistant: {}\n")
    assert config.server == dataclasses.replace(
        ServerConfig(), store=tmp_path / "var/firmware", state=tmp_path / "var/tinyota.sqlite"
    )
    assert config.mqtt == MqttConfig()
    assert config.server.limits == Limits()
    assert len(config.images) == len(config.groups) == len(config.devices) == 0


def test_empty_sections_and_empty_device_mean_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + "server:\nmqtt:\ndevices:\n  kitchen-3:\n  kitchen-4: {}\n")
    assert config.server.port == 8000
    device = config.devices["kitchen-3"]
    assert (device.group, device.password, device.name, device.display_name) == (None, None, "", "kitchen-3")
    assert config.devices["kitchen-4"] == dataclasses.replace(device, id="kitchen-4")


def test_block_and_flow_styles_agree(tmp_path: Path) -> None:
    block = load(tmp_path, BASE + "devices:\n  kitchen-1:\n    group: kitchen-lights\n    name: Ceiling\n")
    flow = load(tmp_path, BASE + "devices: {kitchen-1: {group: kitchen-lights, name: Ceiling}}\n")
    assert block.devices == flow.devices


def test_full_shape_maps_onto_the_model(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        server:
          host: 0.0.0.0
          port: 8443
          public_url: https://ota.example.net/tinyota/
          store: /srv/fw
          state: state/db.sqlite
          access_log: false
          admin: {username: root, password: hunter2}
          tls: {cert: tls/cert.pem, key: /etc/key.pem}
          limits: {max_connections: 10, idle_timeout: 1.5, max_upload_bytes: 4194304, max_header_bytes: 8KiB}
        mqtt:
          url: mqtts://broker.lan:8883/
          username: tinyota
          password: mqtt-pass
          client_id: ota-1
          keepalive: 0
          protocol: 5
          prefix: home/ota
          tls: {ca: ca.pem}
        homeassistant: {enabled: false, discovery_prefix: ha, status_topic: ha/status}
        images:
          kitchen: {platform: esp32, description: "Kitchen: lights"}
        groups:
          kitchen-lights: {image: kitchen, auto_update: false, version: 1.2.3-rc.1+b5, attempt_timeout: 1h}
        devices:
          kitchen-1: {group: kitchen-lights, password: pw, name: "1.10"}
        """,
    )
    s, m = config.server, config.mqtt
    assert (s.host, s.port, s.public_url, s.access_log) == (
        "0.0.0.0",
        8443,
        "https://ota.example.net/tinyota",
        False,
    )
    assert (s.store, s.state) == (Path("/srv/fw"), tmp_path / "state/db.sqlite")
    assert s.tls is not None and (s.tls.cert, s.tls.key) == (tmp_path / "tls/cert.pem", Path("/etc/key.pem"))
    assert s.limits == Limits(10, 1.5, 4 * 1024 * 1024, 8 * 1024)
    assert s.admin.username == "root" and s.admin.password.matches("hunter2")
    assert (m.url, m.username, m.client_id, m.keepalive, m.protocol, m.prefix) == (
        "mqtts://broker.lan:8883",
        "tinyota",
        "ota-1",
        0,
        "5",
        "home/ota",
    )
    assert m.password is not None and m.password.reveal() == "mqtt-pass"
    assert m.tls is not None and m.tls.ca == tmp_path / "ca.pem" and m.tls.cert is None
    assert not config.homeassistant.enabled and config.homeassistant.status_topic == "ha/status"
    assert config.images["kitchen"].description == "Kitchen: lights"
    group = config.groups["kitchen-lights"]
    assert (group.version, group.attempt_timeout) == ("1.2.3-rc.1+b5", 3600.0)
    assert config.devices["kitchen-1"].name == "1.10"  # the text as written, not the float 1.1


def test_parse_config_without_a_base_dir_leaves_paths_relative() -> None:
    config = parse_config("server: {store: fw}\n", "inline.yaml", env={})
    assert config.server.store == Path("fw") and config.source is None
    based = parse_config(b"server: {store: fw}\n", "inline.yaml", env={}, base_dir="/opt/ota")
    assert based.server.store == Path("/opt/ota/fw")


# ------------------------------------------------------------------ values: durations, sizes, versions


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("90", 90.0),
        ("2.5", 2.5),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ('"45"', 45.0),
        ('"3 m"', 180.0),
    ],
)
def test_durations(tmp_path: Path, written: str, seconds: float) -> None:
    config = load(tmp_path, f"server:\n  limits:\n    idle_timeout: {written}\n")
    assert config.server.limits.idle_timeout == seconds


@pytest.mark.parametrize("written", ["0", "-5", "10 minutes", "1h30m", "true", "[1]", ".inf", "31d", "0x10"])
def test_bad_durations(tmp_path: Path, written: str) -> None:
    problem = only(tmp_path, f"server:\n  limits:\n    idle_timeout: {written}\n")
    assert problem.startswith("[config.yaml:3] server.limits.idle_timeout: ")


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("2048", 2048),
        ("16MiB", 16 * 2**20),
        ("512KiB", 512 * 1024),
        ("1MB", 10**6),
        ("1.5 MiB", 3 * 2**19),
        ("2kb", 2000),
        ("4096B", 4096),
    ],
)
def test_sizes(tmp_path: Path, written: str, size: int) -> None:
    config = load(tmp_path, f"server:\n  limits:\n    max_upload_bytes: {written}\n")
    assert config.server.limits.max_upload_bytes == size


@pytest.mark.parametrize("written", ["16M", "lots", "12.5", "-1", "10", "2GiB", "yes"])
def test_bad_sizes(tmp_path: Path, written: str) -> None:
    problem = only(tmp_path, f"server:\n  limits:\n    max_upload_bytes: {written}\n")
    assert problem.startswith("[config.yaml:3] server.limits.max_upload_bytes: ")


@pytest.mark.parametrize(
    "version",
    [
        "0.0.0",
        "1.4.0",
        "10.20.30",
        "1.0.0-alpha.1",
        "1.0.0-0A.is.legal",
        "1.0.0+20130313144700",
        "1.0.0-beta+exp.sha.5114f85",
        '"1.2.3"',
    ],
)
def test_valid_version_pins(tmp_path: Path, version: str) -> None:
    config = load(tmp_path, BASE.replace("{image: kitchen}", f"{{image: kitchen, version: {version}}}"))
    assert config.groups["kitchen-lights"].version == version.strip('"')


@pytest.mark.parametrize(
    ("version", "suggestion"),
    [
        ("1.4", "Did you mean '1.4.0'?"),
        ("v1.2.3", "Did you mean '1.2.3'?"),
        ("2", "Did you mean '2.0.0'?"),
        ("01.2.3", ""),
        ("1.2.3-", ""),
        ("1.2.3-01", ""),
        ("1.2.3+", ""),
        ("1.2.3.4", ""),
        ("latest", ""),
    ],
)
def test_invalid_version_pins(tmp_path: Path, version: str, suggestion: str) -> None:
    problem = only(tmp_path, BASE.replace("{image: kitchen}", f"{{image: kitchen, version: '{version}'}}"))
    assert problem.startswith(f"[config.yaml:4] groups.kitchen-lights.version: '{version}' is not a semantic version")
    assert problem.endswith(suggestion)


def test_null_version_means_no_pin(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace("{image: kitchen}", "{image: kitchen, version: null}"))
    assert config.groups["kitchen-lights"].version is None


# ------------------------------------------------------------------ environment substitution


def test_environment_substitution(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        server:
          port: ${PORT}
          public_url: http://${HOST}:${PORT}
          admin: {password: "${ADMIN:-fallback}"}
        mqtt:
          username: ${USER:-tinyota}
          password: ${MQTT_PASSWORD}
          client_id: cost-$$5-${EMPTY:-x}-${EMPTY}
        """,
        env={"PORT": "8080", "HOST": "10.0.0.2", "MQTT_PASSWORD": "p@ss word$", "EMPTY": ""},
    )
    assert config.server.port == 8080  # substituted text reads as if written in place
    assert config.server.public_url == "http://10.0.0.2:8080"
    assert config.server.admin.password.matches("fallback")
    assert config.mqtt.username == "tinyota"
    assert config.mqtt.password is not None and config.mqtt.password.reveal() == "p@ss word$"
    assert config.mqtt.client_id == "cost-$5-x-"


def test_missing_environment_variable(tmp_path: Path) -> None:
    found = problems(tmp_path, "mqtt:\n  username: ota\n  password: ${MQTT_PASSWORD}\nserver:\n  port: ${P}\n")
    assert found == [
        "[config.yaml:3] mqtt.password: environment variable MQTT_PASSWORD is not set; "
        "set it, or give a fallback with ${MQTT_PASSWORD:-value}",
        "[config.yaml:5] server.port: environment variable P is not set; set it, or give a fallback with ${P:-value}",
    ]


@pytest.mark.parametrize("written", ["${1ABC}", "${}", "${A-B}", "'${OPEN'"])
def test_malformed_references(tmp_path: Path, written: str) -> None:
    problem = only(tmp_path, f"mqtt:\n  client_id: {written}\n")
    assert problem.startswith("[config.yaml:2] mqtt.client_id: ")
    assert "$$" in problem


def test_substituted_value_is_still_type_checked(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n  port: ${PORT}\n", env={"PORT": "http"})
    assert problem == "[config.yaml:2] server.port: expected a whole number, got the text 'http'"


def test_flow_style_reference_needs_quotes(tmp_path: Path) -> None:
    problem = only(tmp_path, "mqtt: {username: u, password: ${PW}}\n", env={"PW": "x"})
    assert problem.startswith("[config.yaml:1] invalid YAML: ")
    assert problem.endswith('inside { } write "${NAME}" in quotes')


# ------------------------------------------------------------------ refusals, one class each


def test_yaml_syntax_error(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n  port: 8000\n  host: [127.0.0.1\nmqtt: {}\n")
    assert problem.startswith("[config.yaml:4] invalid YAML: ")
    assert "line 3" in problem


def test_tab_indentation(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n\tport: 8000\n")
    assert problem.startswith("[config.yaml:2] invalid YAML: ")
    assert problem.endswith("indent with spaces, not tabs")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"server:\n  host: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == ["[config.yaml:2] not valid UTF-8 (column 12); save the file as UTF-8"]


def test_control_character(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n  host: a\x07b\n")
    assert problem.startswith("[config.yaml:2] invalid character U+0007")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_config(tmp_path: Path, text: str) -> None:
    assert only(tmp_path, text) == "[config.yaml] config is empty; start from the sample config.yaml"


@pytest.mark.parametrize(
    ("text", "got"),
    [("- server\n", "a list"), ("server\n", "the text 'server'"), ("\n42\n", "the number 42")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    line = 2 if text.startswith("\n") else 1
    assert only(tmp_path, text) == (
        f"[config.yaml:{line}] the top level must be a mapping of sections "
        f"(server, mqtt, homeassistant, images, groups, devices), got {got}"
    )


def test_duplicate_keys_at_every_depth(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        BASE
        + textwrap.dedent("""\
        devices:
          kitchen-1: {group: kitchen-lights}
          kitchen-1: {group: kitchen-lights, group: kitchen-lights}
        server: {port: 1}
        server:
          limits: {idle_timeout: 5, idle_timeout: 6}
        """),
    )
    assert found == [
        "[config.yaml:7] devices: 'kitchen-1' is defined twice (lines 6 and 7); remove one",
        "[config.yaml:7] devices.kitchen-1: 'group' is defined twice (lines 7 and 7); remove one",
        "[config.yaml:9] 'server' is defined twice (lines 8 and 9); remove one",
        "[config.yaml:10] server.limits: 'idle_timeout' is defined twice (lines 10 and 10); remove one",
    ]


def test_unknown_keys_with_suggestions(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        BASE
        + textwrap.dedent("""\
        devices:
          kitchen-1:
            grup: kitchen-lights
        sever: {}
        mqtt: {colour: blue}
        """),
    )
    assert found == [
        "[config.yaml:7] devices.kitchen-1: 'grup' is not a valid option. Did you mean 'group'?",
        "[config.yaml:8] 'sever' is not a valid option. Did you mean 'server'?",
        "[config.yaml:9] mqtt: 'colour' is not a valid option. Valid options: url, username, password, "
        "client_id, keepalive, protocol, prefix, tls, embedded_host, embedded_port, version_commands, "
        "embedded_homeassistant_password.",
    ]


def test_merge_keys_are_refused(tmp_path: Path) -> None:
    problem = only(tmp_path, "x: &base {port: 1}\n")
    assert problem.startswith("[config.yaml:1] 'x' is not a valid option")
    problem = only(tmp_path, "server:\n  <<: {port: 1}\n")
    assert problem == "[config.yaml:2] server: merge keys (<<) are not supported; write the options out"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "server:\n  port: '8000'\n",
            "[config.yaml:2] server.port: expected a whole number, got the text '8000'; remove the quotes",
        ),
        (
            "server:\n  port: 80.5\n",
            "[config.yaml:2] server.port: expected a whole number, got the number 80.5",
        ),
        (
            "server:\n  port: 0x1F90\n",
            "[config.yaml:2] server.port: write '0x1F90' as a plain decimal number",
        ),
        ("server: true\n", "[config.yaml:1] server: expected a mapping of options, got the boolean true"),
        ("server:\n  - port\n", "[config.yaml:2] server: expected a mapping of options, got a list"),
        ("server:\n  host: [a, b]\n", "[config.yaml:2] server.host: expected text, got a list"),
        (
            "server:\n  access_log: yes\n",
            "[config.yaml:2] server.access_log: 'yes' is not accepted as a boolean; write true or false",
        ),
        (
            "homeassistant:\n  enabled: on\n",
            "[config.yaml:2] homeassistant.enabled: 'on' is not accepted as a boolean; write true or false",
        ),
        (
            "homeassistant:\n  enabled: 'true'\n",
            "[config.yaml:2] homeassistant.enabled: expected true or false, got the text 'true'; remove the quotes",
        ),
        (
            "homeassistant:\n  enabled: 1\n",
            "[config.yaml:2] homeassistant.enabled: expected true or false, got the number 1",
        ),
        (
            "server:\n  port:\n",
            "[config.yaml:2] server.port: needs a value (leave the key out to get the default)",
        ),
        ("images: [kitchen]\n", "[config.yaml:1] images: expected a mapping of id: options, got a list"),
        ("devices:\n  d1: [x]\n", "[config.yaml:2] devices.d1: expected a mapping of options, got a list"),
        ("server:\n  host: ''\n", "[config.yaml:2] server.host: must not be empty"),
        (
            "server:\n  host: http://0.0.0.0\n",
            "[config.yaml:2] server.host: 'http://0.0.0.0' is not a host name "
            "or address; write just the host, e.g. 0.0.0.0",
        ),
        (
            "mqtt:\n  prefix: tinyota/#\n",
            "[config.yaml:2] mqtt.prefix: 'tinyota/#' must not contain the MQTT wildcards '+' or '#'",
        ),
        (
            "mqtt:\n  prefix: /tinyota/\n",
            "[config.yaml:2] mqtt.prefix: '/tinyota/' must not start or end with '/'; did you mean 'tinyota'?",
        ),
        (
            "mqtt:\n  password: !secret mqtt\n",
            "[config.yaml:2] mqtt.password: the tag !secret is not supported (secrets come in as ${NAME})",
        ),
        ("server:\n  ? [a]\n  : 1\n", "[config.yaml:2] server: keys must be plain names, got a list"),
        ("server:\n  tls: {cert: c.pem}\n", "[config.yaml:2] server.tls: missing required option 'key'"),
        (
            "images:\n  kitchen:\n    description: x\n",
            "[config.yaml:2] images.kitchen: missing required option 'platform'",
        ),
        ("images:\n  kitchen:\n", "[config.yaml:2] images.kitchen: missing required option 'platform'"),
        ("groups:\n  g: {auto_update: true}\n", "[config.yaml:2] groups.g: missing required option 'image'"),
        (
            "server:\n  admin: {username: boss}\n",
            "[config.yaml:2] server.admin: missing required option 'password'",
        ),
        (
            "server:\n  limits:\n    max_connections: 0\n",
            "[config.yaml:3] server.limits.max_connections: 0 is out of range 1..1000000",
        ),
        ("mqtt:\n  keepalive: 70000\n", "[config.yaml:2] mqtt.keepalive: 70000 is out of range 0..65535"),
    ],
)
def test_wrong_types_and_shapes(tmp_path: Path, text: str, expected: str) -> None:
    assert only(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("key", "port"), [("port", 0), ("port", 65536), ("embedded_port", 70000), ("embedded_port", -1)]
)
def test_port_out_of_range(tmp_path: Path, key: str, port: int) -> None:
    section = "server" if key == "port" else "mqtt"
    problem = only(tmp_path, f"# ports\n{section}:\n  {key}: {port}\n")
    assert problem == f"[config.yaml:3] {section}.{key}: {port} is out of range 1..65535"


@pytest.mark.parametrize(
    ("kind", "key", "message"),
    [
        (
            "devices",
            "'kitchen 1'",
            "'kitchen 1' is not a valid id: use only letters, digits, '-' and '_' "
            "(ids become MQTT topic levels and Home Assistant ids). Did you mean 'kitchen-1'?",
        ),
        (
            "devices",
            "'küche/1'",
            "'küche/1' is not a valid id: use only letters, digits, '-' and '_' "
            "(ids become MQTT topic levels and Home Assistant ids). Did you mean 'k-che-1'?",
        ),
        ("devices", "''", "an empty id is not allowed; use letters, digits, '-' and '_'"),
        (
            "images",
            "'a.b'",
            "'a.b' is not a valid id: use only letters, digits, '-' and '_' "
            "(ids become MQTT topic levels and Home Assistant ids). Did you mean 'a-b'?",
        ),
        (
            "groups",
            "'+'",
            "'+' is not a valid id: use only letters, digits, '-' and '_' "
            "(ids become MQTT topic levels and Home Assistant ids)",
        ),
    ],
)
def test_invalid_ids(tmp_path: Path, kind: str, key: str, message: str) -> None:
    entry = {"devices": "{}", "images": "{platform: esp32}", "groups": "{image: kitchen}"}[kind]
    text = f"{kind}:\n  ok-1: {entry}\n  {key}: {entry}\n"
    if kind == "groups":
        text = "images:\n  kitchen: {platform: esp32}\n" + text
    found = problems(tmp_path, text)
    assert found == [f"[config.yaml:{len(text.splitlines())}] {kind}: {message}"]


def test_invalid_id_references(tmp_path: Path) -> None:
    problem = only(tmp_path, BASE + "devices:\n  d1: {group: 'kitchen lights'}\n")
    assert problem.startswith("[config.yaml:6] devices.d1.group: 'kitchen lights' is not a valid id")


def test_cross_references(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        images:
          kitchen: {platform: esp8266}
          sensor: {platform: esp32}
        groups:
          kitchen-lights: {image: kitchn}
          lonely: {image: x}
        devices:
          kitchen-1:
            group: kitchen-light
          kitchen-2: {group: nonsense}
        """,
    )
    assert found == [
        "[config.yaml:5] groups.kitchen-lights.image: unknown image 'kitchn'. Did you mean 'kitchen'?",
        "[config.yaml:6] groups.lonely.image: unknown image 'x'. Known images: kitchen, sensor.",
        "[config.yaml:9] devices.kitchen-1.group: unknown group 'kitchen-light'. Did you mean 'kitchen-lights'?",
        "[config.yaml:10] devices.kitchen-2.group: unknown group 'nonsense'. Known groups: kitchen-lights, lonely.",
    ]


def test_reference_into_an_empty_section(tmp_path: Path) -> None:
    problem = only(tmp_path, "devices:\n  d1: {group: kitchen}\n")
    assert problem == (
        "[config.yaml:2] devices.d1.group: unknown group 'kitchen': no groups are defined (add it under groups:)"
    )


def test_a_broken_group_does_not_orphan_its_devices(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        BASE.replace("{image: kitchen}", "{image: kitchen, auto_update: maybe}")
        + "devices:\n  d1: {group: kitchen-lights}\n",
    )
    assert found == ["[config.yaml:4] groups.kitchen-lights.auto_update: expected true or false, got the text 'maybe'"]


def test_schema_and_cross_reference_problems_come_together(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "server:\n  port: 99999\ndevices:\n  d1: {group: nope}\n")
    assert found == [
        "[config.yaml:6] server.port: 99999 is out of range 1..65535",
        "[config.yaml:8] devices.d1.group: unknown group 'nope'. Known groups: kitchen-lights.",
    ]


def test_a_broken_server_section_skips_the_admin_check(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n  port: x\ndevices:\n  admin: {}\n")
    assert problem == "[config.yaml:2] server.port: expected a whole number, got the text 'x'"


def test_pin_and_auto_update_contradict(tmp_path: Path) -> None:
    problem = only(
        tmp_path,
        BASE.replace("{image: kitchen}", "\n    image: kitchen\n    auto_update: true\n    version: 1.0.0"),
    )
    assert problem == (
        "[config.yaml:7] groups.kitchen-lights: a version pin and auto_update: true "
        "contradict each other; drop one of them"
    )


@pytest.mark.parametrize("server", ["", "server:\n", "server: {admin: {password: x}}\n"])
def test_admin_name_must_not_be_a_device_id(tmp_path: Path, server: str) -> None:
    problem = only(tmp_path, "devices:\n  admin: {}\n" + server)
    assert problem == (
        "[config.yaml:2] devices.admin: the id 'admin' is also server.admin.username; rename one of them"
    )


@pytest.mark.parametrize("platform", ["ESP32", "esp-8266", "ESP32-S3", "esp32-c3", "rp2040"])
def test_invalid_platform(tmp_path: Path, platform: str) -> None:
    problem = only(tmp_path, f"images:\n  kitchen:\n    platform: {platform}\n")
    assert problem.startswith(f"[config.yaml:3] images.kitchen.platform: '{platform}' is not a valid platform. ")
    expected = {
        "ESP32": "Did you mean 'esp32'?",
        "esp-8266": "Did you mean 'esp8266'?",
        "ESP32-S3": "Did you mean 'esp32s3'?",
        "esp32-c3": "Did you mean 'esp32c3'?",
        "rp2040": "Choose one of: esp8266, esp32, esp32s2, esp32s3, esp32c2, esp32c3, esp32c5, esp32c6, "
                  "esp32c61, esp32h2, esp32p4.",
    }[platform]
    assert problem.endswith(expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://192.168.1.10:8000", "http://192.168.1.10:8000"),
        ("http://192.168.1.10:8000/", "http://192.168.1.10:8000"),
        ("HTTPS://ota.example.net/base/path//", "https://ota.example.net/base/path"),
        ("http://[fe80::1]:8000", "http://[fe80::1]:8000"),
        ("http://localhost", "http://localhost"),
    ],
)
def test_public_url_accepted(tmp_path: Path, url: str, expected: str) -> None:
    assert load(tmp_path, f"server:\n  public_url: {url}\n").server.public_url == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host", "'ftp://host': expected http(s)://host[:port][/path], e.g. http://192.168.1.10:8000"),
        (
            "192.168.1.10:8000",
            "'192.168.1.10:8000': expected http(s)://host[:port][/path], e.g. http://192.168.1.10:8000",
        ),
        (
            "http://",
            "'http://' is not a valid URL; expected http(s)://host[:port][/path], e.g. http://192.168.1.10:8000",
        ),
        ("http://host:0", "port 0 is out of range 1..65535"),
        ("http://host:65536/x", "port 65536 is out of range 1..65535"),
        (
            "http://host/x?y=1",
            "'http://host/x?y=1' is not a valid URL; expected http(s)://host[:port][/path], "
            "e.g. http://192.168.1.10:8000",
        ),
        (
            "http://ho st",
            "'http://ho st' is not a valid URL; expected http(s)://host[:port][/path], e.g. http://192.168.1.10:8000",
        ),
    ],
)
def test_public_url_refused(tmp_path: Path, url: str, message: str) -> None:
    assert only(tmp_path, f"server:\n  public_url: '{url}'\n") == f"[config.yaml:2] server.public_url: {message}"


def test_public_url_credentials_refused_without_echo(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n  public_url: http://ota:Sup3rS3cret@host:8000\n")
    assert problem.startswith("[config.yaml:2] server.public_url: must not contain credentials")
    assert "Sup3rS3cret" not in problem


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("embedded", "embedded"),
        ("mqtt://broker", "mqtt://broker"),
        ("mqtt://broker:1883/", "mqtt://broker:1883"),
        ("MQTTS://10.0.0.2:8883", "mqtts://10.0.0.2:8883"),
        ("mqtt://[::1]:1883", "mqtt://[::1]:1883"),
    ],
)
def test_mqtt_url_accepted(tmp_path: Path, url: str, expected: str) -> None:
    assert load(tmp_path, f"mqtt:\n  url: '{url}'\n").mqtt.url == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "tcp://broker:1883",
            "'tcp://broker:1883': expected embedded, none, mqtt://host[:port] or mqtts://host[:port]; did you mean mqtt://?",
        ),
        ("broker:1883", "'broker:1883': expected embedded, none, mqtt://host[:port] or mqtts://host[:port]"),
        ("Embedded", "'Embedded': expected embedded, none, mqtt://host[:port] or mqtts://host[:port]"),
        ("ws://broker", "'ws://broker': expected embedded, none, mqtt://host[:port] or mqtts://host[:port]"),
        (
            "mqtt://broker/topic",
            "'mqtt://broker/topic' must not have a path; expected embedded, none, mqtt://host[:port] or mqtts://host[:port]",
        ),
        ("mqtt://broker:99999", "port 99999 is out of range 1..65535"),
    ],
)
def test_mqtt_url_refused(tmp_path: Path, url: str, message: str) -> None:
    assert only(tmp_path, f"mqtt:\n  url: '{url}'\n") == f"[config.yaml:2] mqtt.url: {message}"


def test_mqtt_url_credentials_refused_without_echo(tmp_path: Path) -> None:
    problem = only(tmp_path, "mqtt:\n  url: mqtt://tinyota:Br0kerPass@broker:1883\n")
    assert problem == (
        "[config.yaml:2] mqtt.url: must not contain credentials: put them in mqtt.username and mqtt.password"
    )


@pytest.mark.parametrize(("written", "protocol"), [("5", "5"), ("'5'", "5"), ('"3.1.1"', "3.1.1"), ("3.1.1", "3.1.1")])
def test_mqtt_protocol_accepted(tmp_path: Path, written: str, protocol: str) -> None:
    assert load(tmp_path, f"mqtt:\n  protocol: {written}\n").mqtt.protocol == protocol


@pytest.mark.parametrize("written", ["3.1", "311", "v5", "5.0", "4", "[5]"])
def test_mqtt_protocol_refused(tmp_path: Path, written: str) -> None:
    problem = only(tmp_path, f"mqtt:\n  protocol: {written}\n")
    assert problem.startswith("[config.yaml:2] mqtt.protocol: ")


def test_mqtt_options_that_contradict(tmp_path: Path) -> None:
    found = problems(tmp_path, "mqtt:\n  url: mqtt://broker\n  password: x\n  tls: {cert: c.pem}\n")
    assert found == [
        "[config.yaml:3] mqtt: password is set but username is not; add mqtt.username",
        "[config.yaml:4] mqtt.tls: TLS files are given but mqtt.url is not mqtts://host[:port]",
        "[config.yaml:4] mqtt.tls: a client certificate needs both cert and key",
    ]


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("pbkdf2_sha256$abc", "expected pbkdf2_sha256$<iterations>$<salt>$<hash>"),
        ("pbkdf2_sha256$10$c2FsdHNhbHQ$aGFzaA", "iterations must be a whole number from 1000 to 10000000"),
        ("pbkdf2_sha256$1000$c2FsdA$aGFzaA", "salt must be at least 8 bytes and the hash 32 bytes"),
    ],
)
def test_bad_password_hash(tmp_path: Path, password: str, message: str) -> None:
    problem = only(tmp_path, f"devices:\n  d1:\n    password: {password}\n")
    assert problem == (
        f"[config.yaml:3] devices.d1.password: not a valid password hash: {message}. "
        "Make one with `tinyota hash-password`"
    )


def test_misspelled_hash_scheme_is_not_taken_as_a_plain_password(tmp_path: Path) -> None:
    problem = only(tmp_path, f"devices:\n  d1:\n    password: {HASH.replace('_', '-', 1)}\n")
    assert (
        problem == "[config.yaml:3] devices.d1.password: looks like a password hash, but only pbkdf2_sha256$… "
        "is understood"
    )


def test_empty_passwords_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path, "server:\n  admin: {password: ''}\ndevices:\n  d1: {password: '${PW}'}\n", env={"PW": ""}
    )
    assert found == [
        "[config.yaml:2] server.admin.password: must not be empty (leave the key out for no password)",
        "[config.yaml:4] devices.d1.password: must not be empty (leave the key out for no password)",
    ]


def test_too_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    problem = only(tmp_path, "server: " + "[" * 200 + "]" * 200 + "\n")
    assert problem.startswith("[config.yaml:1] invalid YAML: nested more than 64 levels deep")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.problems[0].startswith("[nope.yaml] no such file")


def test_error_message_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "server:\n  port: 0\nmqtt:\n  keepalive: -1\n")
    text = str(caught.value)
    assert text.startswith(f"2 problem(s) in {tmp_path / 'config.yaml'}:\n")
    assert "\n  [config.yaml:2] server.port: 0 is out of range 1..65535\n" in text
    assert text.endswith("\n  [config.yaml:4] mqtt.keepalive: -1 is out of range 0..65535")


# ------------------------------------------------------------------ paths, immutability, secrets


def test_relative_paths_follow_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "config.yaml").write_text("server:\n  store: fw\n  tls: {cert: ../c.pem, key: ~/k.pem}\n")
    monkeypatch.chdir(tmp_path)  # a relative config path must still resolve against its own folder
    config = load_config("etc/config.yaml", env={})
    assert config.source == folder / "config.yaml"
    assert config.server.store == folder / "fw"
    assert config.server.state == folder / "var/tinyota.sqlite"
    assert config.server.tls is not None
    assert config.server.tls.cert == folder / "../c.pem"
    assert config.server.tls.key == Path("~/k.pem").expanduser()


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(REPO / "config.yaml", env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server = ServerConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.limits.idle_timeout = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.devices["x"] = config.devices["kitchen-1"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del config.groups["sensors"]  # type: ignore[attr-defined]


def test_redact_masks_every_secret(tmp_path: Path) -> None:
    secrets = {"ADMIN": "admin-Secret-1", "MQTT": "mqtt-Secret-2", "DEV": "device-Secret-3"}
    config = load(
        tmp_path,
        BASE
        + textwrap.dedent(f"""\
        server:
          admin: {{password: "${{ADMIN}}"}}
        mqtt:
          url: mqtts://broker:8883
          username: tinyota
          password: ${{MQTT}}
        devices:
          plain: {{group: kitchen-lights, password: "${{DEV}}"}}
          hashed: {{group: kitchen-lights, password: "{HASH}"}}
          none: {{group: kitchen-lights}}
        """),
        env=secrets,
    )
    logged = json.dumps(redact(config))
    for text in [*secrets.values(), HASH, HASH.split("$")[-1]]:
        assert text not in repr(config)
        assert text not in str(config)
        assert text not in logged
    plain = redact(config)
    assert plain["server"]["admin"] == {"username": "admin", "password": "***"}
    assert plain["mqtt"]["password"] == "***"
    assert [d["password"] for d in plain["devices"].values()] == ["***", "***", None]
    assert plain["server"]["store"] == str(tmp_path / "var/firmware")
    assert config.devices["hashed"].password is not None
    assert config.devices["hashed"].password.matches("hashed-device-secret")


def test_redact_is_a_plain_copy() -> None:
    config = load_config(REPO / "config.yaml", env={})
    plain = redact(config)
    plain["devices"].clear()
    assert len(config.devices) == 3
    assert json.loads(json.dumps(plain)) == plain


# ------------------------------------------------------------------ properties: never another exception


def _outcome(text: str | bytes) -> None:
    try:
        parse_config(text, "fuzz.yaml", env={"A": "1", "EMPTY": ""})
    except ConfigError as error:
        assert error.problems
        assert all(p.startswith("[fuzz.yaml") for p in error.problems)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_loads_or_is_refused_cleanly(text: str) -> None:
    _outcome(text)


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_any_bytes_load_or_are_refused_cleanly(raw: bytes) -> None:
    _outcome(raw)


_KEYS = st.sampled_from(
    [
        "server",
        "mqtt",
        "homeassistant",
        "images",
        "groups",
        "devices",
        "host",
        "port",
        "public_url",
        "store",
        "admin",
        "password",
        "username",
        "tls",
        "cert",
        "limits",
        "idle_timeout",
        "max_upload_bytes",
        "url",
        "protocol",
        "prefix",
        "enabled",
        "kitchen",
        "platform",
        "image",
        "version",
        "auto_update",
        "group",
        "attempt_timeout",
        "name",
        "kitchen-1",
        "<<",
        "",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "esp32",
            "embedded",
            "mqtt://h:1",
            "http://h",
            "1.2.3",
            "16MiB",
            "10m",
            "${A}",
            "${B}",
            "$$",
            "${EMPTY:-x}",
            "kitchen",
            "pbkdf2_sha256$1000$x$y",
            "5",
            "3.1.1",
            "yes",
        ]
    ),
)
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _TREES, max_size=6))
def test_config_shaped_documents_load_or_are_refused_cleanly(tree: dict[str, object]) -> None:
    _outcome(yaml.safe_dump(tree, default_flow_style=bool(len(tree) % 2)))


def test_device_id_server_is_reserved() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("devices:\n  server: {}\n", "config.yaml")
    assert "[config.yaml:2] devices.server: 'server' is reserved" in str(err.value)


# ------------------------------------------------------------------ server keys of the HTTP hardening


def test_devices_fetch_any_image_was_removed_with_a_reason(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n  devices_fetch_any_image: true\n")
    assert problem.startswith("[config.yaml:2] server.devices_fetch_any_image: was removed")
    assert "delete this line" in problem


def test_trusted_proxies_and_the_per_address_cap(tmp_path: Path) -> None:
    config = load(tmp_path, 'server:\n  trusted_proxies: [127.0.0.1, 10.0.0.0/8, "::1"]\n'
                            "  limits: {max_connections_per_address: 7}\n")
    assert [str(n) for n in config.server.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert config.server.limits.max_connections_per_address == 7
    assert redact(config)["server"]["trusted_proxies"] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    json.dumps(redact(config))  # still JSON-ready
    assert load(tmp_path, "homeassistant: {}\n").server.trusted_proxies == ()


@pytest.mark.parametrize(("written", "says"), [
    ("proxy.lan", "is not an IP address or network"),
    ("10.0.0.0/33", "is not an IP address or network"),
    ("[[1]]", "expected text"),
])
def test_bad_trusted_proxies(tmp_path: Path, written: str, says: str) -> None:
    problem = only(tmp_path, f"server:\n  trusted_proxies: [{written}]\n")
    assert problem.startswith("[config.yaml:2] server.trusted_proxies:") and says in problem, problem


def test_trusted_proxies_must_be_a_list(tmp_path: Path) -> None:
    problem = only(tmp_path, "server:\n  trusted_proxies: 127.0.0.1\n")
    assert "expected a list of addresses or networks" in problem


def _node_lines(node: yaml.Node) -> list[tuple[str, int, int]]:
    out = [(type(node).__name__, node.start_mark.line, node.start_mark.column)]
    children = node.value if isinstance(node.value, list) else []
    for child in children:
        for part in child if isinstance(child, tuple) else (child,):
            out.extend(_node_lines(part))
    return out


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml: only the pure loader exists")
def test_the_libyaml_loader_builds_the_pure_loaders_nodes() -> None:
    """Start-up reads the config through libyaml (a 1,000-device file: 0.28 → 0.05 s); every line
    number an error names comes from these nodes, so both loaders must mark them alike."""
    from tinyota_mqtt.config import loader

    text = (Path(__file__).resolve().parents[1] / "config.yaml").read_text()
    text += "".join(f"  extra-{n}: {{group: kitchen-lights, password: 'pw ${{X:-{n}}}'}}\n" for n in range(50))
    fast, pure = loader._compose(loader._Loader, text), loader._compose(loader._LineLoader, text)
    assert loader._Loader is not loader._LineLoader
    assert fast is not None and pure is not None
    assert _node_lines(fast) == _node_lines(pure)
    assert yaml.serialize(fast) == yaml.serialize(pure)
