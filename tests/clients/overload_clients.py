#!/usr/bin/env python3
"""Real HTTP clients against a saturated simserve: each must read the 503, never a reset.

    python3 tests/clients/overload_clients.py target/debug/simserve   # any simserve binary

Starts the given simserve on a free loopback port with one compute permit and no wait queue,
keeps the permit busy with one long `/similarity/matrix` request (sized to last about 10 s
on this machine and build), and while it is busy posts a 32 MiB JSON body to
`/similarity/pairwise` with three ordinary clients:

1. `http.client` (`request()` then `getresponse()`: it sends the whole body before reading);
2. `requests.post()` (the same, through urllib3);
3. `curl --data-binary @file -H 'Expect: 100-continue'` (it should never send the body).

Each must get 503 with `Retry-After`, `Connection: close`, `application/problem+json` and the
problem type `urn:simserve:problem:overloaded`, and curl must not have uploaded the body. Then
`simserve_rejections_total{reason="queue_full"}` must read 3, the busy request must answer 200,
and simserve must exit 0 on SIGTERM. Needs python3, `requests` and curl; installs nothing.
Prints one line per client and closes with `N passed, M failed`; exits non-zero on any failure.
"""

import array
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

PATH = "/similarity/pairwise"
BODY_BYTES = 32 << 20
PROBLEM_TYPE = "urn:simserve:problem:overloaded"
# The busy request: `a` (rows x DIM float32, base64) against itself with top_k 1. Its time
# grows as rows squared; rows are set from a timed request of PROBE_ROWS (a release build
# takes about 0.2 s, a debug build 1 s) to last about BUSY_SECONDS. Nothing waits on its
# length: the clients take well under a second, and the script checks that it still held the
# permit once they were answered.
DIM = 128
PROBE_ROWS = 8_000
BUSY_SECONDS = 10.0
MAX_ROWS = 64_000  # 41 MiB as base64, under the default --max-body-bytes
CLIENT_TIMEOUT = 30


class Failure(Exception):
    """A check that did not hold; its message says which and what was seen."""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port, path, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def metric(port, line_start):
    """The value of the first /metrics sample whose line starts with `line_start`, or None."""
    _, text = get(port, "/metrics")
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return None


def start(binary, port):
    proc = subprocess.Popen(
        [binary, "--addr", f"127.0.0.1:{port}", "--compute-permits", "1", "--max-queue", "0",
         "--request-timeout", "300s", "--log", "warn"])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"simserve exited with {proc.returncode} before answering /healthz")
        try:
            if get(port, "/healthz", timeout=1)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise Failure("simserve did not answer /healthz within 15 s")


def matrix_body(rows):
    """`a`: rows x DIM deterministic float32 values, base64, against itself with top_k 1."""
    values = array.array("f", (((i * 7919) % 1999) / 1999.0 - 0.5 for i in range(rows * DIM)))
    if sys.byteorder != "little":
        values.byteswap()
    a = {"dtype": "float32", "shape": [rows, DIM], "data": base64.b64encode(values).decode()}
    return json.dumps({"a": a, "top_k": 1}).encode()


