"""The dashboard: handlers over real sockets, then the whole thing in a real headless Chromium.

The browser tests use Playwright for Python driving Debian's chromium (``executable_path``), not
a browser Playwright downloads. Playwright because it logs in with HTTP Basic by itself
(``http_credentials``; chromedriver has no way short of credentials in the URL), waits on
conditions instead of sleeping (``expect``), can serve a page from a fake foreign origin
(``page.route``) to try a real cross-site POST, and its wheel carries its own driver, so there
is no chromedriver version to match. A missing chromium fails these tests: CI installs it.

Set TINYOTA_UPDATE_SCREENSHOT=1 to rewrite docs/dashboard.png from test_fleet_screenshot.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_CONFIG, ROOT, Mosquitto, Probe, ServerThread, release, wait_until, write_config
from tests.test_http import HTTP_ONLY, request
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.http import dashboard
from tinyota_mqtt.mqtt.simulator import SimDevice, SimSettings
from tinyota_mqtt.registry import Registry

ADMIN = {"user": "admin", "password": "admin-secret"}
DEVICE = {"user": "kitchen-2", "password": "pw-kitchen-2"}
HOSTILE = '<img src=x onerror="window.pwned=1">'
HOSTILE_NOTE = "<script>window.pwned=2</script><b>bold</b> & more"
HOSTILE_ID = "<script>window.pwned=3</script>"

# Like the base config, plus a second on-command device (an ESPHome one), a display name, and a
# name that is HTML.
CONFIG = BASE_CONFIG.split("homeassistant:")[0] + """\
homeassistant:
  enabled: false
images:
  kitchen: {{platform: esp8266, description: Kitchen light controller}}
  sensor: {{platform: esp32, description: Battery temperature sensor}}
groups:
  kitchen-lights: {{image: kitchen, auto_update: true, attempt_timeout: {timeout}, confirm: {confirm}}}
  sensors: {{image: sensor, auto_update: false, attempt_timeout: {timeout}, confirm: {confirm}}}
