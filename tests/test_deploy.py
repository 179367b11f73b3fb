"""Deployment that is tested: the systemd unit in docs/deploy.md, the compose file, and the
container image, built and run for real.

No base image can be pulled here, so the container test makes one from Debian's packages:
``debootstrap --variant=minbase`` of this machine's Debian release, from the mirror apt already
uses (read from /etc/apt at run time), imported with ``podman import``. That base is cached in
podman's image store, keyed by everything that goes into it, so only the first run on a machine
pays for it (about 90 s). Podman runs with ``runc`` and ``cgroupfs`` and a containers.conf with
no default ulimits: what works on these machines' hybrid cgroups.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, tinyota
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.core.image import make_test_image

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy.md"
TINYOTA = Path(sys.executable).with_name("tinyota")


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def unit_text() -> str:
    [unit] = [b for b in fenced(DEPLOY.read_text(), "ini") if b.startswith("[Unit]")]
    return unit


# -- systemd ---------------------------------------------------------------------------------------

@pytest.fixture
def unit_file(tmp_path: Path) -> Path:
    """docs/deploy.md's unit, with ExecStart pointed at this suite's tinyota (verify checks that
    the program exists)."""
    unit = unit_text()
    assert "ExecStart=/opt/tinyota/bin/tinyota " in unit
    path = tmp_path / "tinyota.service"
    path.write_text(unit.replace("/opt/tinyota/bin/tinyota", str(TINYOTA)))
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)


def test_the_documented_unit_passes_systemd_analyze_verify(unit_file: Path) -> None:
    done = verify(unit_file)
    # verify exits 0 on unknown keys and bad values, and only says so: any output is a failure.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_would_catch_a_broken_unit(unit_file: Path) -> None:
    # The check above can fail: a misspelt key and a bad value are reported.
    broken = unit_file.with_name("broken.service")
    broken.write_text(unit_file.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictly")
                      .replace("NoNewPrivileges=", "NoNewPrivilege="))
    report = verify(broken).stderr
    assert "Unknown key 'NoNewPrivilege'" in report and "strictly" in report


def test_the_unit_is_hardened(unit_file: Path) -> None:
    unit = unit_file.read_text()
    for setting in ("User=tinyota", "StateDirectory=tinyota", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n"):
        assert setting in unit
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit_file)], capture_output=True,
                          text=True, timeout=60)
    score = re.search(r"Overall exposure level for tinyota\.service: ([0-9.]+)", done.stdout)
    assert score is not None, done.stdout + done.stderr
    assert float(score[1]) <= 2.0, done.stdout  # systemd calls < 2.0 "OK"; a bare service is 9.6


@pytest.mark.parametrize("marker", ["/var/lib/tinyota/tinyota.sqlite\n  admin:\n", "url: mqtt://mosquitto:1883"])
def test_the_documented_configs_pass_check_config(tmp_path: Path, marker: str) -> None:
    [text] = [b for b in fenced(DEPLOY.read_text(), "yaml") if marker in b]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    env = {**os.environ, "TINYOTA_ADMIN_PASSWORD": "a", "TINYOTA_MQTT_PASSWORD": "b", "KITCHEN_1_PASSWORD": "c"}
    done = subprocess.run([str(TINYOTA), "check-config", "-c", str(path)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


# -- compose ---------------------------------------------------------------------------------------

def test_compose_file_runs_tinyota_beside_mosquitto() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"mosquitto", "tinyota"}
    app = services["tinyota"]
    assert app["build"] == {"context": ".", "dockerfile": "Containerfile"}
    assert (ROOT / app["build"]["dockerfile"]).is_file()
    assert "./config.yaml:/etc/tinyota/config.yaml:ro" in app["volumes"]
    assert "tinyota-data:/var/lib/tinyota" in app["volumes"] and "tinyota-data" in compose["volumes"]
    assert app["depends_on"] == ["mosquitto"] and "8000:8000" in app["ports"]
    assert "1883:1883" in services["mosquitto"]["ports"]


def podman_compose(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # --dry-run prints the podman commands; /bin/true as podman keeps it from creating anything.
    shutil.copy(ROOT / "compose.yaml", tmp_path / "compose.yaml")
    return subprocess.run(["podman-compose", "--podman-path", "/bin/true", "--dry-run", "-f", "compose.yaml", "up",
                           "-d", "--no-build"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in {**os.environ, **env}.items() if v})


def test_podman_compose_reads_the_compose_file(tmp_path: Path) -> None:
    done = podman_compose(tmp_path, {"TINYOTA_ADMIN_PASSWORD": "pw-a", "TINYOTA_MQTT_PASSWORD": "pw-m"})
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {m[1]: m[0] for m in re.finditer(r"^\S*true run .*--label com\.docker\.compose\.service=(\w+) .*$",
                                            done.stdout, re.M)}
    assert set(runs) == {"mosquitto", "tinyota"}
    assert "--network-alias mosquitto" in runs["mosquitto"] and "eclipse-mosquitto:2" in runs["mosquitto"]
    assert "-e TINYOTA_ADMIN_PASSWORD=pw-a" in runs["tinyota"] and "-p 8000:8000" in runs["tinyota"]
    assert runs["tinyota"].endswith("tinyota-mqtt serve -c /etc/tinyota/config.yaml")


def test_compose_refuses_to_start_without_the_passwords(tmp_path: Path) -> None:
    done = podman_compose(tmp_path, {"TINYOTA_ADMIN_PASSWORD": "", "TINYOTA_MQTT_PASSWORD": "pw-m"})
    assert done.returncode != 0 and "set TINYOTA_ADMIN_PASSWORD" in done.stderr


# -- the container image, built and run ------------------------------------------------------------

BASE_PACKAGES = ("python3", "python3-venv")  # what the Containerfile needs from a Debian base
BASE_RECIPE = 1  # bump when the way the base is made changes


def apt_mirror(suite: str) -> str:
    """The Debian mirror apt uses for ``suite`` (main), from /etc/apt's one-line and deb822 files."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
             *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split() \
                        and "main" in fields.get("Components", "").split() and fields.get("Enabled", "yes") != "no":
                    return fields["URIs"].split()[0]
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
                return words[1]
    raise AssertionError(f"apt has no source for Debian {suite} main in /etc/apt")


