"""The pure core: parsers that never raise on hostile input, and decisions without I/O."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tinyota_mqtt.config import parse_config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import esp_headers, hass, httpauth, image, passwords, policy, protocol, semver

# -- semantic versions ------------------------------------------------------------------------------

def test_semver_precedence_follows_the_spec_example() -> None:
    # semver.org section 11's own example chain.
    chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
             "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1"]
    parsed = [semver.parse(v) for v in chain]
    assert parsed == sorted(parsed)
    assert all(a < b for a, b in itertools.pairwise(parsed))


def test_build_metadata_is_ignored_for_order() -> None:
    assert semver.parse("1.0.0+a") == semver.parse("1.0.0+b")
    assert str(semver.parse("1.0.0+a")) == "1.0.0+a"


@pytest.mark.parametrize("text", ["1", "1.0", "01.0.0", "1.0.0-", "1.0.0+", "1.0.0-01", "v1.0.0", "", " 1.0.0",
                                  "1.0.0\n", "1.0.0-a..b", "1" * 70 + ".0.0"])
def test_invalid_versions(text: str) -> None:
    with pytest.raises(semver.VersionError):
        semver.parse(text)


def test_leading_v_gets_a_hint() -> None:
    with pytest.raises(semver.VersionError) as err:
        semver.parse("v1.2.3")
    assert err.value.hint == "drop the leading 'v': 1.2.3"


versions = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50),
                     st.lists(st.one_of(st.integers(0, 20), st.from_regex(r"[a-z][a-z0-9-]{0,4}", fullmatch=True)),
                              max_size=3))


@given(versions, versions)
def test_semver_order_is_consistent(a: Any, b: Any) -> None:
    def text(v: Any) -> str:
        return f"{v[0]}.{v[1]}.{v[2]}" + ("-" + ".".join(map(str, v[3])) if v[3] else "")
    va, vb = semver.parse(text(a)), semver.parse(text(b))
    assert (va < vb) + (va == vb) + (va > vb) == 1
    if a[:3] != b[:3]:
        assert (va < vb) == (a[:3] < b[:3])


@given(st.text(max_size=80))
def test_semver_parse_only_raises_version_error(text: str) -> None:
    with contextlib.suppress(semver.VersionError):
        semver.parse(text)


# -- credentials ------------------------------------------------------------------------------------

@given(st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=120).map(
    lambda b: "Basic " + base64.b64encode(b).decode())))
def test_basic_auth_parser_never_raises(header: str | None) -> None:
    result = httpauth.parse_basic(header)
    assert result is None or (isinstance(result[0], str) and result[0] != "")


def test_basic_auth_round_trip_with_colon_in_password() -> None:
    assert httpauth.parse_basic(httpauth.basic_header("dev", "a:b:c")) == ("dev", "a:b:c")


def test_password_hash_round_trip() -> None:
    hashed = passwords.hash_password("s3cret", iterations=1000)
    assert passwords.check_hash_format(hashed) is None
    pw = passwords.Password.parse(hashed)
    assert pw.matches("s3cret") and not pw.matches("s3cret ")
    assert "s3cret" not in repr(pw) and "s3cret" not in repr(passwords.Password.parse("s3cret"))


# A 15-byte salt whose encoding ends in "X", and lengths whose encodings need 0, 1 or 2 "=" of padding.
SALTS = [b"\x00" * 14 + b"\x17", *(bytes(range(n)) for n in range(8, 34))]


@pytest.mark.parametrize("salt", SALTS, ids=lambda s: f"{len(s)}-bytes")
def test_any_salt_of_eight_bytes_or_more_makes_a_hash_the_config_accepts(salt: bytes) -> None:
    hashed = passwords.hash_password("s3cret", iterations=1000, salt=salt)
    scheme, rounds, salt_text, digest_text = hashed.split("$")
    # The documented shape: unpadded URL-safe base64, so it pastes into YAML as it is.
    assert (scheme, rounds) == ("pbkdf2_sha256", "1000") and "=" not in hashed
    assert base64.urlsafe_b64decode(salt_text + "==") == salt
    assert base64.urlsafe_b64decode(digest_text + "=") == hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 1000)
    assert passwords.check_hash_format(hashed) is None
    assert passwords.Password.parse(hashed).matches("s3cret")


@pytest.mark.parametrize(("text", "problem"), [
    ("pbkdf2_sha1$1000$AAAAAAAAAAA$" + "A" * 43, "expected pbkdf2_sha256$"),  # another scheme, right shape
    ("pbkdf2_sha256$1000$AAAAAAAAAAA$" + "A" * 43 + "$x", "expected pbkdf2_sha256$"),
    ("pbkdf2_sha256$many$AAAAAAAAAAA$" + "A" * 43, "iterations"),
    ("pbkdf2_sha256$999$AAAAAAAAAAA$" + "A" * 43, "iterations"),
    ("pbkdf2_sha256$10000001$AAAAAAAAAAA$" + "A" * 43, "iterations"),
    ("pbkdf2_sha256$1000$AAAAAA$" + "A" * 43, "salt must be at least 8 bytes"),
    ("pbkdf2_sha256$1000$AAAAAAAAAAA$" + "A" * 42, "the hash 32 bytes"),
    ("pbkdf2_sha256$1000$AAAAA$" + "A" * 43, "base64"),
])
def test_a_bad_hash_in_the_config_is_named(text: str, problem: str) -> None:
    why = passwords.check_hash_format(text)
    assert why is not None and problem in why


def test_iterations_from_1000_to_10000000_are_accepted() -> None:
    # The error message states the range; both ends are in it.
    salt, digest = "A" * 11, "A" * 43
    assert passwords.check_hash_format(f"pbkdf2_sha256$1000${salt}${digest}") is None
    assert passwords.check_hash_format(f"pbkdf2_sha256$10000000${salt}${digest}") is None


def test_a_secret_is_masked_when_printed() -> None:
    secret = passwords.Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2"


def test_a_repeat_login_runs_no_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module docstring's promise: a fleet logging in on every download pays the KDF once.
    hashed = passwords.Password.parse(passwords.hash_password("right", iterations=1000))
    verifier = passwords.Verifier({"dev": hashed})
    runs: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(*args: Any) -> bytes:
        runs.append(1)
        return real(*args)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    assert verifier.check("dev", "right") and len(runs) == 1
    assert verifier.check("dev", "right") and verifier.check("dev", "right") and len(runs) == 1
    assert not verifier.check("dev", "wrong") and len(runs) == 2  # a guess still pays in full


def test_an_all_plain_config_refuses_unknown_names_without_a_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = passwords.Verifier({"plain": passwords.Password.parse("pw")})
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *args: pytest.fail("no hashed account: no KDF"))
    assert not verifier.check("ghost", "pw") and not verifier.check("ghost", "")
    assert verifier.check("plain", "pw")


def test_verifier_caches_only_successes() -> None:
    hashed = passwords.Password.parse(passwords.hash_password("right", iterations=1000))
    verifier = passwords.Verifier({"dev": hashed, "plain": passwords.Password.parse("pw")})
    assert verifier.check("dev", "right") and verifier.check("dev", "right")
    assert not verifier.check("dev", "wrong")
    assert verifier.check("plain", "pw") and not verifier.check("plain", "PW")
    assert not verifier.check("ghost", "pw")


# -- ESP headers ------------------------------------------------------------------------------------

def test_esp8266_headers() -> None:
    headers = {"user-agent": "ESP8266-http-Update", "x-esp8266-version": "1.2.0",
               "x-esp8266-free-space": "1044480", "x-esp8266-sta-mac": "AA:BB"}
    req = esp_headers.parse(lambda k: headers.get(k.lower()))
    assert req.platform == "esp8266" and req.version == "1.2.0" and req.free_space == 1044480
    assert req.sta_mac == "AA:BB"


def test_plain_clients_are_not_esp() -> None:
    assert esp_headers.parse(lambda k: {"user-agent": "curl/8"}.get(k.lower())).platform is None


@given(st.dictionaries(st.sampled_from(["x-esp32-free-space", "x-esp32-version", "x-esp32-sketch-size",
                                        "user-agent", "x-esp32-chip-size"]), st.text(max_size=200)))
@example(headers={"x-esp32-free-space": "\u00b2"})  # "²".isdigit() is True but int("²") fails
def test_esp_header_parser_raises_only_bad_esp_header(headers: dict[str, str]) -> None:
    with contextlib.suppress(esp_headers.BadEspHeader):
        esp_headers.parse(lambda k: headers.get(k.lower()))


# -- images -----------------------------------------------------------------------------------------

def test_image_version_marker() -> None:
    data = image.make_test_image("1.2.3-rc.1", 1000)
    assert image.kind(data) == "esp" and image.find_version(data) == "1.2.3-rc.1"
    assert image.find_version(b"\xe9" + image.VERSION_MARKER + b"1.0.0") is None  # no terminator
    assert image.kind(b"\x1f\x8b\x08") == "gzip" and image.kind(b"PK") is None


# -- MQTT payloads ----------------------------------------------------------------------------------

def test_status_parsing() -> None:
    status = protocol.parse_status(b'{"state":"downloading","version":"1.0.0","progress":42,"id":"x",'
                                   b'"platform":"esp32","free_space":1000,"extra":"ignored"}')
    assert status == protocol.Status("downloading", "1.0.0", 42, "x", None, "esp32", 1000)


@given(st.one_of(st.binary(max_size=300), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["state", "version", "progress", "id", "error", "platform", "free_space"]), inner, max_size=7)),
    max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_status_parser_raises_only_protocol_error(raw: bytes) -> None:
    try:
        status = protocol.parse_status(raw)
    except protocol.ProtocolError:
        return
    assert status.state in protocol.STATES
    assert status.progress is None or 0 <= status.progress <= 100


def test_announcement_payload_is_compact_and_stable() -> None:
    ann = protocol.Announcement("abc", "1.4.0", "http://h:8000/fw/k/1.4.0.bin", 10, "0" * 32, "f" * 64)
    assert ann.payload() == ann.payload()
    assert json.loads(ann.payload())["version"] == "1.4.0"
    assert b" " not in ann.payload()


def test_topics_split_refuses_foreign_and_server_topics() -> None:
    topics = protocol.Topics("tinyota")
    assert topics.split("tinyota/kitchen-1/status") == ("kitchen-1", "status")
    for bad in ("tinyota/server/availability", "other/kitchen-1/status", "tinyota/a/b/c", "tinyota/bad id/status"):
        assert topics.split(bad) is None


@pytest.mark.parametrize(("raw", "want"), [(b"install", None), (b"INSTALL", None), (b'{"version":"1.0.0"}', "1.0.0")])
def test_install_command(raw: bytes, want: str | None) -> None:
    assert protocol.parse_install(raw) == want


# -- Home Assistant ---------------------------------------------------------------------------------

# What Home Assistant's own schemas say about these shapes: tests/test_hass_schema.py.

def test_discovery_payload() -> None:
    entity = hass.EntityInfo("kitchen-1", "Kitchen", "kitchen", "esp8266", "1.0.0",
                             configuration_url="http://h/devices/kitchen-1", entity_picture="http://h/icon.svg")
    topic, payload, retain = hass.discovery("homeassistant", protocol.Topics("tinyota"), entity)
    body = json.loads(payload)
    assert topic == "homeassistant/update/tinyota_kitchen-1/config" and retain
    assert body["device"]["configuration_url"] == "http://h/devices/kitchen-1"
    assert body["entity_picture"] == "http://h/icon.svg" and body["name"] == "Firmware"
    # The server owns the entity's availability; its own last will greys everything out.
    assert [a["topic"] for a in body["availability"]] == ["tinyota/kitchen-1/entity", "tinyota/server/availability"]
    for key in ("title", "release_summary", "release_url"):
        assert key not in body  # they would override the state topic's live values
    assert hass.removal("homeassistant", "kitchen-1") == (topic, b"", True)


def test_state_payload_never_sends_null_where_home_assistant_wants_text() -> None:
    entity = hass.EntityState(installed=None, offered=None, in_progress=False, percentage=55, title="t")
    body = json.loads(hass.state(protocol.Topics(), "d", entity)[1])
    assert body == {"in_progress": False, "update_percentage": None, "title": "t", "release_summary": ""}
    entity = hass.EntityState(installed="1.0.0", offered=None, in_progress=True, percentage=55, title="t",
                              notes="x" * 400, release_url="http://h/releases")
    body = json.loads(hass.state(protocol.Topics(), "d", entity)[1])
    assert body["latest_version"] == "1.0.0"  # nothing offered: shown as up to date
    assert body["update_percentage"] == 55 and len(body["release_summary"]) == 255


@pytest.mark.parametrize(("online", "since", "updating", "deadline", "now", "want"), [
    (True, None, False, None, 0, True),
    (None, None, False, None, 0, False),  # never seen
    (False, 10, False, None, 11, False),  # its last will, no update: gone
    (False, 10, True, None, 11, True),  # dropped inside its update: the reboot
    (False, 10, True, None, 10 + hass.REBOOT_GRACE, False),  # grace over
    (False, 10, True, 12, 12, False),  # the attempt's deadline ends the grace sooner
])
def test_entity_availability(online: bool | None, since: float | None, updating: bool, deadline: float | None,
                             now: float, want: bool) -> None:
    assert hass.entity_available(online=online, offline_since=since, updating=updating,
                                 attempt_deadline=deadline, now=now) is want


# -- policy and attempts ----------------------------------------------------------------------------

CONFIG = parse_config("""
images: {k: {platform: esp8266}}
groups:
  auto: {image: k, auto_update: true}
  manual: {image: k}
  pinned: {image: k, version: 1.0.0}
