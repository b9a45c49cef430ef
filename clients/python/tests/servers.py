"""Real simserve processes for the tests, and a request that holds a server's only slot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[3]


def simserve_bin() -> Path:
    """The binary under test: $SIMSERVE_BIN (relative to the working directory), else the
    repository's release build."""
    given = os.environ.get("SIMSERVE_BIN")
    return Path(given).resolve() if given else REPO / "target" / "release" / "simserve"


class Server:
    """simserve on a free loopback port (``--addr 127.0.0.1:0``; the bound address is read
    from its log), up once ``GET /healthz`` answers. Stopped with SIGTERM."""

    def __init__(self, *flags: str) -> None:
        binary = simserve_bin()
        if not binary.is_file():
            raise FileNotFoundError(f"no simserve binary at {binary}: build it or set SIMSERVE_BIN")
        self.scratch = tempfile.mkdtemp(prefix="simserve-")
        self.log = Path(self.scratch) / "stderr.log"
        log_flags = ["--log-format", "json", "--log", "warn,simserve::server=info"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(binary), "--addr", "127.0.0.1:0", *log_flags, *flags],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            self.port = self._bound_port(deadline=time.monotonic() + 20)
            self.url = f"http://127.0.0.1:{self.port}"
            self._wait_healthy(deadline=time.monotonic() + 20)
        except BaseException:
            self.stop()
            raise

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def _bound_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            for line in self._log_text().splitlines():
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if fields.get("message") == "simserve listening":
                    return int(str(fields["addr"]).rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"simserve exited with {code}:\n{self._log_text()}")
            time.sleep(0.02)
        raise TimeoutError(f"simserve logged no bound address:\n{self._log_text()}")

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"simserve did not answer /healthz:\n{self._log_text()}")

    def metric(self, sample: str) -> float:
        """The value of one /metrics sample, e.g. ``simserve_rejections_total{reason="queue_full"}``
        (0 when not yet reported)."""
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    def refused(self) -> int:
        """Requests refused so far because every slot was taken."""
        return int(self.metric('simserve_rejections_total{reason="queue_full"}'))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def busy_body(rows: int = 6000, dim: int = 128) -> bytes:
    """A large computation: `rows` x `dim` vectors against themselves, top 1 each."""
    a = np.random.default_rng(7).standard_normal((rows, dim)).astype("<f4")
    tensor = {
        "dtype": "float32",
        "shape": [rows, dim],
        "data": base64.b64encode(a.tobytes()).decode(),
    }
    return json.dumps({"a": tensor, "top_k": 1}).encode()


class HeldRequest:
    """A large ``/similarity/matrix`` request sent over a raw socket but for its last body
    byte. While its body is arriving the server counts it as admitted, so on a server run
    with ``--compute-permits 1 --max-queue 0`` every other request is refused with 503 for
    as long as the test holds it: no timing involved. `release()` sends the last byte; the
    request then takes the permit, computes, and answers."""

    def __init__(self, server: Server, body: bytes | None = None) -> None:
        body = busy_body() if body is None else body
        deadline = time.monotonic() + 20
        while server.metric("simserve_queue_depth") or server.metric(
            "simserve_compute_permits_in_use"
        ):  # a previous request still holds the slot
            if time.monotonic() > deadline:
                raise TimeoutError("the server never became idle")
            time.sleep(0.01)
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
        head = (
            "POST /similarity/matrix HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body[:-1])
        self.last = body[-1:]
        deadline = time.monotonic() + 20
        while server.metric("simserve_queue_depth") != 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the held request was never admitted")
            time.sleep(0.01)

    def release(self) -> int:
        """Sends the last byte; returns the status of the answer once it has all arrived."""
        self.sock.sendall(self.last)
        answer = b""
        while chunk := self.sock.recv(1 << 16):
            answer += chunk
        self.sock.close()
        return int(answer.split(b" ", 2)[1])