def post_matrix(port, body):
    """Posts `body` to /similarity/matrix; returns (status, seconds, answer bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        begun = time.monotonic()
        conn.request("POST", "/similarity/matrix", body=body,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        return response.status, time.monotonic() - begun, answer
    finally:
        conn.close()


def busy_rows(port):
    """Rows whose self-similarity should last about BUSY_SECONDS here, from one timed probe."""
    status, seconds, answer = post_matrix(port, matrix_body(PROBE_ROWS))
    if status != 200:
        raise Failure(f"the timing request got {status}: {answer[:300]!r}")
    rows = int(PROBE_ROWS * (BUSY_SECONDS / max(seconds, 1e-3)) ** 0.5)
    return max(PROBE_ROWS, min(rows, MAX_ROWS)), seconds


def check_answer(status, headers, body):
    """What is wrong with one client's answer (an empty list: nothing). `headers` is a
    case-insensitive mapping, or a dict with lower-case keys."""
    wrong = []
    if status != 503:
        wrong.append(f"status {status}, want 503")
    if not headers.get("retry-after"):
        wrong.append("no Retry-After")
    if "close" not in (headers.get("connection") or "").lower():
        wrong.append(f"Connection: {headers.get('connection')!r}, want close")
    content_type = headers.get("content-type") or ""
    if not content_type.startswith("application/problem+json"):
        wrong.append(f"Content-Type {content_type!r}, want application/problem+json")
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        kind = None
    if kind != PROBLEM_TYPE:
        wrong.append(f"problem type {kind!r}, want {PROBLEM_TYPE}: {body[:200]!r}")
    return wrong


def with_http_client(port, body, _body_file):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        return check_answer(response.status, response.headers, answer), \
            f"{response.status}, Retry-After {response.getheader('Retry-After')}"
    finally:
        conn.close()


def with_requests(port, body, _body_file):
    response = requests.post(f"http://127.0.0.1:{port}{PATH}", data=body,
                             headers={"Content-Type": "application/json"},
                             timeout=CLIENT_TIMEOUT)
    return check_answer(response.status_code, response.headers, response.content), \
        f"{response.status_code}, Retry-After {response.headers.get('Retry-After')}"


def with_curl(port, _body, body_file):
    curl = shutil.which("curl")
    if curl is None:
        raise Failure("curl is not on PATH; this check needs it (nothing is installed here)")
    with tempfile.TemporaryDirectory() as scratch:
        head_file = os.path.join(scratch, "head")
        answer_file = os.path.join(scratch, "answer")
        done = subprocess.run(
            [curl, "--silent", "--show-error", "--max-time", str(CLIENT_TIMEOUT),
             "-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
             "--data-binary", f"@{body_file}", "-D", head_file, "-o", answer_file,
             "-w", "%{http_code} %{size_upload}", f"http://127.0.0.1:{port}{PATH}"],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT + 10)
        if done.returncode != 0:
            raise Failure(f"curl exited with {done.returncode}: {done.stderr.strip()}")
        code, uploaded = done.stdout.split()
        uploaded = int(float(uploaded))
        with open(head_file, "rb") as f:
            # The last header block: a 100 Continue, if any, comes before the answer's.
            blocks = [b for b in f.read().decode("latin-1").split("\r\n\r\n") if b.strip()]
        headers = {}
        for line in blocks[-1].split("\r\n")[1:] if blocks else []:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        with open(answer_file, "rb") as f:
            answer = f.read()
    wrong = check_answer(int(code), headers, answer)
    if uploaded >= BODY_BYTES // 100:
        wrong.append(f"curl uploaded {uploaded} of {BODY_BYTES} body bytes, want ~0")
    return wrong, f"{code}, Retry-After {headers.get('retry-after')}, uploaded {uploaded} bytes"


CLIENTS = [("http.client", with_http_client), ("requests", with_requests),
           ("curl (Expect: 100-continue)", with_curl)]


def run(binary):
    """Returns (lines to print, clients passed, clients failed, other problems)."""
    port = free_port()
    proc = start(binary, port)
    lines, passed, failed, problems = [], 0, 0, []
    busy = {}
    try:
        rows, probe_seconds = busy_rows(port)
        busy_body = matrix_body(rows)

        def keep_busy():
            try:
                busy["status"], busy["seconds"], busy["answer"] = post_matrix(port, busy_body)
            except OSError as err:
                busy["error"] = repr(err)

        worker = threading.Thread(target=keep_busy)
        worker.start()
        deadline = time.monotonic() + 60
        while metric(port, "simserve_compute_permits_in_use") != 1:
            if not worker.is_alive() or time.monotonic() > deadline:
                raise Failure(f"the busy request never held the permit: {busy}")
            time.sleep(0.02)
        busy_since = time.monotonic()

        body = b'{"a": [[1.0, 2.0]]' + b" " * (BODY_BYTES - 19) + b"}"
        assert len(body) == BODY_BYTES
        with tempfile.TemporaryDirectory() as scratch:
            body_file = os.path.join(scratch, "body.json")
            with open(body_file, "wb") as f:
                f.write(body)
            for name, client in CLIENTS:
                begun = time.monotonic()
                try:
                    wrong, seen = client(port, body, body_file)
                except (OSError, http.client.HTTPException,
                        requests.exceptions.RequestException) as err:
                    wrong, seen = [f"{type(err).__name__}: {err}"], "no answer"
                took = time.monotonic() - begun
                if wrong:
                    failed += 1
                    lines.append(f"FAIL {name}: {seen} in {took:.2f} s; " + "; ".join(wrong))
                else:
                    passed += 1
                    lines.append(f"ok   {name}: {seen} in {took:.2f} s")
        clients_took = time.monotonic() - busy_since
        if metric(port, "simserve_compute_permits_in_use") != 1:
            problems.append(f"the busy request ended within {clients_took:.1f} s, before the "
                            "clients were done: their answers do not show a saturated server")

        refused = metric(port, 'simserve_rejections_total{reason="queue_full"}')
        if refused != 3:
            problems.append(f'simserve_rejections_total{{reason="queue_full"}} is {refused}, '
                            "want 3")
        worker.join(timeout=330)
        if worker.is_alive() or busy.get("status") != 200:
            problems.append(f"the busy request did not answer 200: {busy.get('status')} "
                            f"{busy.get('error') or busy.get('answer', b'')[:300]!r}")
        else:
            held = time.monotonic() - busy_since
            lines.append(f"busy request (matrix {rows}x{DIM} against itself, top_k 1, "
                         f"{len(busy_body) >> 20} MiB, sized from {PROBE_ROWS} rows in "
                         f"{probe_seconds:.2f} s): 200 after {busy['seconds']:.1f} s, "
                         f"{held:.1f} s after it took the permit; the clients took "
                         f"{clients_took:.1f} s")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "none (killed after 60 s)"
    if code != 0:
        problems.append(f"simserve exited with {code} after SIGTERM, want 0")
    return lines, passed, failed, problems


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} path/to/simserve")
    try:
        lines, passed, failed, problems = run(sys.argv[1])
    except Failure as err:
        print(f"error: {err}")
        sys.exit(1)
    for line in lines:
        print(line)
    if passed == len(CLIENTS) and not problems:
        print("real clients against a saturated server: every one read 503 + Retry-After + "
              "Connection: close + problem+json, curl sent no body, 3 refusals counted, the "
              "busy request answered 200, exit 0 on SIGTERM")
    print(f"{passed} passed, {failed} failed")
    for problem in problems:
        print(f"error: {problem}")
    sys.exit(0 if failed == 0 and not problems else 1)


if __name__ == "__main__":
    main()
