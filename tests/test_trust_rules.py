"""What a device may trust, and what a download token lets it take, as pure rules.

core/trust.py is the Python twin of esp_client's server_url.h: the URL table below is the one
esp_client/host/tests/test_trust.cpp runs against the C++ code, so both kinds of device agree.
core/tokens.py holds the rules of the per-attempt download tokens Tasmota devices carry in the URL
path (docs/tasmota.md "Downloads"). The same rules through the server, the broker and real sockets
are in test_device_trust.py, test_esp_e2e.py and test_tasmota.py; these are the fast ones the
`core` mutation scope runs.
"""

from __future__ import annotations

import secrets

import pytest

from tinyota_mqtt.core import tokens as tk
from tinyota_mqtt.core import trust

# -- the URL a device may fetch (core/trust.py) ------------------------------------------------------


@pytest.mark.parametrize(("url", "base", "under"), [
    ("http://ota.lan:8000/fw/kitchen/1.4.0.bin", "http://ota.lan:8000", True),
    ("http://OTA.lan:8000/fw/k.bin?x=1", "http://ota.lan:8000/", True),
    ("http://ota.lan/fw/k.bin", "http://ota.lan:80", True),
    ("https://ota.lan/fw/k.bin", "https://ota.lan:443/", True),
    ("http://h/ota/fw/k.bin", "http://h/ota", True),
    ("http://[fd00::1]:8000/fw/k.bin", "http://[fd00::1]:8000", True),
    ("http://server.evil/fw/k.bin", "http://server:8000", False),
    ("http://server:8000@evil/fw/k.bin", "http://server:8000", False),
    ("http://evil/@server:8000/fw/k.bin", "http://server:8000", False),
    ("http://server:8001/fw/k.bin", "http://server:8000", False),
    ("http://server/fw/k.bin", "http://server:8000", False),
    ("https://server:8000/fw/k.bin", "http://server:8000", False),
    ("http://server:8000\\@evil/fw", "http://server:8000", False),
    ("http://h/ota-evil/k.bin", "http://h/ota", False),
    ("http://h/ota/../admin/k.bin", "http://h/ota", False),
    ("http://h/ota/%2e%2e/admin", "http://h/ota", False),
    ("http://h/ota/./k.bin", "http://h/ota", False),
    ("http://h:0/fw", "http://h:0", False),
    ("HTTP://h/fw", "http://h", False),
    ("http://h /fw", "http://h", False),
    ("http://h/fw", "http://u:p@h", False),
    ("http://h/fw", "http://h/?q", False),
])
def test_url_rules_match_the_devices(url: str, base: str, under: bool) -> None:
    assert trust.is_under_base(url, base) is under


