"""Fixtures of the console's browser tests: the real binary running its
demo (the example park, its simulated incidents) with access tokens, the
console on a free port; Debian's Chromium driven by Playwright (nothing
downloaded); a real gRPC client (grpcio, stubs generated from proto/).

Environment: HAZARDWATCH_BIN (the binary; default target/debug/hazardwatch),
HAZARDWATCH_CHROMIUM (default /usr/bin/chromium), HAZARDWATCH_ARTIFACTS
(screenshots; default target/browser-artifacts); HAZARDWATCH_SCREENSHOTS=1
also writes the README's screenshots under docs/.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]

TOKENS = {
    "park": "park-operator-0123456789",
    "e01": "e01-operator-0123456789",
    "county": "county-viewer-0123456789",
}

ACCESS = """
[[access.token]]
name = "Park control room"
token = "park-operator-0123456789"
role = "operator"
level = "park"
enterprises = ["*"]

[[access.token]]
name = "E01 control room"
token = "e01-operator-0123456789"
role = "operator"
enterprises = ["E01"]

[[access.token]]
name = "County emergency management bureau"
token = "county-viewer-0123456789"
role = "viewer"
level = "county"
enterprises = ["*"]

# E03's chain in seconds rather than minutes, so that the gas leak reaches
# the county while the tests run.
[[escalation]]
enterprises = ["E03"]
min_priority = "high"
park_min = 0.5
county_min = 1.0
city_min = 100
province_min = 200
"""


class Demo:
    """The demo process and where it serves."""

    def __init__(self, proc, console, grpc_addr, log):
        self.proc = proc
        self.console = console
        self.grpc = grpc_addr
        self.log = log
        self.started = time.monotonic()

    def since_start(self):
        return time.monotonic() - self.started


@pytest.fixture(scope="session")
def artifacts():
    d = Path(os.environ.get("HAZARDWATCH_ARTIFACTS", ROOT / "target" / "browser-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    binary = os.environ.get("HAZARDWATCH_BIN", str(ROOT / "target" / "debug" / "hazardwatch"))
    tmp = tmp_path_factory.mktemp("demo")
    config = tmp / "park.toml"
    config.write_text((ROOT / "deploy" / "config" / "example-park.toml").read_text() + ACCESS)
    log = tmp / "demo.log"
    out = open(log, "w")
    proc = subprocess.Popen(
        [binary, "demo", "--config", str(config), "--data", str(tmp / "data"),
         "--mqtt", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--console", "127.0.0.1:0",
         "--no-metrics", "--duration", "900"],
        stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
    )
    console = grpc_addr = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not console:
        text = log.read_text()
        m = re.search(r"console (https?://[0-9.:]+)/", text)
        g = re.search(r"gRPC ([0-9.]+:[0-9]+)", text)
        if m and g:
            console, grpc_addr = m.group(1), g.group(1)
        elif proc.poll() is not None:
            raise RuntimeError(f"the demo exited: {text}")
        time.sleep(0.2)
    if not console:
        proc.kill()
        raise RuntimeError(f"the demo did not print its console address: {log.read_text()}")
    d = Demo(proc, console, grpc_addr, log)
    yield d
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    out.close()


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """The gRPC stubs, generated from proto/ with grpcio-tools."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    files = [f"hazardwatch/v1/{f}.proto" for f in ("alarms", "site", "telemetry")]
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *files])
    assert rc == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from hazardwatch.v1 import alarms_pb2, alarms_pb2_grpc

    return alarms_pb2, alarms_pb2_grpc


@pytest.fixture(scope="session")
def alarms_grpc(demo, pb):
    """AlarmService over gRPC as the park's token: (stub, messages, metadata)."""
    alarms_pb2, alarms_pb2_grpc = pb
    channel = grpc.insecure_channel(demo.grpc)
    stub = alarms_pb2_grpc.AlarmServiceStub(channel)
    meta = [("authorization", f"Bearer {TOKENS['park']}")]
    yield stub, alarms_pb2, meta
    channel.close()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=os.environ.get("HAZARDWATCH_CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        yield b
        b.close()


class Page:
    """A console page in its own browser context, with its console errors."""

    def __init__(self, browser, url):
        self.context = browser.new_context(viewport={"width": 1600, "height": 900}, locale="en-GB")
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self._console)
        self.page.goto(url)

    def _console(self, message):
        # Refusals the tests provoke (401 before logging in, 403/404/409
        # from the API) are answers, not errors of the page.
        refused = re.match(r"Failed to load resource: .* status of (401|403|404|409)", message.text)
        if message.type == "error" and not refused:
            self.errors.append(message.text)

    def login(self, token):
        p = self.page
        p.wait_for_selector("#login[open]")
        p.fill("#token", token)
        p.click("#login-button")
        p.wait_for_selector("#login[open]", state="detached")
        p.wait_for_function("() => window.hw && window.hw.feed !== null && window.hw.site !== null")

    def set_operator(self, name):
        self.page.fill("#operator", name)
        self.page.dispatch_event("#operator", "change")

    def api(self, method, body):
        """Calls the JSON API from the page (its session): (status, json)."""
        return self.page.evaluate(
            """async ([method, body]) => {
                 const r = await fetch('/api/v1/' + method, {method: 'POST',
                   headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});
                 return [r.status, await r.json().catch(() => null)];
               }""",
            [method, body],
        )

    def close(self):
        self.context.close()


@pytest.fixture(scope="session")
def park_page(browser, demo):
    """The park control room, logged in, for the tests that follow the demo."""
    page = Page(browser, demo.console + "/")
    page.login(TOKENS["park"])
    page.set_operator("Li Wei")
    yield page
    page.close()


class Proxy:
    """A TCP proxy in front of the console whose connections can be cut: a
    control room's network dropping and coming back."""

    def __init__(self, target_port):
        import socket

        self.socket = socket
        self.target = ("127.0.0.1", target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.conns = []
        self.lock = threading.Lock()
        self.listener = None
        self.up()

    def up(self):
        s = self.socket
        self.listener = s.socket()
        self.listener.setsockopt(s.SOL_SOCKET, s.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = self.socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def down(self):
        """Closes the listener and every open connection."""
        self.listener.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(self.socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()
