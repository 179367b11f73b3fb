"""The ESP client's host build: unit tests of the portable core and the sketch check.

Builds esp_client/host once per session with its Makefile and runs what it produced. A
missing tool is a failure that names the Debian package, never a silent skip. The
end-to-end tests against the Python server come with the server's MQTT side.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "esp_client" / "host"
BUILD = HOST / "build"


def _pkg_config_has(name: str) -> bool:
    if shutil.which("pkg-config") is None:
        return False
    return subprocess.run(["pkg-config", "--exists", name], check=False).returncode == 0


def _tool(name: str) -> Callable[[], bool]:
    return lambda: shutil.which(name) is not None


def _library(name: str) -> Callable[[], bool]:
    return lambda: _pkg_config_has(name)


def _header(path: str) -> Callable[[], bool]:
    return lambda: Path(path).exists()


# (what is checked, how, the Debian package that provides it)
PREREQUISITES: list[tuple[str, Callable[[], bool], str]] = [
    ("g++", _tool("g++"), "g++"),
    ("make", _tool("make"), "make"),
    ("pkg-config", _tool("pkg-config"), "pkg-config"),
    ("mosquitto.h", _library("libmosquitto"), "libmosquitto-dev"),
    ("curl/curl.h", _library("libcurl"), "libcurl4-openssl-dev"),
    # The signature verifier: BearSSL as in the ESP8266 core, mbedTLS as in arduino-esp32.
    ("bearssl.h", _header("/usr/include/bearssl.h"), "libbearssl-dev"),
    ("mbedtls/ecdsa.h", _header("/usr/include/mbedtls/ecdsa.h"), "libmbedtls-dev"),
]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env)


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def host_build() -> Path:
    missing = [f"{what} (apt-get install {package})" for what, present, package in PREREQUISITES if not present()]
    if missing:
        pytest.fail("the ESP host build needs: " + ", ".join(missing), pytrace=False)
    result = _run(["make", "-C", str(HOST), "-j4"], timeout=600)
    if result.returncode != 0:
        pytest.fail("make -C esp_client/host failed:\n" + _explain(result), pytrace=False)
    return BUILD


def test_unit_tests_pass(host_build: Path) -> None:
    result = _run([str(host_build / "unit_tests")], timeout=300)
    assert result.returncode == 0, _explain(result)
    summary = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"(\d+) passed, 0 failed", summary)
    assert match, f"unexpected summary line: {summary!r}\n" + _explain(result)
    assert int(match.group(1)) >= 50, "far fewer unit tests than expected ran"


def test_unit_tests_pass_with_the_esp32s_mbedtls(host_build: Path) -> None:
    # Same tests, the verifier built on mbedTLS 2.28 (arduino-esp32 2.0.x's line) as gnu++11.
    result = _run(["make", "-C", str(HOST), "test-mbedtls"], timeout=600)
    assert result.returncode == 0, _explain(result)
    assert re.search(r"^\d+ passed, 0 failed$", result.stdout, re.MULTILINE), _explain(result)
    assert "-DTINYOTA_P256_MBEDTLS" in result.stdout or (HOST / "build" / "unit_tests_mbedtls").exists()


@pytest.mark.timeout(330)  # its own bound is the make's 300 s: three cores' worth of g++ on a cold cache
def test_sketch_compiles_against_the_core_shims(host_build: Path) -> None:
    result = _run(["make", "-C", str(HOST), "sketch-check"], timeout=300)
    assert result.returncode == 0, _explain(result)
    for core in ("ESP8266 core 3.1.x", "ESP32 core 2.0.x", "ESP32 core 3.x"):
        assert f"sketch-check {core}: ok" in result.stdout, _explain(result)


def test_device_program_is_built_and_explains_itself(host_build: Path) -> None:
    device = host_build / "tinyota-device"
    result = _run([str(device), "--help"], timeout=30)
    assert result.returncode == 0, _explain(result)
    for flag in (
        "--id",
        "--password-file",
        "TINYOTA_DEVICE_PASSWORD",
        "--mqtt-user",
        "--broker",
        "--server",
        "--public-key",
        "--state-dir",
        "--version",
        "--platform",
        "--free-space",
        "--prefix",
        "--progress-interval",
    ):
        assert flag in result.stdout
    refused = _run([str(device), "--id", "server"], timeout=30)
    assert refused.returncode == 2
    assert "required" in refused.stderr or "server" in refused.stderr
