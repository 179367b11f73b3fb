"""TLS end to end with certificates the suite makes: HTTPS downloads, mqtts to mosquitto, a device on both."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mosquitto, free_port, release, wait_until, write_config
from tinyota_mqtt.core.httpauth import basic_header
from tinyota_mqtt.mqtt.simulator import SimDevice, SimSettings


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=TinyOTA test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def tls_config(tmp_path: Path, certs: Path, mqtt: str, prefix: str = "tinyota") -> Path:
    port = free_port()
    text = write_config(tmp_path, mqtt=mqtt, prefix=prefix, port=port).read_text()
    text = text.replace(f"public_url: http://127.0.0.1:{port}", f"public_url: https://127.0.0.1:{port}")
    text = text.replace("  admin:", f"  tls: {{cert: {certs}/server.crt, key: {certs}/server.key}}\n  admin:")
    if mqtt.startswith("mqtts"):
        text = text.replace("  prefix:", f"  tls: {{ca: {certs}/ca.crt, cert: {certs}/client.crt, "
                                         f"key: {certs}/client.key}}\n  prefix:")
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path / "config.yaml"


def test_https_download(tmp_path: Path, certs: Path, servers: Any) -> None:
    from tinyota_mqtt.runner import Overrides

    srv = servers(tls_config(tmp_path, certs, "mqtt://127.0.0.1:9"), Overrides(mqtt_url="none"))
    rel = release(srv.config, "kitchen", "1.0.0", 50_000)
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", srv.server.port, context=context, timeout=10)
    conn.request("GET", "/fw/kitchen/1.0.0.bin", headers={"Authorization": basic_header("kitchen-1", "pw-kitchen-1")})
    resp = conn.getresponse()
    assert resp.status == 200 and len(resp.read()) == rel.size and resp.getheader("x-MD5") == rel.md5
    plain = http.client.HTTPConnection("127.0.0.1", srv.server.port, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        plain.request("GET", "/healthz")
        plain.getresponse().read()


def test_https_bodies_are_copied_not_sent_by_sendfile_and_a_stalled_reader_is_cut(
        tmp_path: Path, certs: Path, servers: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # TLS encrypts in user space, so the bytes must pass through Python: the chunked path.
    from tests.test_sendfile import SendfileSpy, access_line
    from tinyota_mqtt.runner import Overrides

    spy = SendfileSpy(os.sendfile)
    monkeypatch.setattr(os, "sendfile", spy)
    caplog.set_level(logging.INFO)
    config = tls_config(tmp_path, certs, "mqtt://127.0.0.1:9")
    config.write_text(config.read_text().replace("  admin:", "  limits: {idle_timeout: 1s}\n  admin:"))
    srv = servers(config, Overrides(mqtt_url="none"))
    rel = release(srv.config, "kitchen", "1.0.0", 300_000)
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    auth = {"Authorization": basic_header("kitchen-1", "pw-kitchen-1")}
    conn = http.client.HTTPSConnection("127.0.0.1", srv.server.port, context=context, timeout=10)
    conn.request("GET", "/fw/kitchen/1.0.0.bin", headers=auth)
    resp = conn.getresponse()
    assert resp.status == 200 and hashlib.md5(resp.read()).hexdigest() == rel.md5
    conn.close()
    assert spy.count() == 0
    assert "via=copy" in wait_until(lambda: access_line(caplog, "1.0.0"), 5, "the access log line")

    big = release(srv.config, "kitchen", "1.1.0", 8 * 1024 * 1024)  # more than the buffers hold
    raw = socket.create_connection(("127.0.0.1", srv.server.port), 10)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        tls.sendall(f"GET /fw/kitchen/1.1.0.bin HTTP/1.0\r\nAuthorization: {auth['Authorization']}\r\n\r\n"
                    .encode())
        assert tls.recv(12) == b"HTTP/1.1 200"  # then it reads no more
        line = wait_until(lambda: access_line(caplog, "1.1.0"), 15, "the stalled download to be cut")
        assert line.endswith(" stalled") and "via=copy" in line
    finally:
        tls.close()
    assert spy.count() == 0 and big.size > 0


# An MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "probe") and the CONNACK that
# accepts it: enough to tell "the broker let this TLS client in" from "it refused it".
CONNECT = b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05probe"
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


def mqtt_over_tls(port: int, context: ssl.SSLContext) -> bytes:
    """CONNECT over TLS and return what the broker answers; raise if it drops the client.

    With TLS 1.3 the client's side of the handshake completes before the server has judged the
    client certificate, so a refusal shows on the first read, as an alert."""
    with socket.create_connection(("127.0.0.1", port), 10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(CONNECT)
        answer = tls.recv(4)
        if not answer:
            raise ConnectionResetError("the broker closed the connection")
        return answer


def test_mqtts_broker_requires_a_client_certificate_and_the_server_presents_one(
        tmp_path: Path, certs: Path, prefix: str, servers: Any) -> None:
    tls_port = free_port()
    # The plain listener (conftest's) stays for the simulated device, which has no certificate;
    # the TLS listener demands one signed by our CA.
    mosq = Mosquitto(tmp_path / "mosq", extra=(
        f"listener {tls_port} 127.0.0.1\ncafile {certs}/ca.crt\ncertfile {certs}/server.crt\n"
        f"keyfile {certs}/server.key\nrequire_certificate true\n")).start()
    try:
        anonymous = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            mqtt_over_tls(tls_port, anonymous)
        # The same client with the certificate gets in: the refusal above was about the certificate.
        with_cert = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with_cert.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
        assert mqtt_over_tls(tls_port, with_cert) == CONNACK_ACCEPTED

        url = f"mqtts://127.0.0.1:{tls_port}"
        server = servers(tls_config(tmp_path, certs, url, prefix))
        wait_until(lambda: server.service.ready, 15, "the server's mqtts session with its client certificate")
        release(server.config, "kitchen", "1.0.0")
        server.call(server.service.tick)
        device = SimDevice(SimSettings(device_id="kitchen-1", password="pw-kitchen-1", broker=mosq.url,
                                       version="0.9.0", prefix=prefix, ca=str(certs / "ca.crt")))
        device.start()
        try:
            wait_until(lambda: (server.view("kitchen-1")["attempt"] or {}).get("state") == "succeeded", 30,
                       "the update announced over mqtts and downloaded over https")
            assert device.version == "1.0.0"
        finally:
            device.stop()
    finally:
        mosq.stop()
