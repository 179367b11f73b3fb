"""The pure rules in core/, pinned value by value.

These tests exist because the mutation run (``./dev mutate``, docs/testing.md) showed that the
broader tests in test_core.py let a changed rule pass: a transition that forgot to stamp
``updated``, a back-off that grew by 3 instead of 2, a limit off by one. Each test states a rule
in the words of the docs and checks the whole value the rule produces, so a change to any part of
it is seen.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from ipaddress import ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyota_mqtt import __version__
from tinyota_mqtt.config import parse_config
from tinyota_mqtt.core import attempts as att
from tinyota_mqtt.core import esp_headers, forwarded, hass, hass_rollout, httpauth, policy, protocol, retry, semver
from tinyota_mqtt.core.protocol import Status
from tinyota_mqtt.core.throttle import LoginThrottle

# -- attempts: every field of the attempt after each transition ---------------------------------------

BASE = att.Attempt("id1", "kitchen-1", "2.0.0", "1.0.0", att.PENDING, created=100.0, deadline=400.0,
                   updated=100.0)


def at(state: str, **kw: object) -> att.Attempt:
    return replace(BASE, state=state, **kw)  # type: ignore[arg-type]


NOW = 150.0


@pytest.mark.parametrize(("before", "status", "after"), [
    # Progress is the device's, and every change stamps the time it was seen.
    (at(att.PENDING), Status("downloading", "1.0.0", 10, "id1"), at(att.DOWNLOADING, updated=NOW, progress=10)),
    (at(att.DOWNLOADING, progress=10), Status("flashing", "1.0.0", 60, "id1"),
     at(att.FLASHING, updated=NOW, progress=60)),
    # 'rebooting' without a percentage means the image is written: 100.
    (at(att.DOWNLOADING, progress=90), Status("rebooting", "1.0.0", None, "id1"),
     at(att.FLASHING, updated=NOW, progress=100)),
    # The target version confirms, from 'idle' or 'rebooting', and clears an earlier error text.
    (at(att.FLASHING, error="x"), Status("idle", "2.0.0"), at(att.SUCCEEDED, updated=NOW, progress=100)),
    (at(att.DOWNLOADING), Status("rebooting", "2.0.0"), at(att.SUCCEEDED, updated=NOW, progress=100)),
    # A failure tied to this announcement fails it, with the device's words or a default.
    (at(att.DOWNLOADING), Status("failed", "1.0.0", None, "id1", "MD5 check failed"),
     at(att.FAILED, updated=NOW, error="MD5 check failed")),
    (at(att.DOWNLOADING), Status("failed", "1.0.0", None, "id1"),
     at(att.FAILED, updated=NOW, error="device reported failure")),
    # Back from flashing on another version: the image did not take.
    (at(att.FLASHING), Status("idle", "1.0.0"),
     at(att.FAILED, updated=NOW, error="device restarted on 1.0.0, not 2.0.0")),
    # Things that say nothing about this attempt leave it exactly as it was.
    (at(att.PENDING), Status("failed", "1.0.0"), at(att.PENDING)),  # a failure tied to nothing
    (at(att.PENDING), Status("downloading", "1.0.0", 5, "old"), at(att.PENDING)),  # another announcement
    (at(att.FLASHING), Status("idle"), at(att.FLASHING)),  # idle without a version
    (at(att.PENDING), Status("idle", "1.0.0"), at(att.PENDING)),  # not started yet
    (at(att.FAILED, error="e"), Status("idle", "2.0.0"), at(att.FAILED, error="e")),  # final stays final
    (at(att.CANCELLED), Status("rebooting", "2.0.0"), at(att.CANCELLED)),
])
def test_each_status_moves_the_attempt_exactly_so(before: att.Attempt, status: Status,
                                                  after: att.Attempt) -> None:
    assert att.on_status(before, status, NOW) == after


def test_a_late_confirmation_of_a_timed_out_attempt_is_recorded_as_late_success() -> None:
    timed_out = at(att.TIMED_OUT, updated=400.0, error="no confirmation within 300 s")
    for state in ("idle", "rebooting"):
        got = att.on_status(timed_out, Status(state, "2.0.0"), 500.0)
        assert got == at(att.SUCCEEDED, updated=500.0, progress=100, late=True)
    # Anything else about a timed-out attempt changes nothing.
    assert att.on_status(timed_out, Status("idle", "1.0.0"), 500.0) == timed_out
    assert att.on_status(timed_out, Status("failed", "1.0.0", None, "id1"), 500.0) == timed_out


def test_download_and_report_needs_the_whole_image_served() -> None:
    strict = at(att.FLASHING, needs_download=True)
    # Never served: a device claiming the target is not believed.
    assert att.on_status(strict, Status("idle", "2.0.0"), NOW) == replace(
        strict, state=att.FAILED, updated=NOW,
        error="no download: the device reports 2.0.0, but this server never served it the image")
    # Still being served: wait in 'flashing' at 100 % for the last byte.
    serving = replace(strict, state=att.DOWNLOADING, download=att.SERVING)
    waiting = att.on_status(serving, Status("idle", "2.0.0"), NOW)
    assert waiting == replace(serving, state=att.FLASHING, updated=NOW, progress=100)
    # ... and the last byte then confirms it.
    assert att.on_served(waiting, 160.0, "2.0.0") == replace(
        waiting, state=att.SUCCEEDED, download=att.SERVED, updated=160.0, progress=100)
    # Served in full first: the report confirms at once.
    served = replace(strict, download=att.SERVED)
    assert att.on_status(served, Status("idle", "2.0.0"), NOW) == replace(
        served, state=att.SUCCEEDED, updated=NOW, progress=100)
    # A late report under the same rule is judged the same way: the outcome (failed) came late.
    late = att.on_status(replace(strict, state=att.TIMED_OUT), Status("idle", "2.0.0"), NOW)
    assert (late.state, late.late) == (att.FAILED, True)


def test_served_confirms_only_a_flashing_device_already_on_the_target() -> None:
    flashing = at(att.FLASHING, needs_download=True, download=att.SERVING)
    assert att.on_served(flashing, NOW, "1.0.0") == replace(flashing, download=att.SERVED, updated=NOW)
    downloading = at(att.DOWNLOADING, needs_download=True, download=att.SERVING)
    assert att.on_served(downloading, NOW, "2.0.0") == replace(downloading, download=att.SERVED, updated=NOW)
    done = at(att.SUCCEEDED)
    assert att.on_served(done, NOW, "2.0.0") == done


def test_in_progress_starts_at_the_first_byte() -> None:
    assert att.on_download_started(at(att.PENDING), NOW) == at(
        att.DOWNLOADING, updated=NOW, download=att.SERVING, progress=0)
    # Already further along: keep the device's state and progress, and what we served so far.
    flashing = at(att.FLASHING, progress=70, download=att.SERVED)
    assert att.on_download_started(flashing, NOW) == replace(flashing, updated=NOW)
    downloading = at(att.DOWNLOADING, progress=30)
    assert att.on_download_started(downloading, NOW) == replace(
        downloading, updated=NOW, download=att.SERVING)
    assert att.on_download_started(at(att.CANCELLED), NOW) == at(att.CANCELLED)


def test_refusal_deadline_and_cancel_are_exact() -> None:
    assert att.on_refused(at(att.DOWNLOADING), "no room", NOW) == at(att.FAILED, updated=NOW, error="no room")
    assert att.on_refused(at(att.SUCCEEDED), "no room", NOW) == at(att.SUCCEEDED)
    assert att.on_clock(at(att.FLASHING), 399.9) == at(att.FLASHING)
    assert att.on_clock(at(att.FLASHING), 400.0) == at(att.TIMED_OUT, updated=400.0,
                                                       error="no confirmation within 300 s")
    assert att.on_clock(at(att.FAILED), 500.0) == at(att.FAILED)
    assert att.cancel(at(att.PENDING), NOW) == at(att.CANCELLED, updated=NOW, error="cancelled")
    assert att.cancel(at(att.DOWNLOADING), NOW, "replaced by 3.0.0") == at(
        att.CANCELLED, updated=NOW, error="replaced by 3.0.0")
    assert att.cancel(at(att.TIMED_OUT), NOW) == at(att.TIMED_OUT)
    assert [s for s in (*att.OPEN, *att.FINAL) if at(s).open] == list(att.OPEN)


# -- retry: when the server announces a target again -------------------------------------------------

POLICY = retry.RetryPolicy(retries=3, backoff=60.0, backoff_max=200.0)
TARGET = ("2.0.0", "f" * 64)


def ended(state: str, updated: float, error: str | None = None, version: str = "2.0.0",
          sha256: str | None = "f" * 64) -> att.Attempt:
    return replace(BASE, state=state, updated=updated, error=error, version=version, sha256=sha256)


def test_first_announcement_and_new_targets_go_out_now() -> None:
    assert retry.decide(TARGET, "1.0.0", [], POLICY, 1000.0) == retry.Decision(1000.0)
    other_version = ended(att.FAILED, 990.0, "MD5 check failed", version="1.5.0")
    assert retry.decide(TARGET, "1.0.0", [other_version], POLICY, 1000.0) == retry.Decision(1000.0)
    rebuilt = ended(att.FAILED, 990.0, "MD5 check failed", sha256="0" * 64)  # same version, new bytes
    assert retry.decide(TARGET, "1.0.0", [rebuilt], POLICY, 1000.0) == retry.Decision(1000.0)
    # An attempt that recorded no hash (older state) counts as the same target.
    unknown = ended(att.FAILED, 990.0, "MD5 check failed", sha256=None)
    assert retry.decide(TARGET, "1.0.0", [unknown], POLICY, 1000.0).never
    assert retry.decide(("2.0.0", None), "1.0.0", [rebuilt], POLICY, 1000.0).never


def test_no_announcement_while_it_runs_the_target_is_under_way_cancelled_or_failed_on_the_device() -> None:
    assert retry.decide(TARGET, "2.0.0", [], POLICY, 0.0) == retry.Decision(None, "runs it")
    assert retry.decide(TARGET, "1.0.0", [at(att.DOWNLOADING, sha256="f" * 64)], POLICY, 0.0) == \
        retry.Decision(None, "under way")
    assert retry.decide(TARGET, "1.0.0", [ended(att.CANCELLED, 0.0)], POLICY, 0.0) == \
        retry.Decision(None, "cancelled")
    assert retry.decide(TARGET, "1.0.0", [ended(att.FAILED, 0.0, "MD5 check failed")], POLICY, 9e9) == \
        retry.Decision(None, "failed on the device (MD5 check failed); `tinyota install` tries again")
    assert retry.decide(TARGET, "1.0.0", [ended(att.FAILED, 0.0, None)], POLICY, 9e9).never


def test_back_off_doubles_per_try_up_to_the_cap_then_gives_up() -> None:
    history: list[att.Attempt] = []
    wanted = [60.0, 120.0, 200.0]  # 60, 120, then 240 capped at 200
    for tries, delay in enumerate(wanted, start=1):
        history.insert(0, ended(att.TIMED_OUT, 1000.0 * tries, "no confirmation within 300 s"))
        assert retry.decide(TARGET, "1.0.0", history, POLICY, 1000.0 * tries) == \
            retry.Decision(1000.0 * tries + delay), tries
        # Asked again long after the back-off: now, not in the past.
        assert retry.decide(TARGET, "1.0.0", history, POLICY, 1e6) == retry.Decision(1e6)
    history.insert(0, ended(att.TIMED_OUT, 4000.0))
    assert retry.decide(TARGET, "1.0.0", history, POLICY, 9e9) == retry.Decision(None, "gave up after 4 tries")
    # Tries are counted for this target only: an older target's attempts do not use them up.
    mixed = [ended(att.TIMED_OUT, 10.0), ended(att.TIMED_OUT, 5.0, version="1.5.0"), *history]
    assert retry.decide(TARGET, "1.0.0", mixed, POLICY, 10.0) == retry.Decision(70.0)


def test_a_success_the_device_lost_is_retried_after_the_back_off() -> None:
    assert retry.decide(TARGET, "1.0.0", [ended(att.SUCCEEDED, 100.0)], POLICY, 100.0) == \
        retry.Decision(160.0)


@pytest.mark.parametrize(("error", "transient"), [
    ("Wrong HTTP Code", True), ("HTTP error 429", True), ("got 503 from server", True), ("503", True),
    ("File Not Found (404)", True),  # a release replaced between announcement and download
    ("connection refused", True), ("Read Timeout", True), ("download timed out", True),
    ("server unavailable", True), ("release not yet available", True), ("too many devices", True),
    ("MD5 check failed", False), ("Not Enough Space", False), ("bad signature", False),
])
def test_which_failures_say_not_now_rather_than_not_this_image(error: str, transient: bool) -> None:
    assert retry.transient(ended(att.FAILED, 0.0, error)) is transient


def test_timed_out_is_transient_and_other_outcomes_are_not() -> None:
    assert retry.transient(ended(att.TIMED_OUT, 0.0, None))
    for state in (att.SUCCEEDED, att.CANCELLED, att.PENDING):
        assert not retry.transient(ended(state, 0.0, "connection refused"))
    assert not retry.transient(ended(att.FAILED, 0.0, None))
    assert not retry.transient(ended(att.FAILED, 0.0, ""))
    assert retry.RetryPolicy() == retry.RetryPolicy(retries=3, backoff=60.0, backoff_max=3600.0)


# -- semantic versions ---------------------------------------------------------------------------------

def test_release_outranks_its_pre_releases_and_alphanumeric_outranks_numeric() -> None:
    v = semver.parse
    assert v("1.0.0-rc.1") < v("1.0.0") and not v("1.0.0") < v("1.0.0-rc.1")
    assert v("1.0.0-1") < v("1.0.0-a") and v("1.0.0-999") < v("1.0.0-a")
    assert v("1.0.0-a.1") < v("1.0.0-a.b")
    assert v("1.0.0") < v("1.0.1-rc.1")
    assert max([v("1.0.0"), v("1.0.0-rc.9"), v("0.9.9")]) == v("1.0.0")
    # Comparing with something that is not a version is not an answer.
    assert (v("1.0.0") == "1.0.0") is False
    with pytest.raises(TypeError):
        _ = v("1.0.0") < "1.0.0"  # type: ignore[operator]


def test_equal_versions_hash_alike_and_build_metadata_is_kept() -> None:
    a, b, c = semver.parse("1.2.3+a"), semver.parse("1.2.3+b"), semver.parse("1.2.4")
    assert len({a, b, c}) == 2 and hash(a) == hash(b)
    assert {semver.parse("1.2.3-rc.1"): "x"}.get(semver.parse("1.2.3-rc.1+z")) == "x"
    assert (a.build, b.build, semver.parse("1.2.3").build) == ("a", "b", "")
    assert a.pre == () and semver.parse("1.0.0-rc.1").pre == ("rc", 1)


def test_the_length_limit_is_inclusive_and_says_so() -> None:
    longest = "1.0.0-" + "a" * (semver.MAX_LENGTH - 6)
    assert len(longest) == semver.MAX_LENGTH and str(semver.parse(longest)) == longest
    with pytest.raises(semver.VersionError) as err:
        semver.parse(longest + "a")
    assert str(err.value).startswith(f"version '{longest}a' is too long")
    assert err.value.hint == f"keep it under {semver.MAX_LENGTH} characters"


def test_an_invalid_version_names_itself_and_hints_at_the_shape() -> None:
    with pytest.raises(semver.VersionError) as err:
        semver.parse("1.0")
    assert str(err.value).startswith("'1.0' is not a semantic version")
    assert err.value.hint == "use MAJOR.MINOR.PATCH, e.g. 1.4.0 or 1.4.0-rc.1"
    for text in ("V1.2.3", "v1.2.3"):
        with pytest.raises(semver.VersionError) as err:
            semver.parse(text)
        assert err.value.hint == "drop the leading 'v': 1.2.3"
    for text in ("x1.2.3", "X1.2.3", "=1.2.3"):  # dropping the first character would fix it, but it is no 'v'
        with pytest.raises(semver.VersionError) as err:
            semver.parse(text)
        assert err.value.hint == "use MAJOR.MINOR.PATCH, e.g. 1.4.0 or 1.4.0-rc.1"
    with pytest.raises(semver.VersionError) as err:
        semver.parse("v1.2")
    assert err.value.hint == "use MAJOR.MINOR.PATCH, e.g. 1.4.0 or 1.4.0-rc.1"
    assert semver.is_valid("1.2.3") and not semver.is_valid("1.2") and not semver.is_valid("v1.2.3")


# -- HTTP Basic --------------------------------------------------------------------------------------

def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(("header", "want"), [
    ("Basic " + b64("dev:pw"), ("dev", "pw")),
    ("basic " + b64("dev:pw"), ("dev", "pw")),  # the scheme is case-insensitive (RFC 7617)
    ("  Basic   " + b64("dev:pw") + "  ", ("dev", "pw")),
    ("Basic " + b64("dev:"), ("dev", "")),
    ("Basic " + b64("dëv:pw"), ("dëv", "pw")),
    ("Basic " + b64("devpw"), None),  # no colon
    ("Basic " + b64(":pw"), None),  # no user
    ("Basic " + b64("dev:pw") + " extra", None),
    ("Bearer " + b64("dev:pw"), None),
    ("Basic", None), ("Basic ", None), ("", None), (None, None),
    ("Basic " + b64("dev:pw")[:-2] + "!!", None),  # not base64
    ("Basic ZGV2*OnB3", None),  # base64 of "dev:pw" with a stray '*': refused, not decoded leniently
    ("Basic " + base64.b64encode(b"dev:\xff").decode(), None),  # not UTF-8
])
def test_basic_credentials(header: str | None, want: tuple[str, str] | None) -> None:
    assert httpauth.parse_basic(header) == want


def test_basic_header_size_bound_is_inclusive() -> None:
    head = "Basic "
    user = "u" * 600
    token = b64(f"{user}:")
    pad = httpauth.MAX_HEADER - len(head) - len(token)
    assert httpauth.parse_basic(head + " " * pad + token) == (user, "")
    assert httpauth.parse_basic(head + " " * (pad + 1) + token) is None


def test_basic_header_is_what_the_rfc_writes() -> None:
    assert httpauth.basic_header("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


# -- ESP update headers --------------------------------------------------------------------------------

def esp(headers: dict[str, str]) -> esp_headers.EspRequest:
    lower = {k.lower(): v for k, v in headers.items()}
    return esp_headers.parse(lambda k: lower.get(k.lower()))


def test_every_esp32_header_is_read() -> None:
    got = esp({"User-Agent": "ESP32-http-Update", "x-ESP32-version": " 1.2.0 ", "x-ESP32-free-space": "4096",
               "x-ESP32-sketch-size": "1000", "x-ESP32-chip-size": "4194304", "x-ESP32-STA-MAC": "AA:BB",
               "x-ESP32-sketch-md5": "0" * 32, "x-ESP32-mode": "sketch"})
    assert got == esp_headers.EspRequest("esp32", "1.2.0", 4096, 1000, 4194304, "AA:BB", "0" * 32, "sketch")


def test_a_chip_is_recognised_by_its_headers_or_its_user_agent() -> None:
    assert esp({"x-ESP8266-mode": "spiffs"}) == esp_headers.EspRequest("esp8266", mode="spiffs")
    assert esp({"User-Agent": "ESP8266-http-Update"}) == esp_headers.EspRequest("esp8266")
    assert esp({"User-Agent": "ESP8266"}) == esp_headers.EspRequest()  # not the core's agent
    assert esp({"x-ESP32-version": "  "}) == esp_headers.EspRequest("esp32")  # blank: no version


@pytest.mark.parametrize("name", ["free-space", "sketch-size", "chip-size"])
def test_byte_counts_must_be_whole_numbers_and_the_error_names_the_header(name: str) -> None:
    header = f"x-ESP8266-{name}"
    assert getattr(esp({header: "123456789012"}), name.replace("-", "_")) == 123456789012
    for bad in ("1234567890123", "-1", "1.5", "\u00b2", "12 kB"):
        with pytest.raises(esp_headers.BadEspHeader) as err:
            esp({header: bad})
        assert str(err.value) == f"{header} must be a whole number of bytes, got {bad!r}"


def test_header_values_are_bounded() -> None:
    ok = "x" * 128
    assert esp({"x-ESP32-STA-MAC": ok}).sta_mac == ok
    with pytest.raises(esp_headers.BadEspHeader) as err:
        esp({"x-ESP32-STA-MAC": ok + "x"})
    assert str(err.value) == "x-ESP32-STA-MAC is longer than 128 characters"


# -- MQTT payloads -------------------------------------------------------------------------------------

ANN = protocol.Announcement("a1", "1.4.0", "http://h/fw/k/1.4.0.bin", 10, "0" * 32, "f" * 64,
                            image="k", device="dev-1")


def test_announcement_payload_has_exactly_the_documented_keys() -> None:
    assert json.loads(ANN.payload()) == {"id": "a1", "version": "1.4.0", "url": "http://h/fw/k/1.4.0.bin",
                                         "size": 10, "md5": "0" * 32, "sha256": "f" * 64, "image": "k"}
    assert "image" not in json.loads(replace(ANN, image="").payload())  # the device id is never sent
    signed = replace(ANN, sig="c2ln")
    assert signed.payload() == ANN.payload()[:-1] + b',"sig":"c2ln"}'


def test_the_signed_manifest_is_one_field_a_line() -> None:
    assert ANN.manifest() == ("tinyota-announcement-v2\ndev-1\nk\na1\n1.4.0\nhttp://h/fw/k/1.4.0.bin\n10\n"
                              + "0" * 32 + "\n" + "f" * 64).encode()
    assert replace(ANN, version="1.4.0-é").manifest().decode("utf-8").split("\n")[4] == "1.4.0-é"


def test_firmware_url_joins_without_doubling_slashes() -> None:
    assert protocol.firmware_url("http://ota/BOX/", "k", "1") == "http://ota/BOX/fw/k/1.bin"
    assert protocol.firmware_url("https://ota.lan:8443/", "kitchen", "1.0.0") == \
        "https://ota.lan:8443/fw/kitchen/1.0.0.bin"
    assert protocol.firmware_url("/base//", "k", "1") == "/base/fw/k/1.bin"


def test_topics() -> None:
    t = protocol.Topics("p")
    assert [t.update("d"), t.status("d"), t.availability("d"), t.state("d"), t.install("d"),
            t.server_availability, t.server_sync] == [
        "p/d/update", "p/d/status", "p/d/availability", "p/d/state", "p/d/install",
        "p/server/availability", "p/server/sync"]
    assert t.subscriptions() == ["p/+/status", "p/+/availability", "p/+/install", "p/server/sync"]
    assert t.guarded() == ["p/+/update", "p/+/state", "p/server/availability"]
    assert protocol.Topics().update("d") == "tinyota/d/update"
    assert t.split("p/" + "d" * 64 + "/status") == ("d" * 64, "status")
    assert t.split("p/" + "d" * 65 + "/status") is None
    assert t.split("pp/d/status") is None


def status(**body: object) -> bytes:
    return json.dumps(body).encode()


def refused(raw: bytes) -> str:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_status(raw)
    return str(err.value)


def test_status_fields_and_their_limits_are_inclusive() -> None:
    full = protocol.parse_status(status(state="failed", version="v" * 64, progress=100, id="i" * 64,
                                        error="e" * 256, platform="p" * 16, free_space=2**40))
    assert full == Status("failed", "v" * 64, 100, "i" * 64, "e" * 256, "p" * 16, 2**40)
    assert protocol.parse_status(status(state="idle", progress=0, free_space=0)) == Status("idle", progress=0,
                                                                                         free_space=0)
    assert protocol.parse_status(status(state="idle", progress=42.0)).progress == 42
    for key, value, limit in (("version", "v" * 65, 64), ("id", "i" * 65, 64), ("error", "e" * 257, 256),
                              ("platform", "p" * 17, 16)):
        assert refused(status(state="idle", **{key: value})) == f"'{key}' is longer than {limit} characters"
    assert refused(status(state="x" * 17)) == "'state' is longer than 16 characters"
    assert refused(status(state="idle", progress=101)) == "'progress' must be between 0 and 100, got 101"
    assert refused(status(state="idle", progress=-1)) == "'progress' must be between 0 and 100, got -1"
    assert refused(status(state="idle", free_space=2**40 + 1)) == \
        f"'free_space' must be between 0 and {2**40}, got {2**40 + 1}"
    assert refused(status(state="idle", free_space=-1)) == f"'free_space' must be between 0 and {2**40}, got -1"


def test_status_errors_say_what_is_wrong() -> None:
    assert refused(status(state="sleeping")) == \
        "'state' must be one of idle, downloading, flashing, rebooting, failed, got 'sleeping'"
    assert refused(status()) == \
        "'state' must be one of idle, downloading, flashing, rebooting, failed, got None"
    assert refused(status(state=1)) == "'state' must be a string, got int"
    assert refused(status(state="idle", progress="5")) == "'progress' must be a number, got str"
    assert refused(status(state="idle", progress=True)) == "'progress' must be a number, got bool"
    assert refused(b'{"state":"idle","progress":NaN}') == "'progress' must be a number, got float"
    assert refused(b"[1]") == "status payload must be a JSON object, got list"
    assert refused(b"\xff") .startswith("status payload is not JSON: 'utf-8' codec can't decode")
    assert refused(b"{") == "status payload is not JSON: Expecting property name enclosed in double quotes: " \
                            "line 1 column 2 (char 1)"
    exactly = status(state="idle", error="e" * 200)
    pad = protocol.MAX_STATUS_BYTES - len(exactly)
    at_limit = exactly[:-1] + b" " * pad + b"}"
    assert len(at_limit) == protocol.MAX_STATUS_BYTES and protocol.parse_status(at_limit).state == "idle"
    assert refused(at_limit + b" ") == f"status payload is 1025 bytes, more than {protocol.MAX_STATUS_BYTES}"


@pytest.mark.parametrize(("raw", "want"), [(b"online", True), (b" ONLINE\n", True), (b"offline", False),
                                           (b"Offline", False)])
def test_availability(raw: bytes, want: bool) -> None:
    assert protocol.parse_availability(raw) is want


def test_availability_refuses_anything_else_and_quotes_it() -> None:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_availability(b"1")
    assert str(err.value) == "availability must be 'online' or 'offline', got b'1'"


@pytest.mark.parametrize(("raw", "want"), [(b"", None), (b"  install ", None), (b'{"version": "1.4.0"}', "1.4.0"),
                                           (b'{"version": "1.4.0", "x": 1}', "1.4.0")])
def test_install_command_forms(raw: bytes, want: str | None) -> None:
    assert protocol.parse_install(raw) == want


@pytest.mark.parametrize(("raw", "message"), [
    (b"now", "install command must be 'install' or JSON, got b'now'"),
    (b"\xff", "install command must be 'install' or JSON, got b'\\xff'"),
    (b'["1.4.0"]', 'install command JSON must look like {"version": "1.4.0"}'),
    (b'{"version": 1}', 'install command JSON must look like {"version": "1.4.0"}'),
    (b'{"v": "1.4.0"}', 'install command JSON must look like {"version": "1.4.0"}'),
    (b'{"version": "' + b"1" * 300 + b'"}', "install command is too long"),
])
def test_install_command_refusals(raw: bytes, message: str) -> None:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_install(raw)
    assert str(err.value) == message


def test_install_command_length_bound_is_inclusive() -> None:
    version = "1" * (protocol.MAX_TEXT - 15)
    body = b'{"version": "' + version.encode() + b'"}'
    assert len(body) == protocol.MAX_TEXT
    assert protocol.parse_install(b" " + body + b"\n") == version  # surrounding blanks do not count
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_install(b"{ " + body[1:])


# -- policy --------------------------------------------------------------------------------------------

def test_an_automatic_group_follows_the_highest_release() -> None:
    config = parse_config("images: {k: {platform: esp8266}}\ngroups: {auto: {image: k, auto_update: true}}\n"
                          "devices: {a: {group: auto}}\n")

    class Release:
        def __init__(self, version: str) -> None:
            self.version = version

    listing = [Release("1.0.0"), Release("1.5.0"), Release("2.0.0")]  # lowest first, as the store lists them
    assert policy.target_version(config, "a", listing) == "2.0.0"
    assert policy.target_version(config, "a", []) is None


def test_what_home_assistant_is_offered() -> None:
    config = parse_config("images: {k: {platform: esp8266}}\n"
                          "groups: {manual: {image: k}, pinned: {image: k, version: 1.5.0}}\n"
                          "devices: {a: {group: manual}, p: {group: pinned}, lone: {}}\n")

    class Release:
        def __init__(self, version: str) -> None:
            self.version = version

    three = [Release("1.0.0"), Release("1.5.0"), Release("2.0.0")]
    # The newest of an on-command group: the last of the listing, not the second.
    assert policy.offered_version(config, "a", three) == "2.0.0"
    assert policy.offered_version(config, "a", []) is None
    # A pin shows only while its release exists.
    assert policy.offered_version(config, "p", three) == "1.5.0"
    assert policy.offered_version(config, "p", [Release("1.0.0"), Release("2.0.0")]) is None
    # A commanded version until the device runs it; then the group's rule again.
    assert policy.offered_version(config, "a", three, commanded="1.0.0", installed="1.5.0") == "1.0.0"
    assert policy.offered_version(config, "a", three, commanded="1.0.0", installed="1.0.0") == "2.0.0"
    assert policy.offered_version(config, "a", three, commanded="9.9.9") == "2.0.0"
    assert policy.offered_version(config, "lone", three) is None


def test_a_device_is_served_only_its_target_or_what_it_runs() -> None:
    config = parse_config("images: {k: {platform: esp8266}, s: {platform: esp32}}\n"
                          "groups: {g: {image: k}}\ndevices: {a: {group: g}, lone: {}}\n")

    def refusal(device: str, image: str, version: str, target: str | None, installed: str | None) -> str | None:
        return policy.refusal(config, device, image, version, target=target, installed=installed)

    assert refusal("a", "k", "2.0.0", "2.0.0", "1.0.0") is None
    assert refusal("a", "k", "1.0.0", "2.0.0", "1.0.0") is None  # what it already runs
    assert refusal("a", "k", "1.5.0", "2.0.0", "1.0.0") == \
        "1.5.0 was not announced to this device (its target is 2.0.0)"
    assert refusal("a", "k", "1.5.0", None, "1.0.0") == "1.5.0 was not announced to this device (nothing is)"
    assert refusal("a", "k", "1.5.0", None, None) == "1.5.0 was not announced to this device (nothing is)"
    assert refusal("a", "s", "2.0.0", "2.0.0", None) == "image s is not this device's image (k)"
    assert refusal("lone", "k", "2.0.0", "2.0.0", None) == \
        "this device is in no group, so no image is announced to it"


def test_a_late_report_that_cannot_confirm_leaves_a_timed_out_attempt_closed() -> None:
    timed_out = replace(BASE, state=att.TIMED_OUT, needs_download=True, download=att.SERVING)
    after = att.on_status(timed_out, Status("idle", "2.0.0"), 500.0)
    assert after == timed_out  # waiting for the last byte would reopen it: it stays as it was
    served = replace(timed_out, download=att.SERVED)
    late = att.on_status(served, Status("idle", "2.0.0"), 500.0)
    assert late.state == att.SUCCEEDED and late.late


# -- Home Assistant: the discovery, state and availability messages (core/hass.py) -------------------
# docs/protocol.md "Home Assistant discovery" and "Entity availability"; what HA's own schema says
# about the same payloads: test_hass_schema.py.

HA_TOPICS = protocol.Topics("home")


def test_discovery_is_the_documented_entity_on_the_devices_own_topics() -> None:
    entity = hass.EntityInfo("kitchen-1", "Kitchen", "kitchen", "esp32s3", "1.0.0",
                             configuration_url="http://h/devices/kitchen-1", entity_picture="http://h/icon.svg")
    topic, payload, retain = hass.discovery("ha", HA_TOPICS, entity)
    assert (topic, retain) == ("ha/update/tinyota_kitchen-1/config", True)  # retained: HA reads it on its start
    assert json.loads(payload) == {
        "name": "Firmware",
        "unique_id": "tinyota_kitchen-1",
        "device_class": "firmware",
        "entity_category": "config",
        "state_topic": "home/kitchen-1/state",
        "command_topic": "home/kitchen-1/install",
        "payload_install": "install",
        "availability": [{"topic": "home/kitchen-1/entity"}, {"topic": "home/server/availability"}],
        "availability_mode": "all",
        "device": {"identifiers": ["tinyota_kitchen-1"], "name": "Kitchen", "manufacturer": "TinyOTA-MQTT",
                   "model": "kitchen ESP32S3", "sw_version": "1.0.0", "configuration_url": "http://h/devices/kitchen-1"},
        "origin": {"name": "TinyOTA-MQTT", "sw_version": __version__},
        # At least once for the Install press; not 2, which brokers capped at QoS 1 refuse.
        "qos": 1,
        "entity_picture": "http://h/icon.svg",
    }


@pytest.mark.parametrize(("image", "platform", "model"), [
    ("kitchen", "esp8266", "kitchen ESP8266"),  # docs/homeassistant.md's example
    ("kitchen", None, "kitchen"),  # a platform not known yet: the image alone
    (None, "esp32", "ESP32"),  # reported by a device in no group
    (None, None, "unassigned"),
])
def test_the_device_model_is_its_image_and_platform(image: str | None, platform: str | None, model: str) -> None:
    entity = hass.EntityInfo("d", "D", image, platform, None)
    device = json.loads(hass.discovery("ha", HA_TOPICS, entity)[1])["device"]
    # Nothing known is left out rather than sent empty: HA would show an empty version or a dead link.
    assert device == {"identifiers": ["tinyota_d"], "name": "D", "manufacturer": "TinyOTA-MQTT", "model": model}


def test_state_is_retained_on_the_devices_state_topic() -> None:
    topic, payload, retain = hass.state(HA_TOPICS, "kitchen-1", hass.EntityState("1.0.0", "1.1.0", False, 30, "K"))
    assert (topic, retain) == ("home/kitchen-1/state", True)
    assert json.loads(payload) == {"in_progress": False, "update_percentage": None, "title": "K",
                                   "release_summary": "", "installed_version": "1.0.0", "latest_version": "1.1.0"}
    linked = hass.EntityState("1.0.0", "1.1.0", True, 30, "K", notes="Faster boot", release_url="http://h/releases")
    assert json.loads(hass.state(HA_TOPICS, "kitchen-1", linked)[1]) == {
        "in_progress": True, "update_percentage": 30, "title": "K", "release_summary": "Faster boot",
        "installed_version": "1.0.0", "latest_version": "1.1.0", "release_url": "http://h/releases"}


@pytest.mark.parametrize(("notes", "limit", "want"), [
    ("aaa bbb ccc", 8, "aaa bbb…"),  # a word that ends right at the cut is kept whole
    ("aaa bbb ccc", 6, "aaa…"),  # a word the cut would split is left out whole
    ("aa bb cc dd", 10, "aa bb cc…"),  # the last word boundary before the cut, not the first
    ("aa bb cccc", 9, "aa bb…"),
    ("aa bb c dd", 9, "aa bb c…"),  # a one-letter word just before the cut still fits beside the "…"
    ("abcdefghij", 5, "abcd…"),  # one endless word: cut inside it
    ("aa  bbbbbb", 7, "aa…"),  # the blanks before the cut word go too
    ("aa\n\nbbbbbb", 6, "aa…"),  # as do line breaks (the cut is at a space, or inside the word)
])
def test_release_notes_are_cut_at_the_last_word_that_fits_with_the_ellipsis(notes: str, limit: int,
                                                                             want: str) -> None:
    assert hass.summary(notes, limit) == want and len(want) <= limit


def test_release_notes_are_cut_only_past_home_assistants_255_characters() -> None:
    assert hass.summary("x" * 255) == "x" * 255  # exactly the limit: all of it, no ellipsis
    assert hass.summary("x" * 256) == "x" * 254 + "…"
    assert hass.summary("  padded  ") == "padded"


def test_availability_is_retained_online_or_offline_on_the_entity_topic() -> None:
    # Retained, so an HA that subscribes later (or restarts) still learns it.
    assert hass.availability(HA_TOPICS, "kitchen-1", True) == ("home/kitchen-1/entity", b"online", True)
    assert hass.availability(HA_TOPICS, "kitchen-1", False) == ("home/kitchen-1/entity", b"offline", True)


def test_rollouts_are_on_their_documented_topics_and_one_sensor_per_image() -> None:
    # docs/protocol.md "Topics": the summary per rollout and per image, and the image's sensor.
    assert hass_rollout.rollout_topic(HA_TOPICS, "7") == "home/server/rollout/7"
    assert hass_rollout.image_topic(HA_TOPICS, "kitchen") == "home/server/rollout/image/kitchen"
    topic, payload, retain = hass_rollout.discovery("ha", HA_TOPICS, "kitchen")
    assert (topic, retain) == ("ha/sensor/tinyota_rollout_kitchen/config", True)
    assert json.loads(payload) == {
        "name": "kitchen rollout",
        "unique_id": "tinyota_rollout_kitchen",
        "state_topic": "home/server/rollout/image/kitchen",
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": "home/server/rollout/image/kitchen",
        "icon": "mdi:progress-upload",
        "availability": [{"topic": "home/server/availability"}],
        "device": {"identifiers": ["tinyota_server"], "name": "TinyOTA server", "manufacturer": "TinyOTA-MQTT",
                   "model": "OTA server", "sw_version": __version__},
        "origin": {"name": "TinyOTA-MQTT", "sw_version": __version__},
        "qos": 1,
    }
    assert payload == hass.dump(json.loads(payload))  # the same bytes each time: compact, keys sorted


# -- login throttling, on a fake clock (core/throttle.py) ----------------------------------------------
# The same rules against a real server, and behind nginx: tests/test_throttle.py.

class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


A, B = "10.0.0.5", "10.0.0.6"


def test_failures_count_per_address_and_account_and_are_forgiven_after_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after((A, "kitchen-1")) == 0
        throttle.failed((A, "kitchen-1"))
    assert throttle.retry_after((A, "kitchen-1")) == 60
    assert throttle.retry_after((A, "kitchen-2")) == 0  # the same address, another account
    assert throttle.retry_after((B, "kitchen-1")) == 0  # the same account, another address
    clock.now = 30
    assert throttle.retry_after((A, "kitchen-1")) == 30
    clock.now = 61
    assert throttle.retry_after((A, "kitchen-1")) == 0


def test_a_costly_check_counts_as_a_failure_before_it_runs() -> None:
    throttle = LoginThrottle(limit=3, window=60, per_address=10, clock=Clock())
    held = [throttle.reserve((A, "kitchen-1")) for _ in range(3)]
    assert all(held)
    assert throttle.reserve((A, "kitchen-1")) is None  # three undecided checks already fill the limit
    assert throttle.retry_after((A, "kitchen-1")) > 0
    held[0].succeeded()  # type: ignore[union-attr]
    again = throttle.reserve((A, "kitchen-1"))  # a success gives its slot back...
    assert again is not None
    held[1].failed()  # type: ignore[union-attr]
    assert throttle.reserve((A, "kitchen-1")) is None  # ...a failure keeps it
    held[1].failed()  # type: ignore[union-attr]  # a second call changes nothing
    assert throttle.retry_after((A, "kitchen-1")) > 0
    again.succeeded()
    held[2].succeeded()  # type: ignore[union-attr]
    assert throttle.retry_after((A, "kitchen-1")) == 0  # all decided: the one failure counts once


def test_costly_checks_in_flight_are_bounded_per_address() -> None:
    throttle = LoginThrottle(limit=10, per_address=2, clock=Clock())
    first, second = throttle.reserve((A, "kitchen-1")), throttle.reserve((A, "admin"))
    assert first and second
    assert throttle.reserve((A, "kitchen-2")) is None and throttle.busy(A)
    assert throttle.reserve((B, "kitchen-2")) is not None  # other addresses are not affected
    first.succeeded()
    assert throttle.reserve((A, "kitchen-2")) is not None


def test_the_documented_defaults_ten_failures_a_minute_and_four_checks_per_address() -> None:
    # docs/config.md: "After 10 failures within 60 s ..."; "At most 4 costly checks run or wait per address".
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(10):
        assert throttle.retry_after((A, "kitchen-1")) == 0
        throttle.failed((A, "kitchen-1"))
    assert throttle.retry_after((A, "kitchen-1")) == 60
    clock.now = 60.5
    assert throttle.retry_after((A, "kitchen-1")) == 0
    held = [throttle.reserve((B, f"kitchen-{i}")) for i in range(4)]
    assert all(held) and throttle.busy(B)
    assert throttle.reserve((B, "admin")) is None


def test_retry_after_counts_down_and_waiting_it_out_is_enough() -> None:
    clock = Clock()
    clock.now = 1000.0  # a monotonic clock is anywhere, not at 0
    throttle = LoginThrottle(limit=1, window=60, clock=clock)
    throttle.failed((A, "kitchen-1"))
    assert throttle.retry_after((A, "kitchen-1")) == 60
    clock.now = 1030.0
    wait = throttle.retry_after((A, "kitchen-1"))
    assert wait == 30
    clock.now += 29.5
    assert throttle.retry_after((A, "kitchen-1")) == 1  # half a second left: the shortest wait it says
    clock.now = 1030.0 + wait
    assert throttle.retry_after((A, "kitchen-1")) == 0  # whoever waits what it said gets in


def test_a_burst_of_undecided_checks_asks_for_a_one_second_wait() -> None:
    # Reservations resolve within one check; the HTTP layer turns 1 s into "Retry-After: 2" (docs/config.md).
    throttle = LoginThrottle(limit=2, per_address=10, clock=Clock())
    assert throttle.reserve((A, "kitchen-1")) and throttle.reserve((A, "kitchen-1"))
    assert throttle.retry_after((A, "kitchen-1")) == 1


def test_one_check_in_flight_per_address_is_given_back_when_it_ends() -> None:
    throttle = LoginThrottle(per_address=1, clock=Clock())
    assert not throttle.busy(A)  # an address nobody has seen
    first = throttle.reserve((A, "kitchen-1"))
    assert first is not None and throttle.busy(A) and not throttle.busy(B)
    assert throttle.reserve((A, "admin")) is None
    first.succeeded()
    assert not throttle.busy(A)
    assert throttle.reserve((A, "admin")) is not None


def test_a_full_table_forgets_the_longest_quiet_guesser_not_the_one_guessing_now() -> None:
    clock = Clock()
    throttle = LoginThrottle(limit=1, window=600, clock=clock, max_tracked=2)
    for now, address in ((0, "10.0.0.1"), (1, "10.0.0.2"), (2, "10.0.0.1"), (3, "10.0.0.3")):
        clock.now = now
        throttle.failed((address, "x"))
    # .1 guessed first but also last-but-one; .2 has been quiet longest, so it is the one let go.
    assert throttle.retry_after(("10.0.0.1", "x")) > 0
    assert throttle.retry_after(("10.0.0.2", "x")) == 0
    assert throttle.retry_after(("10.0.0.3", "x")) > 0


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(limit=3, window=60, clock=Clock(), max_tracked=100)
    for i in range(1000):
        throttle.failed((f"addr-{i}", "x"))
    assert len(throttle._failures) <= 100


# -- the client address behind trusted proxies (core/forwarded.py) -----------------------------------

PROXIES = (ip_network("127.0.0.1/32"), ip_network("10.1.0.0/16"))


@pytest.mark.parametrize(("peer", "xff", "real_ip", "client"), [
    ("192.0.2.9", "203.0.113.5", None, "192.0.2.9"),  # not a proxy: its headers are ignored
    ("127.0.0.1", "203.0.113.5", None, "203.0.113.5"),
    ("127.0.0.1", "6.6.6.6, 203.0.113.5", None, "203.0.113.5"),  # the left part is the client's own
    ("127.0.0.1", "6.6.6.6, 203.0.113.5, 10.1.2.3", None, "203.0.113.5"),  # a chain of our proxies
    ("127.0.0.1", "10.1.2.3, 10.1.2.4", None, "10.1.2.3"),  # all proxies: the first one is the client
    ("127.0.0.1", "203.0.113.5:4711", None, "203.0.113.5"),
    ("127.0.0.1", "[2001:db8::1]:4711", None, "2001:db8::1"),
    ("127.0.0.1", "not-an-address", None, "127.0.0.1"),
    ("127.0.0.1", "6.6.6.6, junk, 10.1.2.3", None, "10.1.2.3"),
    ("127.0.0.1", None, "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", None, "junk", "127.0.0.1"),
    ("127.0.0.1", None, None, "127.0.0.1"),
])
def test_the_client_address_is_read_from_trusted_proxies_only(peer: str, xff: str | None, real_ip: str | None,
                                                              client: str) -> None:
    assert forwarded.client_address(peer, PROXIES, xff, real_ip) == client
    assert forwarded.client_address(peer, (), xff, real_ip) == peer  # no proxies configured


@given(st.text(max_size=200), st.text(max_size=60))
def test_client_address_never_raises(xff: str, real_ip: str) -> None:
    assert forwarded.client_address("127.0.0.1", PROXIES, xff, real_ip)