class Podman:
    """podman as it works on these machines; every call bounded in time."""

    def __init__(self, conf: Path) -> None:
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, timeout: float = 300, check: bool = True,
                 stdin: Any = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=stdin)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    if os.geteuid() != 0:
        pytest.skip("the container test runs podman and debootstrap as root, as CI does")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    return Podman(conf)


def debian_base(podman: Podman) -> str:
    """A minimal Debian image of this machine's release, made once per machine and recipe."""
    os_release = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', Path("/etc/os-release").read_text(), re.M))
    suite = os_release.get("VERSION_CODENAME", "bookworm")
    mirror = apt_mirror(suite)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha256(json.dumps([BASE_RECIPE, suite, arch, mirror, BASE_PACKAGES]).encode()).hexdigest()[:16]
    name = f"localhost/tinyota-test-base:{suite}-{key}"
    if podman("image", "exists", name, check=False).returncode == 0:
        return name
    with tempfile.TemporaryDirectory(prefix="tinyota-debootstrap-", dir="/var/tmp") as work:
        root = Path(work) / "root"
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                               f"--arch={arch}", suite, str(root), mirror],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "-", name, stdin=tar.stdout, timeout=600)
        assert tar.wait(timeout=60) == 0
    return name


def build_context(where: Path) -> Path:
    """What the Containerfile copies (as .containerignore lets through), plus wheels of the
    package and its dependencies built here with the host's pip, so the build downloads nothing."""
    ctx = where / "context"
    ctx.mkdir()
    for name in ("Containerfile", "pyproject.toml", "README.md", "config.yaml"):
        shutil.copy(ROOT / name, ctx / name)
    shutil.copytree(ROOT / "tinyota_mqtt", ctx / "tinyota_mqtt", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(ctx / "wheels"),
                           f"{ctx}[embedded]", "setuptools>=68", "wheel"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return ctx


def get(url: str, auth: str | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def container(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    started = time.monotonic()
    base = debian_base(podman)
    tag = f"localhost/tinyota-test-app:{os.getpid()}"
    ctx = build_context(tmp_path_factory.mktemp("container"))
    podman("build", "--network=none", "--build-arg", f"BASE={base}",
           "--build-arg", "PIP_OPTIONS=--no-index --find-links /src/wheels", "-t", tag, "-f",
           str(ctx / "Containerfile"), str(ctx), timeout=900)
    port = free_port()
    name = f"tinyota-test-{os.getpid()}"
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000",
           "-e", "TINYOTA_ADMIN_PASSWORD=container-admin", tag)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            state = podman("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", podman("logs", name, check=False).stderr[-3000:]
            assert time.monotonic() < deadline, "the container did not answer /healthz within 120 s"
            time.sleep(0.5)
        print(f"container up in {time.monotonic() - started:.0f} s")
        yield name, url
    finally:
        podman("rm", "-f", "-t", "5", name, check=False, timeout=120)
        podman("rmi", "-f", tag, check=False, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a first run on a machine makes the Debian base (about 90 s) and builds
def test_the_container_serves_a_release_with_the_shipped_config(podman: Podman, container: tuple[str, str]) -> None:
    name, url = container
    admin = basic_header("admin", "container-admin")
    data = make_test_image("1.1.0", 48 * 1024)
    status, body = get(f"{url}/api/releases?image=kitchen&version=1.1.0", admin, data)
    assert status == 201, body
    assert json.loads(body)["firmware"]["chip"] == "esp8266"
    status, got = get(f"{url}/fw/kitchen/1.1.0.bin", basic_header("kitchen-1", "kitchen-1-demo"))
    assert status == 200 and got == data
    assert get(f"{url}/api/releases", basic_header("admin", "wrong"))[0] == 401
    # The wrong chip is refused in the container too (sensor is an esp32 image).
    status, body = get(f"{url}/api/releases?image=sensor&version=1.1.0", admin, data)
    assert status == 400 and b"built for the ESP8266" in body
    # It runs as the unprivileged user, and keeps the release in the data volume.
    assert podman("exec", name, "id", "-un").stdout.strip() == "tinyota"
    listing = podman("exec", name, "ls", "/var/lib/tinyota/firmware/kitchen").stdout.split()
    assert "1.1.0.json" in listing


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_container_takes_tinyota_commands(podman: Podman, container: tuple[str, str]) -> None:
    name, _url = container
    done = podman("exec", name, "/opt/tinyota/bin/tinyota", "check-config", "-c", "/etc/tinyota/config.yaml")
    assert "ok" in done.stdout.lower()


def test_the_cli_used_in_the_docs_exists() -> None:
    # docs/deploy.md's commands name these subcommands; a rename must update the page.
    out = tinyota("--help")
    for command in ("serve", "check-config", "release"):
        assert command in out.stdout