devices:
  kitchen-1: {{group: kitchen-lights, password: pw-kitchen-1, name: Kitchen ceiling}}
  kitchen-2: {{group: kitchen-lights, password: pw-kitchen-2, name: '""" + HOSTILE.replace("'", "''") + """'}}
  sensor-1: {{group: sensors, password: pw-sensor-1}}
  sensor-2: {{group: sensors, kind: esphome, password: pw-sensor-2}}
  loner: {{password: pw-loner}}
"""

PAGES = ["/", "/releases", "/devices/kitchen-1"]


def dashboard_config(directory: Path, **kw: Any) -> Path:
    return write_config(directory, text=CONFIG, **kw)


@pytest.fixture
def server(tmp_path: Path, servers: Any) -> ServerThread:
    return servers(dashboard_config(tmp_path), HTTP_ONLY)  # type: ignore[no-any-return]


class Page(HTMLParser):
    """What a page's markup contains, for checks that do not need a browser."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = ""
        self.inline_attrs: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        self.inline_attrs += [n for n in names if n == "style" or n.startswith("on")]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data


def get(server: ServerThread, path: str, **kw: Any) -> tuple[Any, str]:
    resp, body = request(server, "GET", path, **{**ADMIN, **kw})
    return resp, body.decode("utf-8", "replace")


# -- who may see it ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [*PAGES, "/api/events", "/static/dashboard.js", "/static/dashboard.css"])
def test_everything_needs_the_admin_account(server: ServerThread, path: str) -> None:
    resp, _ = request(server, "GET", path, user=None)
    assert resp.status == 401
    assert resp.getheader("WWW-Authenticate", "").startswith("Basic realm=")  # the browser's login prompt
    resp, _ = request(server, "GET", path, user="admin", password="wrong")
    assert resp.status == 401
    resp, body = request(server, "GET", path, **DEVICE)
    assert resp.status == 403, "device credentials must not open the dashboard"


def test_errors_are_small_html_pages_that_say_what_to_do(server: ServerThread) -> None:
    resp, body = get(server, "/", user=None)
    assert resp.getheader("Content-Type").startswith("text/html") and "log in with the admin account" in body
    resp, body = get(server, "/", **DEVICE)
    assert "device accounts can only download firmware" in body
    resp, body = get(server, "/devices/ghost")
    assert resp.status == 404 and "no device &#x27;ghost&#x27;" in body


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_a_strict_csp_and_no_inline_script(server: ServerThread, path: str) -> None:
    resp, body = get(server, path)
    assert resp.status == 200
    csp = resp.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp  # nothing from elsewhere, nothing inline
    assert resp.getheader("X-Frame-Options") == "DENY"
    assert resp.getheader("Cache-Control") == "no-store"
    page = Page(body)
    assert page.scripts and all(s.get("src", "").startswith("/static/") for s in page.scripts)
    assert page.inline_script.strip() == "" and page.inline_attrs == []
    assert "://" not in re.sub(r'xmlns="[^"]*"', "", body), "every asset is served by the server itself"


def test_static_files_are_versioned_cached_and_confined(server: ServerThread) -> None:
    _resp, body = get(server, "/")
    js = re.search(r'src="(/static/dashboard\.js\?v=[0-9a-f]+)"', body)
    assert js is not None
    resp, data = request(server, "GET", js.group(1), **ADMIN)
    assert resp.status == 200 and "javascript" in resp.getheader("Content-Type")
    assert "max-age" in resp.getheader("Cache-Control", "")  # ?v= URLs change with the content
    resp, _ = request(server, "GET", "/static/dashboard.js", headers={"If-None-Match": resp.getheader("Etag")},
                      **ADMIN)
    assert resp.status == 304
    for path in ("/static/../dashboard.py", "/static/%2e%2e/dashboard.py", "/static/nope.css"):
        resp, _ = request(server, "GET", path, **ADMIN)
        assert resp.status in (403, 404), path
    assert "innerHTML" not in (dashboard.STATIC / "dashboard.js").read_text().replace(
        "Never innerHTML", ""), "the script builds DOM with textContent only"


# -- what the pages show ----------------------------------------------------------------------------

def test_fleet_page_lists_devices_by_group_and_marks_outdated(server: ServerThread) -> None:
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)  # kitchen-lights updates automatically: both get a target
    _resp, body = get(server, "/")
    assert body.index('data-section="group:kitchen-lights"') < body.index('data-device="kitchen-1"') \
        < body.index('data-section="group:sensors"') < body.index('data-device="sensor-1"')
    assert re.search(r'<tr class="device outdated" data-device="kitchen-1"', body)
    assert re.search(r'<tr class="device" data-device="sensor-1"', body)  # on command: no target
    assert "1.0.0: announced, waiting for the device" in body
    assert "No group" in body and 'data-device="loner"' in body
    assert "Kitchen ceiling" in body
    # Each row names the firmware its device runs, by its kind.
    kinds = dict(re.findall(r'<tr [^>]*data-device="([\w-]+)".*?data-field="kind" data-value="\w*">([^<]*)</span>',
                            body, re.S))
    assert kinds == {"kitchen-1": "esp_client", "kitchen-2": "esp_client", "sensor-1": "esp_client",
                     "sensor-2": "ESPHome", "loner": "esp_client"}


def test_empty_states_say_what_to_do(tmp_path: Path, servers: Any) -> None:
    empty = servers(write_config(tmp_path, text=CONFIG.split("devices:")[0]), HTTP_ONLY)
    _resp, body = get(empty, "/")
    assert "No devices yet" in body
    _resp, body = get(empty, "/releases")
    assert "No releases of kitchen yet — upload one above." in body


def test_hostile_text_is_escaped_in_every_template(tmp_path: Path, servers: Any) -> None:
    config = dashboard_config(tmp_path)
    # A device id no MQTT topic could carry, put straight into the state file (a corrupt or
    # hand-edited one): the templates must still show it as text.
    registry = Registry(tmp_path / "state.sqlite")
    registry.update_device(HOSTILE_ID, online=True, version="1.0.0", last_error=HOSTILE)
    registry.close()
    srv = servers(config, HTTP_ONLY)
    release(srv.config, "kitchen", "1.0.0", notes=HOSTILE_NOTE)
    srv.call(srv.service.tick)
    for path in (*PAGES, "/devices/kitchen-2", "/releases?released=kitchen/1.0.0"):
        _resp, body = get(srv, path)
        for raw in (HOSTILE, HOSTILE_NOTE, HOSTILE_ID, "<script>window", "<img src=x"):
            assert raw not in body, f"{raw!r} rendered unescaped on {path}"
    _resp, body = get(srv, "/releases")
    assert "&lt;script&gt;window.pwned=2&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; more" in body
    _resp, body = get(srv, "/")
    assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in body
    assert "&lt;script&gt;window.pwned=3&lt;/script&gt;" in body


def test_device_page_shows_history_and_topics(server: ServerThread) -> None:
    release(server.config, "sensor", "2.0.0")
    server.call(server.service.install, ["sensor-1"])
    server.call(server.service.cancel, ["sensor-1"])
    _resp, body = get(server, "/devices/sensor-1")
    pre = server.config.mqtt.prefix
    for topic in ("update", "status", "availability", "state", "install"):
        assert f"<code>{pre}/sensor-1/{topic}</code>" in body
    assert 'data-value="cancelled"' in body and "yes: cancelled" in body
    assert '<dt>Kind</dt><dd data-field="kind" data-value="tinyota">esp_client</dd>' in body
    _resp, body = get(server, "/devices/sensor-2")
    assert '<dt>Kind</dt><dd data-field="kind" data-value="esphome">ESPHome</dd>' in body


def test_releases_page_after_an_upload(server: ServerThread) -> None:
    release(server.config, "kitchen", "1.0.0", 70_000, notes="first")
    release(server.config, "kitchen", "1.1.0", notes="second")
    _resp, body = get(server, "/releases?released=kitchen/1.1.0")
    assert "Released kitchen 1.1.0 (64.0 KiB)" in body and "kitchen-lights updates automatically" in body
    assert body.index("1.1.0") < body.index(">1.0.0")  # newest first
    assert server.service.store.get("kitchen", "1.0.0").sha256 in body and "68.4 KiB" in body
    _resp, body = get(server, "/releases?released=../../etc/1.0.0")
    assert 'id="released"' not in body


# -- cross-site requests ----------------------------------------------------------------------------

def test_cross_site_posts_are_refused(server: ServerThread) -> None:
    release(server.config, "sensor", "2.0.0")
    same = f"http://127.0.0.1:{server.server.port}"
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": same, "Sec-Fetch-Site": "same-site"}):
        for path in ("/api/devices/sensor-1/install", "/api/groups/sensors/install", "/api/devices/sensor-1/cancel"):
            resp, _ = request(server, "POST", path, body=b"{}", headers=headers, **ADMIN)
            assert resp.status == 403, (path, headers)
    assert server.view("sensor-1")["attempt"] is None
    # What dashboard.js sends (same origin) passes.
    resp, _ = request(server, "POST", "/api/devices/sensor-1/install", body=b"{}",
                      headers={"Origin": same, "Sec-Fetch-Site": "same-origin"}, **ADMIN)
    assert resp.status == 202


# -- the event stream -------------------------------------------------------------------------------

class EventReader:
    """A server-sent event stream read over a raw socket (HTTP/1.0: no chunking to undo)."""

    def __init__(self, server: ServerThread, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.server.port), 10)
        lines = ["GET /api/events HTTP/1.0", "Host: 127.0.0.1",
                 f"Authorization: {basic_header('admin', 'admin-secret')}",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n").decode()
        self.status = int(head.split()[1])
        self.headers = head.lower()

    def _until(self, marker: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the stream was closed")
            self.buffer += chunk
        block, self.buffer = self.buffer.split(marker, 1)
        return block

    def block(self, timeout: float = 10) -> str:
        return self._until(b"\n\n", timeout).decode()

    def event(self, name: str, timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            block = self.block(max(0.01, deadline - time.monotonic()))
            fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
            if fields.get("event") == name:
                return json.loads(fields["data"])

    def close(self) -> None:
        self.sock.close()


def test_event_stream_sends_a_snapshot_then_changes(server: ServerThread) -> None:
    release(server.config, "sensor", "2.0.0", notes="first")
    listeners = server.service.events  # exactly what must not leak
    assert len(listeners) == 0
    stream = EventReader(server)
    try:
        assert stream.status == 200 and "content-type: text/event-stream" in stream.headers
        assert "x-accel-buffering: no" in stream.headers
        assert stream.block() == "retry: 2000"  # EventSource reconnects by itself after 2 s
        snap = stream.event("snapshot")
        assert [d["id"] for d in snap["devices"]] == ["kitchen-1", "kitchen-2", "sensor-1", "sensor-2", "loner"]
        assert snap["releases"]["sensor"][0]["notes"] == "first" and snap["health"]["status"] == "ok"
        assert len(listeners) == 1
        server.call(lambda: server.service.reports.on_availability("sensor-1", True, live=True))
        change = stream.event("device")
        assert change["id"] == "sensor-1" and change["online"] is True
        server.call(server.service.install, ["sensor-1"])
        assert stream.event("attempt")["state"] == "pending"
        release(server.config, "sensor", "2.1.0")
        server.call(server.service.tick)
        fresh = stream.event("releases")
        assert [r["version"] for r in fresh["releases"]["sensor"]] == ["2.0.0", "2.1.0"]
        assert len(fresh["devices"]) == 5  # targets may have moved with the new release
    finally:
        stream.close()
    wait_until(lambda: len(listeners) == 0, 5, "the stream to unsubscribe when the reader leaves")


def test_event_stream_heartbeat_and_backlog_limit(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard.EventStream, "heartbeat", 0.2)
    stream = EventReader(server)
    stream.event("snapshot")
    assert stream.block(2) == ": keep-alive"  # proxies see traffic on an idle stream
    stream.close()
    monkeypatch.setattr(dashboard.EventStream, "max_backlog", 3)
    slow = EventReader(server)
    slow.event("snapshot")
    server.call(lambda: [server.service.reports.on_availability("kitchen-1", n % 2 == 0, live=True) for n in range(10)])
    with pytest.raises(EOFError):  # closed rather than buffered without end; the browser resyncs
        while True:
            slow.block()
    slow.close()
    wait_until(lambda: len(server.service.events) == 0, 5, "no listener left behind")


def test_event_stream_refuses_other_sites(server: ServerThread) -> None:
    stream = EventReader(server, {"Sec-Fetch-Site": "cross-site"})
    assert stream.status == 403
    stream.close()


# == in a real browser ==============================================================================

@pytest.fixture
def pages(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open a logged-in page; at the end, fail on any script error or CSP violation it logged."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    made: list[tuple[Any, list[str]]] = []

    def make(server: ServerThread, *, credentials: dict[str, str] | None = None, **options: Any) -> Any:
        creds = {"username": "admin", "password": "admin-secret"} if credentials is None else credentials
        context = browser.new_context(base_url=server.url, http_credentials=creds or None, **options)
        context.set_default_timeout(15_000)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
        page.on("console", lambda msg: problems.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text else None)
        made.append((context, problems))
        return page

    yield make
    for context, problems in made:
        context.close()
        assert problems == [], problems


@pytest.fixture
def live(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any, probes: Any) -> Any:
    """A server on the test mosquitto, a way to speak as a device, simulated devices."""
    sims: list[SimDevice] = []

    class Live:
        config_path = dashboard_config(tmp_path, mqtt=broker.url, prefix=prefix)
        pre = prefix

        def start(self, text: str | None = None) -> ServerThread:
            if text is not None:
                self.config_path = write_config(tmp_path / "other", text=text, mqtt=broker.url, prefix=prefix)
            self.server: ServerThread = servers(self.config_path)
            wait_until(lambda: self.server.service.ready, 10, "the server to connect to mosquitto")
            return self.server

        def says(self, device: str, **status: Any) -> None:
            self.probe.publish(f"{prefix}/{device}/status", json.dumps(status), retain=True)

        @property
        def probe(self) -> Probe:
            if not hasattr(self, "_probe"):
                self._probe: Probe = probes(broker.url)
            return self._probe

        def sim(self, device: str, version: str, **kw: Any) -> SimDevice:
            image = self.server.config.image_of(device)
            sim = SimDevice(SimSettings(device_id=device, password=f"pw-{device}", broker=broker.url,
                                        version=version, platform=image.platform if image else "esp8266",
                                        prefix=prefix, **kw))
            sim.start()
            sims.append(sim)
            return sim

    yield Live()
    for sim in sims:
        sim.stop()


def row(page: Any, device: str) -> Any:
    return page.locator(f'tr[data-device="{device}"]')


def open_live(page: Any, path: str = "/") -> None:
    from playwright.sync_api import expect

    response = page.goto(path)
    assert response.status == 200
    expect(page.locator("#live")).to_have_text("live")
    page.wait_for_selector("body[data-live='1']", state="attached")  # the first snapshot is in


def test_login_then_devices_and_progress_arrive_live_over_mqtt(live: Any, pages: Any) -> None:
    from playwright.sync_api import expect

    server = live.start()
    from playwright.sync_api import Error as BrowserError

    anonymous = pages(server, credentials={})
    with anonymous.expect_response(f"{server.url}/") as challenge, pytest.raises(BrowserError, match="AUTH"):
        anonymous.goto("/")  # headless has no login prompt to show: it gives up
    assert challenge.value.status == 401 and challenge.value.headers["www-authenticate"].startswith("Basic")
    page = pages(server)
    release(server.config, "kitchen", "1.0.0")
    server.call(server.service.tick)  # kitchen-lights updates automatically: kitchen-1 is told
    open_live(page)
    kitchen = row(page, "kitchen-1")
    expect(kitchen.locator('[data-field="attempt"]')).to_have_text("1.0.0: announced, waiting for the device")
    expect(kitchen).to_have_class(re.compile(r"\boutdated\b"))
    # A device nobody configured reports: a new row appears, from a real MQTT message.
    live.says("stranger-7", state="idle", version="3.0.0")
    stranger = row(page, "stranger-7")
    expect(stranger.locator('[data-field="installed"]')).to_have_text("3.0.0")
    expect(page.locator('tbody[data-section="unknown"]')).to_be_visible()
    expect(stranger.locator('[data-field="online"]')).to_have_text("online")
    # kitchen-1 plays its part: the progress bar moves, then the update is confirmed.
    attempt = server.view("kitchen-1")["attempt"]["id"]
    bar = kitchen.locator("progress")
    expect(bar).to_be_hidden()
    for percent in (10, 55, 90):
        live.says("kitchen-1", state="downloading", version="0.9.0", progress=percent, id=attempt)
        expect(bar).to_be_visible()
        expect(bar).to_have_js_property("value", percent)
        expect(kitchen.locator('[data-field="attempt"]')).to_have_text(f"1.0.0: downloading {percent}%")
    live.says("kitchen-1", state="rebooting", version="0.9.0", progress=100, id=attempt)
    expect(kitchen.locator('[data-field="attempt"]')).to_have_text("1.0.0: flashing")
    live.says("kitchen-1", state="idle", version="1.0.0")
    expect(kitchen.locator('[data-field="attempt"]')).to_have_text("1.0.0: succeeded")
    expect(kitchen.locator('[data-field="installed"]')).to_have_text("1.0.0")
    expect(kitchen).not_to_have_class(re.compile(r"\boutdated\b"))
    expect(bar).to_be_hidden()
    expect(page.locator("#activity li").first).to_contain_text("succeeded")
    expect(page.locator('[data-count="outdated"]')).to_have_text("1")  # kitchen-2 still waits


def test_upload_then_update_a_whole_group_from_the_page(live: Any, pages: Any, tmp_path: Path) -> None:
    """The issue's "done when": upload, press Install on a group, watch progress and outcome."""
    from playwright.sync_api import expect

    server = live.start()
    release(server.config, "sensor", "2.0.0")
    # Two simulated ESP32s on weak Wi-Fi (64 KiB/s), so a 256 KiB image takes a few seconds.
    for device in ("sensor-1", "sensor-2"):
        live.sim(device, "2.0.0", rate=64 * 1024, progress_every=0.1, reboot_seconds=0.2)
    page = pages(server)
    open_live(page, "/releases")
    expect(page.locator('td[data-runs="sensor"][data-version="2.0.0"]')).to_have_text("sensor-1, sensor-2")
    form = page.locator("#upload")
    form.get_by_label("Image", exact=True).select_option("sensor")
    form.get_by_label("Version", exact=True).fill("2.1.0")
    form.get_by_label("Notes", exact=True).fill("Longer battery life")
    form.get_by_label("Firmware file", exact=True).set_input_files(
        {"name": "firmware.bin", "mimeType": "application/octet-stream",
         "buffer": make_test_image("2.1.0", 256 * 1024, platform="esp32")})
    form.get_by_role("button", name="Upload").click()
    expect(page.locator("#released")).to_contain_text("Released sensor 2.1.0 (256.0 KiB)")
    expect(page.locator("tr#release-sensor-2\\.1\\.0 .notes")).to_have_text("Longer battery life")
    expect(page.locator("tr#release-sensor-2\\.1\\.0 .firmware")).to_contain_text("ESP32")
    expect(page.locator("tr#release-sensor-2\\.1\\.0 .firmware")).to_contain_text("tinyota-test 2.1.0")
    assert server.service.store.get("sensor", "2.1.0").notes == "Longer battery life"

    page.get_by_role("link", name="install it from the fleet page").click()
    expect(page.locator("#live")).to_have_text("live")
    page.wait_for_selector("body[data-live='1']", state="attached")
    # Record every value the progress bars take, to see them move rather than jump to the end.
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver((changes) => changes.forEach((c) => {
            if (c.target.tagName === "PROGRESS" && !c.target.hidden) window.seen.push(c.target.value);
        }))
            .observe(document.getElementById("fleet"), {attributes: true, subtree: true, attributeFilter: ["value"]});
    }""")
    page.get_by_role("button", name="Install… on group sensors").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-title")).to_have_text("Install on group sensors?")
    expect(dialog.get_by_label("Release")).to_have_value("")  # latest, 2.1.0
    expect(dialog.get_by_label("Release").locator("option").first).to_have_text("latest (2.1.0)")
    dialog.get_by_role("button", name="Install").click()
    expect(dialog).to_be_hidden()
    for device in ("sensor-1", "sensor-2"):
        expect(row(page, device).locator('[data-field="attempt"]')).to_have_text("2.1.0: succeeded", timeout=30_000)
        expect(row(page, device).locator('[data-field="installed"]')).to_have_text("2.1.0")
    seen = page.evaluate("window.seen")
    assert len({v for v in seen if 0 < v < 100}) >= 3, f"the progress bars did not move: {seen}"
    expect(page.locator("#activity")).to_contain_text("2.0.0 → 2.1.0: succeeded")
    assert {a.state for a in server.call(server.service.registry.history, "sensor-2")} == {"succeeded"}


def test_rollback_selection_and_cancel_each_ask_first(live: Any, pages: Any) -> None:
    from playwright.sync_api import expect

    server = live.start()
    release(server.config, "sensor", "2.0.0")
    release(server.config, "sensor", "2.1.0")
    live.sim("sensor-1", "2.1.0", reboot_seconds=0.1)
    page = pages(server)
    open_live(page)
    expect(row(page, "sensor-1").locator('[data-field="online"]')).to_have_text("online")
    # Roll sensor-1 back to 2.0.0, after saying no once.
    install = row(page, "sensor-1").get_by_role("button", name="Install… on sensor-1")
    install.click()
    page.locator("#confirm").get_by_role("button", name="Back").click()
    expect(page.locator("#confirm")).to_be_hidden()
    assert server.view("sensor-1")["attempt"] is None  # nothing happens without confirmation
    install.click()
    page.locator("#confirm").get_by_label("Release").select_option("2.0.0")
    page.locator("#confirm").get_by_role("button", name="Install").click()
    expect(row(page, "sensor-1").locator('[data-field="attempt"]')).to_have_text("2.0.0: succeeded")
    expect(row(page, "sensor-1").locator('[data-field="installed"]')).to_have_text("2.0.0")
    # sensor-2 is offline: select it with kitchen-2, install, then cancel the pending update.
    row(page, "sensor-2").get_by_label("Select sensor-2").check()
    expect(page.locator("#selection-count")).to_have_text("1 selected")
    page.locator("#selection").get_by_role("button", name="Install…").click()
    page.locator("#confirm").get_by_role("button", name="Install").click()
    sensor2 = row(page, "sensor-2")
    expect(sensor2.locator('[data-field="attempt"]')).to_have_text("2.1.0: announced, waiting for the device")
    sensor2.get_by_role("button", name="Cancel the update of sensor-2").click()
    expect(page.locator("#confirm-title")).to_have_text("Cancel the pending update?")
    page.locator("#confirm").get_by_role("button", name="Cancel update").click()
    expect(sensor2.locator('[data-field="attempt"]')).to_have_text("2.1.0: cancelled")
    expect(sensor2.get_by_role("button", name="Cancel the update of sensor-2")).to_be_hidden()
    # The device page shows the same story as a history.
    page.goto("/devices/sensor-1")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#history tbody tr").first.locator('[data-field="state"]')).to_have_text("succeeded")
    expect(page.locator(".topics")).to_contain_text(f"{live.pre}/sensor-1/update")


def test_the_page_prints_the_servers_view_and_decides_nothing_itself(server: ServerThread, pages: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rule of a device's look is the server's (fleet/views.py). The server here says, for
    sensor-1, the opposite of what its raw fields would suggest: a script that derived a badge, a
    word, a button or a counter from those fields itself would show something else."""
    from playwright.sync_api import expect

    from tinyota_mqtt.fleet import events, views

    real_display, real_attempt = views.display, views.attempt_display

    def contrary(view: dict[str, Any]) -> dict[str, Any]:
        show = real_display(view)
        if view["id"] != "sensor-1":
            return show
        # Raw: online, idle on the target, nothing under way, in a group with an image.
        return {**show, "online": "offline", "outdated": True, "updating": True, "busy": True, "failed": True,
                "progress": 37, "attempt": f"server says {view['installed']}", "attempt_state": "failed",
                "classes": "device outdated busy failed offline", "installable": False,
                "held": "server says held", "free_space": "server says full", "kind": "server says kind"}

    def contrary_attempt(attempt: dict[str, Any]) -> dict[str, str]:
        return {**real_attempt(attempt), "activity": f"server words for {attempt['version']}", "kind": "bad",
                "outcome": "server outcome"}

    monkeypatch.setattr(views, "display", contrary)
    monkeypatch.setattr(events, "attempt_display", contrary_attempt)
    pre = server.config.mqtt.prefix
    release(server.config, "sensor", "2.0.0")
    server.call(server.service.tick)
    page = pages(server)
    open_live(page)
    status = json.dumps({"state": "idle", "version": "2.0.0", "free_space": 2_000_000}).encode()
    server.call(server.service.handle_message, f"{pre}/sensor-1/status", status, False)
    sensor = row(page, "sensor-1")
    expect(sensor.locator('[data-field="attempt"]')).to_have_text("server says 2.0.0")  # a live device event
    expect(sensor.locator('[data-field="online"]')).to_have_text("offline")
    expect(sensor.locator('[data-field="outdated"]')).to_be_visible()
    expect(sensor).to_have_class("device outdated busy failed offline")
    bar = sensor.locator("progress")
    expect(bar).to_be_visible()
    expect(bar).to_have_js_property("value", 37)
    expect(sensor.locator('button[data-action="cancel"]')).to_be_visible()
    expect(sensor.locator('button[data-action="install"]')).to_be_hidden()
    expect(sensor.locator('[data-field="kind"]')).to_have_text("server says kind")
    expect(page.locator('[data-count="failed"]')).to_have_text("1")
    expect(page.locator('[data-count="updating"]')).to_have_text("1")
    expect(page.locator('[data-count="online"]')).to_have_text("0")
    # An attempt's words come from the server too: the activity list prints them.
    server.call(server.service.install, ["sensor-2"], None)
    expect(page.locator("#activity li").first).to_contain_text("server words for")
    expect(page.locator("#activity li").first).to_have_class("bad")
    # The device page's live fields print the same view.
    device = pages(server)
    open_live(device, "/devices/sensor-1")
    server.call(server.service.handle_message, f"{pre}/sensor-1/status", status, False)
    expect(device.locator('dd[data-field="held"]')).to_have_text("server says held")
    expect(device.locator('dd[data-field="free_space"]')).to_have_text("server says full")
    expect(device.locator('dd[data-field="attempt"]')).to_have_text("server says 2.0.0")
    expect(device.locator('dd[data-field="kind"]')).to_have_text("server says kind")


def test_the_releases_page_prints_who_runs_what_as_the_server_says(server: ServerThread, pages: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """"Running on" is the server's (fleet/views.running), rendered and live. The server here
    says something no grouping of the device views would: a script that grouped them itself
    would show "sensor-1" after its report, one that ignored the stream would keep "kitchen-1"."""
    from playwright.sync_api import expect

    from tinyota_mqtt.fleet import views

    real = views.running

    def contrary(devices: Any) -> dict[str, dict[str, list[str]]]:
        found = real(devices)
        said = [f"{d} (server)" for d in found.get("sensor", {}).get("2.0.0", [])] or ["kitchen-1"]
        return {**found, "sensor": {**found.get("sensor", {}), "2.0.0": said}}

    monkeypatch.setattr(views, "running", contrary)
    release(server.config, "sensor", "2.0.0")
    server.call(server.service.tick)
    page = pages(server)
    open_live(page, "/releases")
    cell = page.locator('td[data-runs="sensor"][data-version="2.0.0"]')
    expect(cell).to_have_text("kitchen-1")
    status = json.dumps({"state": "idle", "version": "2.0.0"}).encode()
    server.call(server.service.handle_message, f"{server.config.mqtt.prefix}/sensor-1/status", status, False)
    expect(cell).to_have_text("sensor-1 (server)")


def test_upload_errors_are_shown_next_to_the_form(server: ServerThread, pages: Any) -> None:
    from playwright.sync_api import expect

    release(server.config, "kitchen", "1.0.0")
    page = pages(server)
    open_live(page, "/releases")
    form = page.locator("#upload")
    error = form.locator("#up-error")

    def upload(version: str, data: bytes) -> None:
        form.get_by_label("Version", exact=True).fill(version)
        form.get_by_label("Firmware file", exact=True).set_input_files(
            {"name": "fw.bin", "mimeType": "application/octet-stream", "buffer": data})
        form.get_by_role("button", name="Upload").click()

    upload("1.1.0", b"MZ\x90\x00 this is a Windows program")
    expect(error).to_be_visible()
    expect(error).to_contain_text("this is not an ESP firmware image")
    expect(error).to_contain_text("pass --force")
    upload("1.0.0", make_test_image("1.0.0"))
    expect(error).to_contain_text("kitchen 1.0.0 is already released")
    expect(error).to_contain_text("--replace")
    upload("1.2.0", make_test_image("1.3.0"))
    expect(error).to_contain_text("the image says it is version 1.3.0")
    form.get_by_label("Version", exact=True).fill("")
    form.get_by_role("button", name="Upload").click()
    expect(error).to_contain_text("enter the version")
    assert [r.version for r in server.service.store.releases("kitchen")] == ["1.0.0"]


def test_hostile_names_and_notes_show_as_text_in_the_browser(live: Any, pages: Any) -> None:
    from playwright.sync_api import expect

    server = live.start()
    release(server.config, "kitchen", "1.0.0", notes=HOSTILE_NOTE)
    server.call(server.service.tick)
    page = pages(server)
    open_live(page)
    kitchen2 = row(page, "kitchen-2")
    expect(kitchen2.locator("a[data-field='name']")).to_have_text(HOSTILE)
    # The JS path: a live update rewrites the name, the dialog and the activity log show it.
    live.says("kitchen-2", state="failed", version="0.9.0", id=server.view("kitchen-2")["attempt"]["id"],
              error=HOSTILE)
    expect(kitchen2.locator('[data-field="last_error"]')).to_have_text(HOSTILE)
    expect(page.locator("#activity")).to_contain_text(HOSTILE)
    kitchen2.get_by_role("button", name=f"Install… on {HOSTILE}").click()
    expect(page.locator("#confirm-title")).to_have_text(f"Install on {HOSTILE}?")
    page.locator("#confirm").get_by_role("button", name="Back").click()
    page.goto("/releases")
    expect(page.locator(".notes")).to_have_text(HOSTILE_NOTE)
    page.goto("/devices/kitchen-2")
    expect(page.locator("h1 [data-field='name']")).to_have_text(HOSTILE)
    for path in ("/", "/releases", "/devices/kitchen-2"):
        page.goto(path)
        assert page.evaluate("window.pwned") is None
        assert page.locator("img[src='x'], b").count() == 0


def test_a_cross_site_form_post_from_another_page_is_refused(server: ServerThread, pages: Any) -> None:
    release(server.config, "sensor", "2.0.0")
    page = pages(server)
    open_live(page)  # the admin is logged in, so the browser holds the credentials
    evil = (f'<form method="post" action="{server.url}/api/devices/sensor-1/install">'
            '<button>Win a prize</button></form>')
    page.route("http://evil.test/**", lambda route: route.fulfill(content_type="text/html", body=evil))
    page.goto("http://evil.test/")
    with page.expect_response(re.compile(r"/api/devices/sensor-1/install")) as answer:
        page.get_by_role("button", name="Win a prize").click()
    assert answer.value.status == 403
    assert server.view("sensor-1")["attempt"] is None


def test_reconnects_after_the_server_restarts(live: Any, pages: Any) -> None:
    from playwright.sync_api import expect

    server = live.start()
    page = pages(server)
    open_live(page)
    server.stop()
    expect(page.locator("#live")).to_have_attribute("data-state", "down")
    again = ServerThread(live.config_path).start()
    try:
        expect(page.locator("#live")).to_have_text("live")
        wait_until(lambda: again.service.ready, 10, "the new server to connect")
        live.says("sensor-2", state="idle", version="7.7.7")
        expect(row(page, "sensor-2").locator('[data-field="installed"]')).to_have_text("7.7.7")
    finally:
        again.stop()


def test_phone_screen_and_dark_mode(server: ServerThread, pages: Any) -> None:
    from playwright.sync_api import expect

    release(server.config, "kitchen", "1.0.0", notes="a note long enough to wrap on a phone " * 4)
    phone = pages(server, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                  color_scheme="dark")
    for path in ("/", "/releases", "/devices/kitchen-1"):
        open_live(phone, path)
        width = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{path} scrolls sideways on a phone: {width}"
    phone.goto("/")
    expect(row(phone, "kitchen-1").get_by_role("button", name="Install… on Kitchen ceiling")).to_be_visible()
    background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(int(c) for c in re.findall(r"\d+", background)[:3]) < 120, background  # dark


SCREENSHOT_DEVICES = """\
  kitchen-1: {{group: kitchen-lights, password: pw-kitchen-1, name: Kitchen ceiling}}
  kitchen-2: {{group: kitchen-lights, password: pw-kitchen-2, name: Kitchen counter}}
  kitchen-3: {{group: kitchen-lights, password: pw-kitchen-3, name: Pantry}}
  sensor-1: {{group: sensors, password: pw-sensor-1, name: Living room}}
  sensor-2: {{group: sensors, password: pw-sensor-2, name: Bedroom}}
  sensor-3: {{group: sensors, password: pw-sensor-3, name: Attic}}
  loner: {{password: pw-loner, name: Workbench}}
"""


def test_fleet_screenshot(live: Any, pages: Any, tmp_path: Path) -> None:
    """The picture in docs/dashboard.png: a fleet in the middle of an update."""
    from playwright.sync_api import expect

    server = live.start(CONFIG.split("devices:")[0] + "devices:\n" + SCREENSHOT_DEVICES)
    release(server.config, "kitchen", "1.1.0", notes="Faster boot")
    release(server.config, "sensor", "2.0.0")
    release(server.config, "sensor", "2.1.0", notes="Longer battery life")
    for device, version in (("kitchen-1", "1.0.0"), ("kitchen-2", "1.1.0"), ("kitchen-3", "1.0.0"),
                            ("sensor-1", "2.0.0"), ("sensor-2", "2.0.0"), ("sensor-3", "2.0.0"),
                            ("loner", "0.4.2"), ("garage-door", "0.9.1")):
        live.says(device, state="idle", version=version, platform="esp32" if "sensor" in device else "esp8266",
                  free_space=1_044_480)
        live.probe.publish(f"{live.pre}/{device}/availability", "online", retain=True)
    live.probe.publish(f"{live.pre}/kitchen-3/availability", "offline", retain=True)
    wait_until(lambda: server.view("garage-door")["installed"] == "0.9.1", 10, "the fleet to report")
    server.call(server.service.tick)
    page = pages(server, viewport={"width": 1280, "height": 860}, color_scheme="light")
    open_live(page)
    # An update of the sensors, under way while the page watches.
    server.call(server.service.install, ["sensor-1", "sensor-2", "sensor-3"])
    ids = {d: server.view(d)["attempt"]["id"] for d in ("kitchen-1", "sensor-1", "sensor-2", "sensor-3")}
    live.says("kitchen-1", state="downloading", version="1.0.0", progress=20, id=ids["kitchen-1"])
    live.says("sensor-1", state="downloading", version="2.0.0", progress=30, id=ids["sensor-1"])
    live.says("sensor-1", state="idle", version="2.1.0", platform="esp32")
    live.says("sensor-2", state="downloading", version="2.0.0", progress=64, id=ids["sensor-2"])
    live.says("sensor-3", state="downloading", version="2.0.0", progress=12, id=ids["sensor-3"])
    live.says("sensor-3", state="failed", version="2.0.0", id=ids["sensor-3"], error="MD5 check failed")
    live.says("kitchen-1", state="downloading", version="1.0.0", progress=72, id=ids["kitchen-1"])
    expect(row(page, "sensor-3").locator('[data-field="attempt"]')).to_contain_text("failed")
    expect(row(page, "kitchen-1").locator("progress")).to_have_js_property("value", 72)
    expect(row(page, "garage-door")).to_be_visible()
    # What the picture must show: every device, each in the state the fleet is in.
    attempts = {"kitchen-1": "downloading 72%", "sensor-1": "succeeded", "sensor-2": "downloading 64%",
                "sensor-3": "failed"}
    for device, text in attempts.items():
        expect(row(page, device).locator('[data-field="attempt"]')).to_contain_text(text)
    installed = {"kitchen-1": "1.0.0", "kitchen-2": "1.1.0", "kitchen-3": "1.0.0", "sensor-1": "2.1.0",
                 "sensor-2": "2.0.0", "sensor-3": "2.0.0", "loner": "0.4.2", "garage-door": "0.9.1"}
    for device, version in installed.items():
        expect(row(page, device).locator('[data-field="installed"]')).to_have_text(version)
    expect(row(page, "kitchen-3").locator('[data-field="online"]')).to_have_text("offline")
    expect(row(page, "kitchen-2").locator('[data-field="online"]')).to_have_text("online")
    expect(page.locator("tr[data-device]")).to_have_count(len(installed))
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1280 and height >= 860  # the viewport, the whole page
    for device in installed:  # and every row lies inside the picture, none cut off or hidden
        box = row(page, device).bounding_box()
        assert box is not None and box["height"] > 0, device
        scroll = page.evaluate("window.scrollY")
        assert box["y"] + scroll >= 0 and box["y"] + scroll + box["height"] <= height, device
    if os.environ.get("TINYOTA_UPDATE_SCREENSHOT"):
        (ROOT / "docs" / "dashboard.png").write_bytes(shot.read_bytes())


def test_open_tabs_share_one_event_stream(live: Any, pages: Any) -> None:
    """Six tabs would use up the browser's six connections per server: they share one stream."""
    from playwright.sync_api import expect

    server = live.start()
    first = pages(server)
    open_live(first)
    others = [first.context.new_page() for _ in range(3)]
    for tab in others:
        open_live(tab)
    assert len(server.service.events) == 1  # one stream for four tabs
    server.call(lambda: server.service.reports.on_availability("kitchen-2", True, live=True))
    for tab in [first, *others]:
        expect(row(tab, "kitchen-2").locator('[data-field="online"]')).to_have_text("online")
    first.close()  # the tab holding the stream goes: another takes it over, with a fresh snapshot
    wait_until(lambda: len(server.service.events) == 1, 15, "one stream again")
    server.call(lambda: server.service.reports.on_availability("kitchen-2", False, live=True))
    for tab in others:  # only a new stream can have brought this
        expect(row(tab, "kitchen-2").locator('[data-field="online"]')).to_have_text("offline")
    assert len(server.service.events) == 1
