"""The download tokens' promises (docs/tasmota.md, "The download token"), on the service.

The Tasmota driver mints a token when it tells a device; the HTTP layer (``http/tokens.py``)
asks ``Service.token_download`` what a request on ``/t/<device>/<token>/…`` may have and calls
``Service.token_spent`` after a whole file. These tests make the same calls on the fake bus, so
each promise fails here if it goes: single use, 15 minutes at most and never past the attempt,
that device and that attempt only, only the SHA-256 kept, only four characters logged.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG
from tests.test_outcomes import Fleet
from tinyota_mqtt.core import tokens as tk
from tinyota_mqtt.registry import Registry
from tinyota_mqtt.service import Service

PLUGS = (BASE_CONFIG
         .replace("images:\n", "images:\n  plug: {{platform: esp8266}}\n  plug-minimal: {{platform: esp8266}}\n")
         .replace("groups:\n", "groups:\n  plugs: {{image: plug, kind: tasmota, minimal_image: plug-minimal, "
                               "auto_update: false, attempt_timeout: 1h, confirm: {confirm}}}\n")
         .replace("devices:\n", "devices:\n  plug-1: {{group: plugs, password: pw-plug-1}}\n"
                                "  plug-2: {{group: plugs, password: pw-plug-2}}\n"))


def tokens_sent(f: Fleet, device: str) -> list[str]:
    """Every token the device was told, oldest first (…/t/<device>/<token>/firmware.bin)."""
    return [p.decode().split("/")[-2] for t, p, _r in f.bus.sent if t == f"cmnd/{device}/OtaUrl"]


def told(f: Fleet, device: str) -> str:
    f.service.install([device])
    return tokens_sent(f, device)[-1]


def served(f: Fleet, device: str, token: str, variant: str = tk.FULL) -> str:
    """What the token route would serve ("plug 1.0.0"), or why not ("refused: …")."""
    found = f.service.token_download(device, token, variant)
    if found.release is None:
        return f"refused: {found.refusal}"
    return f"{found.release.image} {found.release.version}"


@pytest.fixture
def plugs(fleet: Any) -> Fleet:
    f: Fleet = fleet(text=PLUGS)
    f.release("plug", "1.0.0")
    return f


def test_the_full_image_is_served_whole_once(plugs: Fleet) -> None:
    token = told(plugs, "plug-1")
    assert served(plugs, "plug-1", token) == "plug 1.0.0"
    assert served(plugs, "plug-1", token) == "plug 1.0.0"  # asking is not taking: only a whole file counts
    plugs.service.token_spent(token, tk.FULL)
    assert served(plugs, "plug-1", token) == "refused: the token was used already for the full image"
    # Tasmota asks again only when it could not flash what it took: the attempt fails at once.
    assert plugs.attempt("plug-1").state == "failed"
    assert "asked for it again" in (plugs.attempt("plug-1").error or "")


def test_the_minimal_image_then_the_full_one_each_once_on_one_token(plugs: Fleet) -> None:
    plugs.release("plug-minimal", "1.0.0")
    token = told(plugs, "plug-1")
    assert served(plugs, "plug-1", token, tk.MINIMAL) == "plug-minimal 1.0.0"
    plugs.service.token_spent(token, tk.MINIMAL)  # flashed the minimal build, rebooted into it
    assert served(plugs, "plug-1", token) == "plug 1.0.0"  # which fetches the full image
    assert served(plugs, "plug-1", token, tk.MINIMAL) == "refused: the token was used already for the minimal image"


def test_a_token_lasts_15_minutes_at_most(plugs: Fleet) -> None:
    token = told(plugs, "plug-1")  # the attempt has an hour
    plugs.clock.now += tk.TTL - 1
    assert served(plugs, "plug-1", token) == "plug 1.0.0"
    plugs.clock.now += 1
    assert served(plugs, "plug-1", token) == "refused: the token expired"


def test_a_token_is_that_devices_and_that_attempts_only(plugs: Fleet) -> None:
    first = told(plugs, "plug-1")
    assert served(plugs, "plug-2", first) == "refused: the token is not plug-2's"
    plugs.clock.now += 60
    second = told(plugs, "plug-2")  # another device's token leaves plug-1's alone
    assert served(plugs, "plug-1", first) == "plug 1.0.0"
    assert served(plugs, "plug-2", second) == "plug 1.0.0"
    assert served(plugs, "plug-1", "x" * tk.TOKEN_CHARS) == "refused: unknown download token"
    attempt = plugs.attempt("plug-1")
    plugs.service.cancel(["plug-1"])  # the attempt ended
    assert served(plugs, "plug-1", first) == f"refused: the token was revoked (attempt {attempt.id} was withdrawn)"


def test_a_new_token_for_a_device_ends_its_older_ones(plugs: Fleet) -> None:
    plugs.release("plug", "1.1.0")
    first = told(plugs, "plug-1")
    plugs.service.handle_message("stat/plug-1/RESULT", b'{"Upgrade":"Failed HTTP error: connection failed"}')
    plugs.service.install(["plug-1"], "1.1.0")  # a new attempt, after one that ended on its own
    assert served(plugs, "plug-1", first) == "refused: the token was revoked (a newer token was minted)"
    assert served(plugs, "plug-1", tokens_sent(plugs, "plug-1")[-1]) == "plug 1.1.0"


def test_a_token_told_again_lasts_its_own_15_minutes(plugs: Fleet) -> None:
    """A device told again on a reconnect gets a new token for the same attempt; forgetting the
    first one later must not forget the second."""
    told(plugs, "plug-1")
    plugs.clock.now += 20 * 60
    plugs.service.attach(plugs.bus)
    plugs.bus.connect(plugs.service)  # still pending: told again, with a new token
    again = tokens_sent(plugs, "plug-1")[-1]
    plugs.clock.now += 11 * 60  # the first is 16 minutes past its end: the next mint forgets it
    told(plugs, "plug-2")
    assert served(plugs, "plug-1", again) == "plug 1.0.0"  # 11 of its 15 minutes gone


def test_an_old_token_long_expired_is_forgotten(plugs: Fleet) -> None:
    token = told(plugs, "plug-1")
    plugs.clock.now += 2 * tk.TTL + 1
    told(plugs, "plug-2")  # minting sweeps the table
    assert served(plugs, "plug-1", token) == "refused: unknown download token"
    assert plugs.service.cancel(["plug-1"]) == ["plug-1"]  # its attempt (an hour long) still ends plainly
    assert plugs.service.registry.device("plug-1").held


def test_a_reconnect_mid_update_asks_the_device_only_when_its_token_is_gone(plugs: Fleet, tmp_path: Any) -> None:
    rel = plugs.service.store.get("plug", "1.0.0")
    told(plugs, "plug-1")
    plugs.service.download_started("plug-1", rel)  # downloading: telling it again could flash it twice
    plugs.service.attach(plugs.bus)
    plugs.bus.connect(plugs.service)
    assert plugs.bus.on("cmnd/plug-1/Status") == []  # its token is still good: nothing to ask
    plugs.service.registry.flush()
    restarted = Service(plugs.config, registry=Registry(plugs.config.server.state), clock=plugs.clock)
    try:
        restarted.attach(plugs.bus)
        plugs.bus.connect(restarted)  # a restart lost the token: ask where the device is
        assert plugs.bus.on("cmnd/plug-1/Status") == [b"2"]
    finally:
        restarted.close()


def test_only_each_tokens_sha256_is_kept(plugs: Fleet) -> None:
    token = told(plugs, "plug-1")
    assert len(token) == tk.TOKEN_CHARS  # 128 bits, in the OtaUrl length check-config allows for
    kept = repr(vars(plugs.service.tokens))
    assert token not in kept
    assert repr(hashlib.sha256(token.encode()).digest()) in kept


def test_a_minted_token_is_logged_by_its_first_four_characters(fleet: Any, caplog: pytest.LogCaptureFixture) -> None:
    f: Fleet = fleet(text=PLUGS)
    f.release("plug", "1.0.0")
    with caplog.at_level(logging.DEBUG):
        token = told(f, "plug-1")
    (line,) = [r.getMessage() for r in caplog.records if "download token" in r.getMessage()]
    attempt = f.attempt("plug-1")
    assert line == f"plug-1: download token {token[:4]}… minted for attempt {attempt.id}"
    assert all(token not in r.getMessage() for r in caplog.records)