devices:
  a: {group: auto}
  m: {group: manual}
  p: {group: pinned}
  none: {}
""")


class R:
    def __init__(self, version: str) -> None:
        self.version = version


@pytest.mark.parametrize(("device", "commanded", "want"), [
    ("a", None, "2.0.0"), ("a", "1.0.0", "1.0.0"), ("m", None, None), ("m", "2.0.0", "2.0.0"),
    ("p", None, "1.0.0"), ("p", "2.0.0", "2.0.0"), ("none", None, None), ("a", "9.9.9", None), ("ghost", None, None),
])
def test_policy(device: str, commanded: str | None, want: str | None) -> None:
    assert policy.target_version(CONFIG, device, [R("1.0.0"), R("2.0.0")], commanded) == want


@pytest.mark.parametrize(("device", "commanded", "installed", "want"), [
    ("a", None, "1.0.0", "2.0.0"), ("m", None, "1.0.0", "2.0.0"),  # on-command groups are offered it too
    ("m", "1.0.0", "2.0.0", "1.0.0"),  # a commanded rollback under way shows as the target
    ("m", "2.0.0", "2.0.0", "2.0.0"), ("a", "1.0.0", "1.0.0", "2.0.0"),  # reached: newer releases show again
    ("p", None, "2.0.0", "1.0.0"), ("none", None, "1.0.0", None), ("m", "9.9.9", "1.0.0", "2.0.0"),
])
def test_offered_version(device: str, commanded: str | None, installed: str | None, want: str | None) -> None:
    assert policy.offered_version(CONFIG, device, [R("1.0.0"), R("2.0.0")], commanded, installed) == want


def attempt(state: str = att.PENDING) -> att.Attempt:
    return att.Attempt("id1", "a", "2.0.0", "1.0.0", state, created=0, deadline=100, updated=0)


@pytest.mark.parametrize(("before", "status", "after"), [
    (att.PENDING, protocol.Status("downloading", "1.0.0", 10, "id1"), att.DOWNLOADING),
    (att.DOWNLOADING, protocol.Status("rebooting", "1.0.0", None, "id1"), att.FLASHING),
    (att.FLASHING, protocol.Status("idle", "2.0.0"), att.SUCCEEDED),
    (att.PENDING, protocol.Status("idle", "2.0.0"), att.SUCCEEDED),
    (att.DOWNLOADING, protocol.Status("failed", "1.0.0", None, "id1", "MD5 check failed"), att.FAILED),
    (att.FLASHING, protocol.Status("idle", "1.0.0"), att.FAILED),  # came back on the old version
    (att.PENDING, protocol.Status("idle", "1.0.0"), att.PENDING),  # not started yet
    (att.PENDING, protocol.Status("failed", "1.0.0", None, "older-id"), att.PENDING),  # about another one
    (att.SUCCEEDED, protocol.Status("failed", "1.0.0", None, "id1"), att.SUCCEEDED),  # final stays final
])
def test_attempt_transitions(before: str, status: protocol.Status, after: str) -> None:
    assert att.on_status(attempt(before), status, now=5).state == after


def test_attempt_deadline_refusal_and_cancel() -> None:
    assert att.on_clock(attempt(), 99).state == att.PENDING
    assert att.on_clock(attempt(), 100).state == att.TIMED_OUT
    assert att.on_refused(attempt(), "no room", 1).error == "no room"
    assert att.cancel(attempt(att.SUCCEEDED), 1).state == att.SUCCEEDED


def test_a_bare_marker_prefix_is_skipped() -> None:
    data = b"\xe9" + image.VERSION_MARKER + b"\x00junk" + image.VERSION_MARKER + b"2.1.0\x00"
    assert image.find_version(data) == "2.1.0"


def test_verifier_says_when_a_check_would_run_the_kdf() -> None:
    hashed = passwords.Password.parse(passwords.hash_password("right", iterations=1000))
    verifier = passwords.Verifier({"dev": hashed, "plain": passwords.Password.parse("pw")})
    assert verifier.is_cheap("plain", "anything")
    # An unknown id costs a KDF run too (a dummy hash), so timing does not tell it from "dev".
    assert not verifier.is_cheap("ghost", "x") and not verifier.check("ghost", "right")
    assert passwords.Verifier({"plain": passwords.Password.parse("pw")}).is_cheap("ghost", "x")
    assert not verifier.is_cheap("dev", "right")  # first login: the HTTP layer moves it off the loop
    assert verifier.check("dev", "right")
    assert verifier.is_cheap("dev", "right") and not verifier.is_cheap("dev", "wrong")
