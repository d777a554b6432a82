"""The MLflow UI shows the smoke experiment in headless Chromium (Debian's package).

The UI is a JavaScript app whose API calls need basic auth; Chromium does not carry URL
credentials into them, so the test drives Chromium over the DevTools protocol and sends the
Authorization header on every request. The screenshot is kept as build/<env>/ui-experiment.png.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlopskit.chromium import find_chromium

# The machine has no outside network: everything that would phone home is off.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)
PAGE_TIMEOUT_S = 90


class DevTools:
    """The few DevTools-protocol calls the test needs, over one page's websocket."""

    def __init__(self, websocket_url: str) -> None:
        import websocket

        self._ws = websocket.create_connection(websocket_url, timeout=30)
        self._next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def close(self) -> None:
        self._ws.close()


def trusted_certificate_flags(tracking_uri: str, ca_file: str) -> list[str]:
    """Chromium has no CA file option: with HTTPS and a private CA, check the certificate the
    server presents against that CA here, then let Chromium accept that certificate's key
    alone (a pin, not a blanket ignore of certificate errors)."""
    url = urllib.parse.urlsplit(tracking_uri)
    host, port = url.hostname or "", url.port or 443
    context = ssl.create_default_context(cafile=ca_file)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der, f"{tracking_uri} presented no certificate"
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return [f"--ignore-certificate-errors-spki-list={pin}"]


@pytest.fixture
def browser(tmp_path, client_env):
    executable = find_chromium()
    if executable is None:
        pytest.fail(
            "chromium is missing: `make smoke` installs it (root on Debian); "
            "else apt-get install chromium"
        )
    profile = tmp_path / "profile"
    ca_file = client_env.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    trust = trusted_certificate_flags(client_env["MLFLOW_TRACKING_URI"], ca_file) if ca_file else []
    process = subprocess.Popen(
        [executable, *CHROMIUM_FLAGS, *trust, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.is_file() or not port_file.read_text().strip():
        assert process.poll() is None, "chromium exited at start"
        assert time.monotonic() < deadline, "chromium did not open its DevTools port within 60 s"
        time.sleep(0.2)
    port = int(port_file.read_text().splitlines()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
        pages = [t for t in json.load(response) if t["type"] == "page"]
    tools = DevTools(pages[0]["webSocketDebuggerUrl"])
    yield tools
    tools.close()
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_ui_shows_the_experiment(browser, client_env, build_dir: Path, tracked):
    token = base64.b64encode(
        f"{client_env['MLFLOW_TRACKING_USERNAME']}:{client_env['MLFLOW_TRACKING_PASSWORD']}".encode()
    ).decode()
    browser.call("Network.enable")
    browser.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})
    browser.call("Page.enable")
    url = f"{client_env['MLFLOW_TRACKING_URI']}/#/experiments/{tracked['experiment_id']}/runs"
    browser.call("Page.navigate", url=url)
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    wanted = [tracked["experiment_name"], tracked["run_name"]]
    check = " && ".join(f"document.body.innerText.includes({json.dumps(w)})" for w in wanted)
    while not browser.evaluate(f"!!document.body && {check}"):
        assert time.monotonic() < deadline, (
            f"the UI at {url} did not show {wanted} within {PAGE_TIMEOUT_S}s; it shows: "
            f"{str(browser.evaluate('document.body && document.body.innerText'))[:400]!r}"
        )
        time.sleep(1)
    shot = browser.call("Page.captureScreenshot", format="png")
    target = build_dir / "ui-experiment.png"
    target.write_bytes(base64.b64decode(shot["data"]))
    assert target.read_bytes().startswith(b"\x89PNG")
    dom = browser.evaluate("document.documentElement.outerHTML")
    assert all(w in dom for w in wanted)
    (build_dir / "ui-experiment.html").write_text(dom)