@pytest.mark.parametrize(("url", "base", "under"), [
    # The base itself, with or without its trailing slash, and a server at the root.
    ("http://h/ota", "http://h/ota", True),
    ("http://h/ota", "http://h/ota/", True),
    ("http://h/ota/", "http://h/ota", True),
    ("http://h", "http://h/", True),
    ("http://h/", "http://h", True),
    ("http://h/x", "http://h", True),
    # The scheme's own port written out, the highest port, and what is not a port.
    ("https://h/fw", "https://h", True),
    ("https://h:443/fw", "https://h", True),
    ("http://h:443/fw", "http://h", False),
    ("http://h:65535/fw", "http://h:65535", True),
    ("http://h:65536/fw", "http://h:65536", False),
    ("http://h:008000/fw", "http://h:8000", False),  # six digits: no device reads that as 8000
    ("http://h:80a/fw", "http://h", False),
    ("http://h:/fw", "http://h", False),
    ("http://h:-1/fw", "http://h", False),
    ("http://h:1/fw", "http://h:1", True),
    # IPv6 literals: the brackets closed, nothing but a port after them, only hex digits inside.
    ("http://[FD00::1]/fw", "http://[fd00::1]", True),
    ("http://[fd00::1]/fw", "http://[fd00::1]:80", True),
    ("http://[fd00::1/fw", "http://[fd00::1]", False),
    ("http://[fd00::1]x/fw", "http://[fd00::1]", False),
    ("http://[fd00::1]:81/fw", "http://[fd00::1]", False),
    ("http://[fd00::g]/fw", "http://[fd00::g]", False),
    ("http://[]/fw", "http://[]", False),
    ("http://[fd00::1]:8000/fw", "http://[ad00::1]:8000", False),  # every character of the address counts
    ("http://[v1.fe]/fw", "http://[v1.fe]", False),  # IPvFuture: no ESP core resolves it
    # Host names: letters, digits, dot, dash and underscore only; compared in lower case.
    ("http://my_ota-1.lan/fw", "http://MY_OTA-1.LAN", True),
    ("http://h%41/fw", "http://h%41", False),
    ("http:///fw", "http:///", False),
    # Separators spelt as escapes, in either case; a dot inside a name is fine.
    ("http://h/ota/%2E%2E/admin", "http://h/ota", False),
    ("http://h/ota%2fadmin", "http://h/ota", False),
    ("http://h/ota%2Fadmin", "http://h/ota", False),
    ("http://h/ota/%5c../admin", "http://h/ota", False),
    ("http://h/ota/%5C../admin", "http://h/ota", False),
    ("http://h/ota/..", "http://h/ota", False),
    ("http://h/ota/k.1.bin", "http://h/ota", True),
    ("http://h/ota/...", "http://h/ota", True),
    # A backslash anywhere: some servers read it as "/", so "\.." climbs out of the base.
    ("http://h/ota/k\\..\\..\\admin", "http://h/ota", False),
    # The base path is matched whole; only its trailing slashes go.
    ("http://h/ota/k.bin", "http://h/otaX", False),
    # Only printable ASCII, and only http and https in lower case.
    ("http://h/fw\t", "http://h", False),
    ("http://h/f\u00fc", "http://h", False),
    ("ftp://h/fw", "ftp://h", False),
    ("Https://h/fw", "https://h", False),
])
def test_the_url_check_at_its_edges(url: str, base: str, under: bool) -> None:
    assert trust.is_under_base(url, base) is under


@pytest.mark.parametrize(("base", "usable"), [
    ("http://ota.lan:8000", True),
    ("https://ota.lan/updates/", True),
    ("http://[fd00::1]:8000", True),
    ("http://ota.lan/?x", False),
    ("http://ota.lan/#top", False),
    ("http://user@ota.lan", False),
    ("ota.lan:8000", False),
    ("", False),
])
def test_a_base_url_is_usable_only_if_a_device_could_check_against_it(base: str, usable: bool) -> None:
    assert trust.is_usable_base(base) is usable


# -- download tokens (core/tokens.py) -----------------------------------------------------------------

GRANT = tk.Grant(device="plug-1", image="plug", version="14.4.0", sha256="ab" * 32, attempt="a1", expires=100.0)
TWO_STEP = tk.Grant(device="plug-1", image="plug", version="14.4.0", sha256="ab" * 32, attempt="a1",
                    expires=100.0, minimal_image="plug-minimal", minimal_version="14.4.0")


def test_a_token_serves_its_own_device_until_it_expires() -> None:
    assert tk.refusal(GRANT, "plug-1", tk.FULL, 0.0) is None
    assert tk.refusal(GRANT, "plug-1", tk.FULL, 99.999) is None
    assert tk.refusal(GRANT, "plug-1", tk.FULL, 100.0) == "the token expired"
    assert tk.refusal(GRANT, "plug-2", tk.FULL, 0.0) == "the token is not plug-2's"
    assert tk.refusal(None, "plug-1", tk.FULL, 0.0) == "unknown download token"


