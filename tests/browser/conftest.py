"""Fixtures of the browser test: simserve release binaries and one headless Chromium.

The binary is $SIMSERVE_BIN (relative to the working directory), else the repository's
target/release/simserve. Chromium and its driver are Debian's (/usr/bin/chromium,
/usr/bin/chromedriver; override with $CHROMIUM and $CHROMEDRIVER): nothing is downloaded.
The test's output (screenshots) goes to $SIMSERVE_BROWSER_OUT, else target/browser-test.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
API_KEY = "page-test-key"


class Server:
    """simserve on a free loopback port (`--addr 127.0.0.1:0`, the bound address read from
    its JSON log), up once `/healthz` answers; stopped with SIGTERM."""

    def __init__(self, *flags: str) -> None:
        given = os.environ.get("SIMSERVE_BIN")
        binary = Path(given).resolve() if given else REPO / "target" / "release" / "simserve"
        if not binary.is_file():
            raise FileNotFoundError(f"no simserve binary at {binary}: build it or set SIMSERVE_BIN")
        self.log = Path(tempfile.mkdtemp(prefix="simserve-page-")) / "stderr.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    "--addr",
                    "127.0.0.1:0",
                    "--log-format",
                    "json",
                    "--log",
                    "warn,simserve::server=info",
                    *flags,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            self.url = f"http://127.0.0.1:{self._port(time.monotonic() + 20)}"
            self._wait(f"{self.url}/readyz", time.monotonic() + 20)
        except BaseException:
            self.stop()
            raise

    def _port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if fields.get("message") == "simserve listening":
                    return int(str(fields["addr"]).rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                raise RuntimeError(f"simserve exited: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)
        raise TimeoutError("simserve logged no address")

    @staticmethod
    def _wait(url: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{url} did not answer 200")

    def post(self, path: str, body: dict[str, Any], key: str | None = None) -> Any:
        """The JSON answer of POST `path`, sent directly (not through the page)."""
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            f"{self.url}/{path.lstrip('/')}", data=json.dumps(body).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def out_dir() -> Path:
    path = Path(os.environ.get("SIMSERVE_BROWSER_OUT", REPO / "target" / "browser-test"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tables_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`users` (6 x 8 float32, ids u0 to u5) and `big` (600 x 4 float64, converted at load)."""
    path = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(5)
    np.save(path / "users.npy", rng.standard_normal((6, 8)).astype(np.float32))
    (path / "users.ids.txt").write_text("".join(f"u{i}\n" for i in range(6)))
    np.save(path / "big.npy", rng.standard_normal((600, 4)))
    return path


@pytest.fixture(scope="session")
def server(tables_dir: Path) -> Iterator[Server]:
    running = Server("--tables", str(tables_dir))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def auth_server() -> Iterator[Server]:
    running = Server("--api-keys", API_KEY)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def driver(downloads: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1360,1000",
        # Names under .test reach loopback: pages there are not potentially trustworthy, so
        # Chromium sends no Sec-Fetch-Site to them, as to an internal address over plain HTTP.
        "--host-resolver-rules=MAP *.test 127.0.0.1",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never looks for (or downloads) one.
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    chrome = webdriver.Chrome(options=options, service=service)
    chrome.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    chrome.set_script_timeout(20)
    yield chrome
    chrome.quit()
