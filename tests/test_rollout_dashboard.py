"""The dashboard's side of rollouts in a real headless Chromium: the Rollouts page live (a halt and
its reason, resume, completion), and many ticked devices installed with one request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Mosquitto, release, wait_until, write_config
from tests.test_dashboard import open_live, pages, row  # noqa: F401 - pages is a fixture
from tests.test_rollout import config_text
from tinyota_mqtt.config import load_config
from tinyota_mqtt.mqtt.simulator import devices_for


def test_rollout_page_shows_the_halt_and_resume_continues_live(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                                servers: Any, pages: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    path = write_config(tmp_path, mqtt=broker.url, prefix=prefix, text=config_text(lights=3, manual=0))
    config = load_config(path)
    sims = devices_for(config, None, "lights", broker.url, "1.0.0", fail={"light-0"})
    try:
        for sim in sims:
            sim.start()
        server = servers(path)
        wait_until(lambda: all(server.view(s.s.device_id)["installed"] == "1.0.0" for s in sims), 20, "hello")
        page = pages(server)
        open_live(page, "/rollouts")
        expect(page.locator("#rollouts-empty")).to_be_visible()
        release(config, "kitchen", "2.0.0")
        page.wait_for_selector('[data-rollout="1"]')  # a new rollout reloads the page
        section = page.locator('[data-rollout="1"]')
        expect(section.locator('[data-field="state"]')).to_have_text("halted")
        expect(section.locator('[data-field="reason"]')).to_contain_text("light-0: flash write failed")
        expect(section.locator('tr[data-wave="1"] [data-field="failed"]')).to_have_text("1")
        for wave in ("2", "3"):  # light-1, then light-2 (50 % of three, rounded up, counts the canary)
            expect(section.locator(f'tr[data-wave="{wave}"] [data-field="waiting"]')).to_have_text("1")
        expect(section.get_by_role("button", name="Pause")).to_be_disabled()
        section.get_by_role("button", name="Resume").click()
        # Wave 2 goes out after the acknowledged canary failure, and the page follows the stream.
        expect(section.locator('[data-field="state"]')).to_have_text("completed", timeout=60_000)
        expect(section.locator('tr[data-wave="3"] [data-field="succeeded"]')).to_have_text("1")
        expect(section.locator('[data-field="reason"]')).to_be_hidden()
        expect(section.get_by_role("button", name="Abort")).to_be_disabled()
        history = server.call(server.service.rollouts.get, "1").log
        assert [(e.who, e.what.split(":")[0]) for e in history] == [
            ("config", "started"), ("rollout", "running"), ("rollout", "halted"), ("admin", "resumed past"),
            ("rollout", "wave 1 done; wave 2 starts"), ("rollout", "wave 2 done; wave 3 starts"),
            ("rollout", "completed")]
    finally:
        for sim in sims:
            sim.stop()


def test_installing_ticked_devices_is_one_request(tmp_path: Path, servers: Any, pages: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    from tests.test_http import HTTP_ONLY

    path = write_config(tmp_path, text=config_text(lights=0, manual=3))
    server = servers(path, HTTP_ONLY)
    release(server.config, "kitchen", "2.0.0")
    page = pages(server)
    open_live(page)
    posts: list[tuple[str, Any]] = []
    page.on("request", lambda r: posts.append((r.url.split(server.url)[1], r.post_data))
            if r.method == "POST" else None)
    for device in ("desk-0", "desk-2"):
        row(page, device).get_by_label(f"Select {device}").check()
    page.locator("#selection").get_by_role("button", name="Install…").click()
    page.locator("#confirm").get_by_role("button", name="Install").click()
    for device in ("desk-0", "desk-2"):
        expect(row(page, device).locator('[data-field="attempt"]')).to_have_text(
            "2.0.0: announced, waiting for the device")
    assert [(url, json.loads(body)) for url, body in posts] == [("/api/install", {"devices": ["desk-0", "desk-2"]})]
    assert server.view("desk-1")["attempt"] is None
