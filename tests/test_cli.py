"""The ``tinyota`` command as a user runs it: exit codes, messages, and the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Mosquitto, release, tinyota, wait_until, write_config
from tinyota_mqtt.core.image import make_test_image
from tinyota_mqtt.core.passwords import Password


def test_check_config_ok_and_error(tmp_path: Path) -> None:
    good = write_config(tmp_path)
    out = tinyota("check-config", "-c", str(good))
    assert out.returncode == 0 and out.stdout.startswith("ok: ")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  kitchen-1:\n    grup: x\n")
    out = tinyota("check-config", "-c", str(bad))
    assert out.returncode == 2
    assert "[bad.yaml:3] devices.kitchen-1: 'grup' is not a valid option. Did you mean 'group'?" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_config_show_masks_secrets(tmp_path: Path) -> None:
    out = tinyota("check-config", "--show", "-c", str(write_config(tmp_path)))
    assert out.returncode == 0
    assert "admin-secret" not in out.stdout and "pw-kitchen-1" not in out.stdout and "***" in out.stdout


def test_the_repository_sample_config_is_valid() -> None:
    out = tinyota("check-config", cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr


def test_help_speaks_to_users_and_covers_every_option() -> None:
    import argparse

    from tinyota_mqtt.cli import build_parser

    out = tinyota("--help")
    assert out.returncode == 0
    description = out.stdout.split("\n\n")[1]
    assert description.startswith("Private firmware updates for your ESP8266 and ESP32 devices")
    assert "exit status:" in out.stdout and "2  usage, config or environment error" in out.stdout
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = {c.dest: c.help for c in commands._choices_actions}
    for name, sub in commands.choices.items():
        assert listed.get(name), f"{name} has no help line"
        assert any(a.option_strings == ["-c", "--config"] for a in sub._actions), f"{name} takes no -c"
        for action in sub._actions:
            assert action.help, f"{name} {action.dest} has no help"


def test_hash_password_from_stdin() -> None:
    out = subprocess.run([sys.executable, "-m", "tinyota_mqtt", "hash-password"], input="hunter2\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert Password.parse(out.stdout.strip()).matches("hunter2")


def test_release_and_releases_without_a_server(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(make_test_image("1.4.0", 5000))
    out = tinyota("release", str(fw), "--image", "kitchen", "--version", "1.4.0", "--notes", "hi", "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert "released kitchen 1.4.0 into" in out.stdout and "5000 bytes" in out.stdout
    # Nothing runs, so nothing claims a server announced it.
    assert "no server answers" in out.stderr and "announces it once it runs" in out.stderr
    again = tinyota("release", str(fw), "--image", "kitchen", "--version", "1.4.0", "-c", str(config))
    assert again.returncode == 2 and "already released" in again.stderr and "--replace" in again.stderr
    wrong = tinyota("release", str(fw), "--image", "kichen", "--version", "1.5.0", "-c", str(config))
    assert wrong.returncode == 2 and "not in" in wrong.stderr
    missing = tinyota("release", str(tmp_path / "nope.bin"), "--image", "kitchen", "--version", "1.5.0",
                      "-c", str(config))
    assert missing.returncode == 2 and "no firmware file" in missing.stderr and "Traceback" not in missing.stderr
    listing = tinyota("releases", "--json", "-c", str(config))
    assert [(r["image"], r["version"], r["notes"]) for r in json.loads(listing.stdout)] == [("kitchen", "1.4.0", "hi")]
    assert listing.stderr.count("\n") == 1 and "read-only" in listing.stderr  # says once where it looked
    table = tinyota("releases", "-c", str(config)).stdout.splitlines()
    assert table[0].split()[:3] == ["IMAGE", "VERSION", "SIZE"] and table[1].split()[:3] == ["kitchen", "1.4.0", "5000"]


def test_commands_that_need_the_server_say_so(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    out = tinyota("install", "kitchen-1", "-c", config, "--server", "http://127.0.0.1:9")
    assert out.returncode == 2 and "no server answers at http://127.0.0.1:9" in out.stderr
    for command in (("install", "kitchen-1"), ("cancel", "kitchen-1"), ("forget", "--unknown")):
        out = tinyota(*command, "-c", config)
        assert out.returncode == 2 and f"{command[0]} needs it" in out.stderr and "serve" in out.stderr
        assert "Traceback" not in out.stderr
    # Reading needs no server: before the first start there is just the config.
    out = tinyota("status", "-c", config)
    assert out.returncode == 0 and "no state file" in out.stderr and "move" not in out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == ["kitchen-1", "kitchen-2", "sensor-1", "loner"]


def test_simulate_command_brings_devices_online(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                servers: Any) -> None:
    config = write_config(tmp_path, mqtt=broker.url, prefix=prefix)
    server = servers(config)
    release(server.config, "kitchen", "1.1.0")
    server.call(server.service.tick)
    proc = subprocess.Popen([sys.executable, "-m", "tinyota_mqtt", "simulate", "--devices", "2", "--group",
                             "kitchen-lights", "--version", "1.0.0", "--duration", "60", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: all((server.view(d)["attempt"] or {}).get("state") == "succeeded"
                               for d in ("kitchen-1", "kitchen-2")), 30, "the simulated devices to update")
        assert server.view("kitchen-1")["installed"] == "1.1.0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_simulate_refuses_more_devices_than_configured(tmp_path: Path) -> None:
    out = tinyota("simulate", "--devices", "50", "-c", str(write_config(tmp_path)), "--duration", "1")
    assert out.returncode == 2 and "asked for 50 simulated devices" in out.stderr


def test_serve_with_mqtt_5(tmp_path: Path, broker: Mosquitto, prefix: str, servers: Any) -> None:
    text = write_config(tmp_path, mqtt=broker.url, prefix=prefix).read_text()
    (tmp_path / "config.yaml").write_text(text.replace("  prefix:", '  protocol: "5"\n  prefix:'))
    server = servers(tmp_path / "config.yaml")
    wait_until(lambda: server.service.ready, 10, "an MQTT 5 session")


def test_simulate_takes_passwords_for_hashed_devices(tmp_path: Path, broker: Mosquitto, prefix: str,
                                                     servers: Any) -> None:
    from tinyota_mqtt.core.passwords import hash_password

    text = write_config(tmp_path, mqtt=broker.url, prefix=prefix).read_text()
    hashed = hash_password("s3cret", iterations=1000)
    (tmp_path / "config.yaml").write_text(text.replace("password: pw-sensor-1", f"password: '{hashed}'"))
    config = tmp_path / "config.yaml"
    refused = tinyota("simulate", "--devices", "1", "--group", "sensors", "--duration", "1", "-c", str(config))
    assert refused.returncode == 2 and "--password-file" in refused.stderr
    server = servers(config)
    secrets = tmp_path / "passwords"
    secrets.write_text("# id=password\nsensor-1=s3cret\n")
    proc = subprocess.Popen([sys.executable, "-m", "tinyota_mqtt", "simulate", "--group", "sensors",
                             "--password-file", str(secrets), "--version", "3.0.0", "--duration", "60",
                             "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: server.view("sensor-1")["installed"] == "3.0.0", 20, "the hashed device online")
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
        print(output)


def test_the_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """The README's main job, end to end: every device of the sample config confirmed."""
    import shutil

    root = Path(__file__).parent.parent
    shutil.copy(root / "config.yaml", tmp_path / "config.yaml")
    from tests.conftest import free_port

    text = (tmp_path / "config.yaml").read_text().replace("embedded_port: 1884", f"embedded_port: {free_port()}")
    (tmp_path / "config.yaml").write_text(text)
    out = tinyota("demo", "--once", "--port", str(free_port()), "-c", str(tmp_path / "config.yaml"), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every simulated device confirmed its update" in out.stdout
    for device in ("kitchen-1", "kitchen-2", "sensor-1"):
        assert any(line.split()[:3] == [device, "1.1.0", "succeeded"] for line in out.stdout.splitlines())


def test_release_to_a_remote_server_through_the_api(tmp_path: Path, servers: Any) -> None:
    from tinyota_mqtt.runner import Overrides

    server = servers(write_config(tmp_path / "server"), Overrides(mqtt_url="none"))
    laptop = write_config(tmp_path / "laptop")  # the admin credentials; its own store stays empty
    fw = tmp_path / "fw.bin"
    fw.write_bytes(make_test_image("2.0.0", 70_000, platform="esp32"))
    args = ("release", str(fw), "--image", "sensor", "--version", "2.0.0", "--notes", "remote",
            "--server", server.url, "-c", str(laptop))
    out = tinyota(*args)
    assert out.returncode == 0, out.stderr
    assert f"released sensor 2.0.0 on {server.url}: 70000 bytes" in out.stdout
    assert server.service.store.get("sensor", "2.0.0").notes == "remote"
    assert not (tmp_path / "laptop" / "firmware").exists()
    again = tinyota(*args)
    assert again.returncode == 2 and "already released" in again.stderr and "--replace" in again.stderr
    assert "answered 409" in again.stderr


def test_building_the_package_prints_no_warnings(tmp_path: Path) -> None:
    """setuptools deprecates the old license table and warns about editable import hooks: none of it here."""
    root = Path(__file__).parent.parent
    for args in (["wheel", "--no-deps", "-w", str(tmp_path), str(root)],):
        out = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        lines = [line for line in (out.stdout + out.stderr).splitlines()
                 if "warning" in line.lower() and "Location 'file:" not in line]  # pip's own index notice
        assert lines == [], "\n".join(lines)
    assert len(list(tmp_path.glob("tinyota_mqtt-*.whl"))) == 1
