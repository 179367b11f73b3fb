"""The CLI against a running server: one path for every command, and what it says when things go wrong.

Every command runs as a subprocess, as a user types it; the servers are real (in this process on
a real socket, or ``tinyota serve`` as a child), and so are the broker and the files.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Mosquitto, Probe, free_port, tinyota, wait_until, write_config
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.core.passwords import Password
from tinyota_mqtt.runner import Overrides


def _json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_status_history_releases_see_the_running_server_then_the_files(tmp_path: Path, servers: Any) -> None:
    """The demo's case: the CLI's config keeps its files elsewhere, yet it sees the server's state."""
    server = servers(write_config(tmp_path / "server"), Overrides(mqtt_url="none"))
    mine = str(write_config(tmp_path / "cli", port=server.server.port))  # same server, other files
    fw = tmp_path / "fw.bin"
    fw.write_bytes(make_test_image("1.4.0", 70_000))
    out = tinyota("release", str(fw), "--image", "kitchen", "--version", "1.4.0", "-c", mine)
    assert out.returncode == 0, out.stderr
    assert f"released kitchen 1.4.0 on {server.url}" in out.stdout
    assert not (tmp_path / "cli" / "firmware").exists()  # it went to the server, not to my store

    wait_until(lambda: server.view("kitchen-1")["attempt"], 10, "the automatic group's announcement")
    status = tinyota("status", "--json", "-c", mine)
    views = {v["id"]: v for v in _json(status)}
    assert "note" not in status.stderr  # the server answered: nothing to explain
    assert views["kitchen-1"]["target"] == "1.4.0" and views["kitchen-1"]["attempt"]["state"] == "pending"
    history = _json(tinyota("history", "kitchen-1", "--json", "-c", mine))
    assert [(a["version"], a["state"]) for a in history] == [("1.4.0", "pending")]
    assert [r["version"] for r in _json(tinyota("releases", "--json", "-c", mine))] == ["1.4.0"]
    assert not (tmp_path / "cli" / "state.sqlite").exists()

    # A hold, a pin and a refused download each show in the table, the error with its age.
    assert tinyota("cancel", "loner", "-c", mine).returncode == 0
    assert tinyota("install", "kitchen-2", "--version", "1.4.0", "-c", mine).returncode == 0
    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=10)
    conn.request("GET", "/fw/kitchen/1.4.0.bin", headers={
        "Authorization": basic_header("kitchen-1", "pw-kitchen-1"), "x-ESP8266-free-space": "1000"})
    assert conn.getresponse().status == 403
    conn.close()
    table = {line.split()[0]: line for line in tinyota("status", "-c", mine).stdout.splitlines()}
    assert table["DEVICE"].split()[-3:] == ["HOLD", "LAST", "ERROR"]
    assert "held (cancelled)" in table["loner"]
    assert "pinned 1.4.0" in table["kitchen-2"] and "held" not in table["kitchen-2"]
    assert re.search(r"\ds ago: .*free space", table["kitchen-1"]), table["kitchen-1"]

    server.stop()
    state = tmp_path / "server" / "state.sqlite"
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    server_config = str(tmp_path / "server" / "config.yaml")
    offline = tinyota("status", "--json", "-c", server_config)
    views = {v["id"]: v for v in _json(offline)}
    assert "no server answers" in offline.stderr and "read-only" in offline.stderr
    assert len(offline.stderr.strip().splitlines()) == 1
    assert views["kitchen-1"]["attempt"]["state"] == "failed" and views["kitchen-1"]["target"] == "1.4.0"
    assert views["loner"]["held"] is True and views["kitchen-2"]["pinned"] == "1.4.0"
    assert views["kitchen-1"]["last_error_at"] is not None
    assert [(a["version"], a["state"]) for a in _json(tinyota("history", "kitchen-1", "--json", "-c", server_config))] \
        == [("1.4.0", "failed")]
    assert [r["version"] for r in _json(tinyota("releases", "--json", "-c", server_config))] == ["1.4.0"]
    # Read-only for real: the file is unchanged and SQLite made nothing beside it.
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in state.parent.iterdir() if p.name.startswith("state")) == ["state.sqlite"]