def test_each_file_is_taken_whole_once() -> None:
    full_taken = tk.served(TWO_STEP, tk.FULL)
    assert full_taken.served == {tk.FULL}
    assert tk.refusal(full_taken, "plug-1", tk.FULL, 0.0) == "the token was used already for the full image"
    assert tk.refusal(full_taken, "plug-1", tk.MINIMAL, 0.0) is None  # the other file is still there
    both = tk.served(tk.served(TWO_STEP, tk.MINIMAL), tk.FULL)
    assert both.served == {tk.FULL, tk.MINIMAL}
    assert tk.refusal(both, "plug-1", tk.MINIMAL, 0.0) == "the token was used already for the minimal image"


def test_the_minimal_image_only_when_one_is_released_with_the_update() -> None:
    assert tk.refusal(GRANT, "plug-1", tk.MINIMAL, 0.0) == "no minimal image is released for this update"
    assert tk.refusal(TWO_STEP, "plug-1", tk.MINIMAL, 0.0) is None


def test_a_revoked_token_says_why_and_keeps_its_first_reason() -> None:
    gone = tk.revoked(GRANT, "the attempt ended")
    assert tk.refusal(gone, "plug-1", tk.FULL, 0.0) == "the token was revoked (the attempt ended)"
    assert tk.revoked(gone, "a new attempt began") == gone
    # Revoked says more than expired, so it is the reason given once both are true.
    assert tk.refusal(gone, "plug-1", tk.FULL, 500.0) == "the token was revoked (the attempt ended)"
    # Another device learns nothing about the token but that it is not its own.
    assert tk.refusal(gone, "plug-2", tk.FULL, 500.0) == "the token is not plug-2's"


def test_the_two_step_probe_does_not_spend_the_full_image() -> None:
    # Tasmota asks for the full image, reads its size, and, with too little room, fetches the
    # minimal one first: that first request is not the full image's one use.
    assert not tk.spends(tk.FULL, size=600_000, free_space=400_000)
    assert not tk.spends(tk.FULL, size=600_000, free_space=599_999)
    assert tk.spends(tk.FULL, size=600_000, free_space=600_000)  # it fits: this is the download
    assert tk.spends(tk.FULL, size=600_000, free_space=None)  # a device that does not say
    assert tk.spends(tk.MINIMAL, size=600_000, free_space=0)


def test_a_log_line_shows_four_characters_of_a_token() -> None:
    token = secrets.token_urlsafe(tk.TOKEN_BYTES)
    assert len(token) == tk.TOKEN_CHARS
    assert tk.mask(token) == token[:4] + "…"
    assert tk.mask_path(f"/t/plug-1/{token}/firmware.bin") == f"/t/plug-1/{token[:4]}…/firmware.bin"
    assert tk.mask_path(f"/t/plug-1/{token}") == f"/t/plug-1/{token[:4]}…"
    for other in ("/fw/kitchen/1.0.0.bin", "/t/plug-1", f"/x/plug-1/{token}/f", "/"):
        assert tk.mask_path(other) == other
    text = f"GET /t/plug-1/{token}/firmware.bin failed; {token} refused"
    assert tk.mask_text(text, token) == f"GET /t/plug-1/{token[:4]}…/firmware.bin failed; {token[:4]}… refused"
    assert tk.mask_text(text, "") == text


def test_every_token_url_in_a_devices_echo_is_masked() -> None:
    echo = ('{"OtaUrl":"http://h:8000/t/plug-1/AbCd_-EfGh12/tasmota.bin.gz",'
            '"Next":"http://h:8000/t/plug-2/WxYz9876/tasmota-minimal.bin"}')
    assert tk.mask_urls(echo) == ('{"OtaUrl":"http://h:8000/t/plug-1/AbCd…/tasmota.bin.gz",'
                                  '"Next":"http://h:8000/t/plug-2/WxYz…/tasmota-minimal.bin"}')
    assert tk.mask_urls('{"OtaUrl":"http://h/fw/plug/14.4.0.bin"}') == '{"OtaUrl":"http://h/fw/plug/14.4.0.bin"}'