def test_offline_reads_never_build_a_service(tmp_path: Path, servers: Any) -> None:
    """A signing key the reader may not load and a state file it may not write: status still works."""
    config = write_config(tmp_path)
    server = servers(config, Overrides(mqtt_url="none"))
    server.stop()
    text = config.read_text().replace("  admin:", f"  signing_key: {tmp_path / 'no-such-key.pem'}\n  admin:")
    config.write_text(text)
    out = tinyota("status", "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert "no-such-key" not in out.stderr and "move" not in out.stderr


def test_unknown_ids_are_errors_with_a_sentence(tmp_path: Path, servers: Any) -> None:
    config = str(write_config(tmp_path))
    for running in (False, True):
        if running:
            servers(Path(config), Overrides(mqtt_url="none"))
        out = tinyota("history", "nosuch", "-c", config)
        assert out.returncode == 2, (running, out.stdout)
        assert "no device 'nosuch'" in out.stderr and "Traceback" not in out.stderr
        assert out.stdout == ""
        out = tinyota("releases", "--image", "nosuch", "-c", config)
        assert out.returncode == 2 and "no image 'nosuch'" in out.stderr
    out = tinyota("install", "nosuch", "-c", config)
    assert out.returncode == 2 and "no device 'nosuch'" in out.stderr


def _held_port() -> tuple[socket.socket, int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, holder.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_busy_port_is_two_lines_and_exit_2(tmp_path: Path, command: str) -> None:
    config = str(write_config(tmp_path))
    holder, busy = _held_port()
    try:
        extra = ("--once",) if command == "demo" else ("--mqtt", "none")
        out = tinyota(command, "--port", str(busy), *extra, "-c", config)
        assert out.returncode == 2
        assert out.stderr.splitlines() == [
            f"error: cannot listen on 127.0.0.1:{busy}: something else already uses that port",
            f"  hint: stop it (`ss -ltnp 'sport = :{busy}'` shows what), or pass --port"]
        # The embedded broker's port, too: named with its own option.
        mqtt = ("--mqtt", "embedded") if command == "serve" else ("--once",)
        out = tinyota(command, "--port", str(free_port()), "--mqtt-port", str(busy), *mqtt, "-c", config)
        assert out.returncode == 2 and len(out.stderr.splitlines()) == 2, out.stderr
        assert f"127.0.0.1:{busy}" in out.stderr and "--mqtt-port" in out.stderr
        debug = tinyota("--debug", command, "--port", str(busy), *extra, "-c", config)
        assert debug.returncode == 2 and "Traceback" in debug.stderr  # --debug shows what lies behind
    finally:
        holder.close()


def test_release_over_the_api_reports_the_servers_409_not_a_broken_pipe(tmp_path: Path, servers: Any) -> None:
    """The server refuses before reading the body; an 8 MiB upload used to die of "Connection reset"."""
    server = servers(write_config(tmp_path / "server"), Overrides(mqtt_url="none"))
    laptop = str(write_config(tmp_path / "laptop"))
    fw = tmp_path / "fw.bin"
    fw.write_bytes(make_test_image("2.0.0", 8 * 1024 * 1024, platform="esp32"))
    args = ("release", str(fw), "--image", "sensor", "--version", "2.0.0", "--server", server.url, "-c", laptop)
    assert tinyota(*args).returncode == 0
    for _ in range(3):  # it failed 3 times in 4 on a loaded machine; every try must be right
        again = tinyota(*args)
        assert again.returncode == 2
        assert "sensor 2.0.0 is already released" in again.stderr and "answered 409" in again.stderr
        assert "reset" not in again.stderr and "pipe" not in again.stderr.lower()


def test_wrong_admin_password_is_explained(tmp_path: Path, servers: Any) -> None:
    server = servers(write_config(tmp_path / "server"), Overrides(mqtt_url="none"))
    other = write_config(tmp_path / "other", port=server.server.port)
    other.write_text(other.read_text().replace("admin-secret", "not-it"))
    out = tinyota("status", "-c", str(other))
    assert out.returncode == 2 and "refused the admin login" in out.stderr and "answered 401" in out.stderr


def test_json_into_head_has_no_traceback(tmp_path: Path) -> None:
    """More output than a pipe holds, so the reader's exit really does break the pipe."""
    devices = "".join(f"  dev-{i}: {{group: kitchen-lights, password: pw-{i}}}\n" for i in range(1500))
    config = write_config(tmp_path)
    config.write_text(config.read_text() + devices)
    out = subprocess.run(f"{sys.executable} -m tinyota_mqtt status --json -c {config} | head -c 10",
                         shell=True, capture_output=True, text=True, timeout=120)
    assert out.stdout == "[\n  {\n    \""[:10]
    # Only the note that no server answered; not a word about the pipe.
    assert [line for line in out.stderr.splitlines() if not line.startswith("note: ")] == [], out.stderr


def test_init_writes_a_config_that_passes_check_config_and_serves(tmp_path: Path, processes: Any) -> None:
    target = tmp_path / "home" / "config.yaml"
    target.parent.mkdir()
    port = free_port()
    out = tinyota("init", "-c", str(target), "--lan-address", "192.168.1.10", "--port", str(port),
                  "--broker", "mqtt://192.168.1.2:1883", "--device", "garage-door", "--platform", "esp32")
    assert out.returncode == 0, out.stderr
    assert target.stat().st_mode & 0o077 == 0  # it holds passwords
    written = yaml.safe_load(target.read_text())
    admin, device = written["server"]["admin"]["password"], written["devices"]["garage-door"]["password"]
    assert len(admin) >= 16 and len(device) >= 16 and admin != device
    assert admin not in out.stdout + out.stderr and device not in out.stdout + out.stderr
    assert written["server"]["public_url"] == f"http://192.168.1.10:{port}"
    assert written["mqtt"]["url"] == "mqtt://192.168.1.2:1883"
    check = tinyota("check-config", "-c", str(target))
    assert check.returncode == 0 and check.stdout.startswith("ok: ") and "1 devices" in check.stdout
    again = tinyota("init", "-c", str(target))
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrites without --force
    # The generated admin account works: a server from this file answers the CLI.
    processes(target, "--mqtt", "none")
    status = tinyota("status", "--json", "-c", str(target))
    assert [v["id"] for v in _json(status)] == ["garage-door"] and "note" not in status.stderr
    bad = tinyota("init", "-c", str(tmp_path / "x.yaml"), "--device", "bad id", "--yes")
    assert bad.returncode == 2 and "letters, digits" in bad.stderr


def test_passwords_stay_off_the_command_line(tmp_path: Path) -> None:
    refused = tinyota("hash-password", "hunter2")
    assert refused.returncode == 2 and "shows in `ps`" in refused.stderr
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    out = tinyota("hash-password", "--password-file", str(secret), "-c", "ignored.yaml")
    assert out.returncode == 0, out.stderr
    assert Password.parse(out.stdout.strip()).matches("hunter2")
    warned = tinyota("simulate", "--password", "sensor-1=x", "--devices", "9", "-c", str(write_config(tmp_path)))
    assert "shows in `ps`" in warned.stderr


def _retained_reports(url: str, prefix: str, device: str) -> list[bytes]:
    """What a new subscriber gets retained: all of it arrives before a marker published after subscribing."""
    fresh = Probe(url).wait_connected().subscribe(f"{prefix}/{device}/#")
    try:
        fresh.publish(f"{prefix}/{device}/marker", "x")
        wait_until(lambda: fresh.received(f"{prefix}/{device}/marker"), 10, "the marker")
        return [m.payload for m in fresh.received(f"{prefix}/{device}/status") if m.payload]
    finally:
        fresh.client.disconnect()
        fresh.client.loop_stop()


def test_forget_drops_an_unknown_device_and_its_retained_report(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                               servers: Any) -> None:
    config = str(write_config(tmp_path, mqtt=broker.url, prefix=prefix))
    server = servers(Path(config))
    wait_until(lambda: server.service.mqtt_connected, 10, "the server's MQTT session")
    probe = Probe(broker.url).wait_connected()
    probe.publish(f"{prefix}/stray-1/status", json.dumps({"state": "idle", "version": "0.1.0"}), retain=True)
    wait_until(lambda: any(v["id"] == "stray-1" for v in _json(tinyota("status", "--json", "-c", config))),
               20, "the stray device to show")
    assert _retained_reports(broker.url, prefix, "stray-1") != []
    refused = tinyota("forget", "kitchen-1", "-c", config)
    assert refused.returncode == 2 and "is in the config" in refused.stderr
    out = tinyota("forget", "--unknown", "-c", config)
    assert out.returncode == 0 and "forgot 1 device(s): stray-1" in out.stdout
    assert "stray-1" not in [v["id"] for v in _json(tinyota("status", "--json", "-c", config))]
    # Its retained report is gone from the broker too, so a restart does not bring it back.
    wait_until(lambda: _retained_reports(broker.url, prefix, "stray-1") == [], 10, "the retained report cleared")
    assert tinyota("history", "stray-1", "-c", config).returncode == 2


def test_a_user_who_may_only_read_the_files_reads_them(processes: Any) -> None:
    """kill -9 leaves the state file with its -wal and -shm; another user, read-only, still sees it."""
    import os
    import shutil
    import tempfile

    # pytest's tmp_path is private to us (0700); this user must be able to look in.
    root = Path(tempfile.mkdtemp(prefix="tinyota-ro-"))
    try:
        root.chmod(0o755)
        config = write_config(root, port=free_port())
        config.chmod(0o644)
        server = processes(config, "--mqtt", "none")
        fw = root / "fw.bin"
        fw.write_bytes(make_test_image("2.0.0", 70_000, platform="esp32"))
        assert tinyota("release", str(fw), "--image", "sensor", "--version", "2.0.0", "-c", str(config)).returncode == 0
        assert tinyota("install", "sensor-1", "-c", str(config)).returncode == 0
        wait_until(lambda: (root / "state.sqlite").exists(), 10, "the state file")
        wait_until(lambda: "2.0.0" in tinyota("history", "sensor-1", "-c", str(config)).stdout, 10,
                   "the attempt on disk")  # the API flushes an install before answering
        server.kill()
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        as_reader: tuple[str, ...] = ()
        if os.geteuid() == 0:  # root reads anything: be someone else
            as_reader = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        else:
            root.chmod(0o555)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*as_reader, sys.executable, "-m", "tinyota_mqtt", *args, "-c", str(config)],
                                  capture_output=True, text=True, timeout=60, cwd="/")

        out = run("status", "--json")
        assert out.returncode == 0, out.stderr
        views = {v["id"]: v for v in json.loads(out.stdout)}
        assert views["sensor-1"]["attempt"]["version"] == "2.0.0" and views["sensor-1"]["target"] == "2.0.0"
        assert "read-only" in out.stderr and "mv " not in out.stderr and "move" not in out.stderr
        if as_reader:
            (root / "state.sqlite").chmod(0o600)
            denied = run("status")
            assert denied.returncode == 2 and "cannot read the state file" in denied.stderr
            assert "mv " not in denied.stderr and "Traceback" not in denied.stderr
    finally:
        root.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_the_running_demo_says_how_to_reach_it_and_the_cli_sees_it(tmp_path: Path) -> None:
    """The issue's first complaint: `tinyota status` could not see the running demo (var/demo/)."""
    import shutil
    import signal
    import threading

    root = Path(__file__).parent.parent
    config = tmp_path / "config.yaml"
    shutil.copy(root / "config.yaml", config)
    port, mqtt_port = free_port(), free_port()
    # The user's config names the port the demo runs on, so plain `status -c config.yaml` finds it.
    config.write_text(config.read_text().replace("8000", str(port)).replace("embedded_port: 1884",
                                                                             f"embedded_port: {mqtt_port}"))
    proc = subprocess.Popen([sys.executable, "-m", "tinyota_mqtt", "demo", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    def pump() -> None:
        for line in proc.stdout or []:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        hint = wait_until(lambda: next((x for x in lines if x.startswith("from another terminal:")), None),
                          120, "the demo to say how to reach it")
        assert f"status -c {config}" in hint and "--server" not in hint
        out = tinyota("status", "--json", "-c", str(config))
        views = {v["id"]: v for v in _json(out)}
        assert "note" not in out.stderr  # the demo answered, not the (empty) var/ of the config
        assert {d: views[d]["installed"] for d in ("kitchen-1", "kitchen-2", "sensor-1")} == \
            {"kitchen-1": "1.1.0", "kitchen-2": "1.1.0", "sensor-1": "1.1.0"}
        history = _json(tinyota("history", "sensor-1", "--json", "-c", str(config)))
        assert [(a["version"], a["state"]) for a in history][:1] == [("1.1.0", "succeeded")]
        assert not (tmp_path / "var" / "tinyota.sqlite").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
