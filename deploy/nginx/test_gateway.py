#!/usr/bin/env python3
"""nginx in front of two simserve replicas: the routes it refuses, the body limit, one replica
stopped with SIGTERM mid-run (no client request may fail), then both overloaded.

    python3 deploy/nginx/test_gateway.py [path/to/simserve]

Installs nginx from Debian if it is missing, starts two replicas of a simserve binary
(default target/release/simserve) and nginx with deploy/nginx/simserve.conf (its upstream
servers pointed at the replicas) on loopback, and a second pair of replicas with one compute
permit and a queue of one each behind a second nginx (ports 18100-18105, or 6 from
GATEWAY_TEST_PORT), all before any traffic; then checks, through nginx:

1. /metrics and /tables/reload are refused by nginx; /similarity, /v2 and GET /tables pass;
2. a body just over simserve's --max-body-bytes gets simserve's 413 (problem+json), and one
   far over it nginx's 413;
3. requests from 8 threads for 8 s, SIGTERM to one replica after 3 s: every answer a 200
   with the right scores and the request id sent;
4. the second pair, 24 threads for 4 s: no 502 or 504, every refusal simserve's 503
   (problem+json, Retry-After), and at least a quarter 200.

Exit status 0 on success.
"""

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GATEWAY = int(os.environ.get("GATEWAY_TEST_PORT", "18100"))
REPLICAS = (GATEWAY + 1, GATEWAY + 2)
OVERLOAD_GATEWAY, OVERLOAD_REPLICAS = GATEWAY + 3, (GATEWAY + 4, GATEWAY + 5)
THREADS, SECONDS, STOP_AFTER = 8, 8.0, 3.0
MAX_BODY_BYTES = 64 << 20  # simserve's --max-body-bytes default
OVERLOAD_FLAGS = ["--compute-permits", "1", "--max-queue", "1"]
OVERLOAD_THREADS, OVERLOAD_SECONDS = 24, 4.0
# After a 503 a client waits, as Retry-After asks (1 s there, shorter here).
OVERLOAD_BACKOFF = 0.05


def nginx_binary():
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found:
        return found
    print("installing nginx-light from Debian", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def wait_for(url, deadline=20.0):
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer")


def call(method, path, body=None, request_id=None, port=GATEWAY, length=None, origin=None):
    """One request through nginx on a new connection: (status, headers, body), status None
    if the connection failed. `length` announces a Content-Length without sending a body;
    `origin` is sent as a browser sends it (`Origin`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.putheader("Content-Type", "application/json")
        if request_id:
            connection.putheader("X-Request-Id", request_id)
        if origin:
            connection.putheader("Origin", origin)
        if body is not None or length is not None:
            connection.putheader("Content-Length", str(len(body) if length is None else length))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    except OSError as err:
        return None, {}, f"error: {err}"
    finally:
        connection.close()


def check_routes():
    """nginx refuses the metrics and the reload itself (no x-request-id: simserve never saw
    them), in any spelling it normalizes; the API routes reach simserve."""
    failures = []
    refused = [("GET", "/metrics", None), ("GET", "//metrics", None),
               ("GET", "/%6Detrics?x=1", None), ("POST", "/tables/reload", b""),
               ("POST", "/tables/./reload", b""), ("GET", "/tables/reload", None)]
    for method, path, body in refused:
        status, headers, _ = call(method, path, body, "gw-route")
        if status not in (403, 404) or headers.get("x-request-id"):
            failures.append(f"{method} {path}: {status}, x-request-id "
                            f"{headers.get('x-request-id')}")
    infer = {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 0]},
                        {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [0, 2]}]}
    passed = [("GET", "/tables", None), ("GET", "/v2", None), ("GET", "/v2/models/pairwise", None),
              ("GET", "/healthz", None),
              ("POST", "/similarity/pairwise", json.dumps({"a": [[1, 0]], "b": [[0, 2]]}).encode()),
              ("POST", "/v2/models/pairwise/infer", json.dumps(infer).encode())]
    for method, path, body in passed:
        status, headers, answer = call(method, path, body, "gw-route")
        if status != 200 or headers.get("x-request-id") != "gw-route":
            failures.append(f"{method} {path}: {status} {answer[:200]!r}")
    # A page served through the gateway, from a browser that sends no Sec-Fetch-Site (plain
    # HTTP to an address other than localhost): simserve compares its Origin with the Host
    # nginx forwards, which must keep the port. A page of another port is refused.
    pairwise = json.dumps({"a": [[1, 0]], "b": [[0, 2]]}).encode()
    for origin, want in ((f"http://127.0.0.1:{GATEWAY}", 200), ("http://127.0.0.1", 403)):
        status, _, answer = call("POST", "/similarity/pairwise", pairwise, "gw-origin", origin=origin)
        if status != want:
            failures.append(f"POST /similarity/pairwise from a page of {origin}: {status}, not {want}: "
                            f"{answer[:200]!r}")
    # A client that sends no Host (HTTP/1.0) still reaches simserve, which refuses an HTTP/1.1
    # request (as nginx forwards it) without one.
    with socket.create_connection(("127.0.0.1", GATEWAY), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if not answer.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        failures.append(f"GET /healthz over HTTP/1.0 without Host: {answer[:200]!r}")
    return failures


def check_body_limit():
    """Just over simserve's limit: simserve's 413. Far over it: nginx's, before the body."""
    failures = []
    status, headers, answer = call("POST", "/similarity/pairwise", b" " * (MAX_BODY_BYTES + 1),
                                   "gw-413")
    if (status != 413 or headers.get("content-type") != "application/problem+json"
            or headers.get("x-request-id") != "gw-413"):
        failures.append(f"{MAX_BODY_BYTES + 1} bytes: {status} {headers.get('content-type')} "
                        f"{answer[:200]!r}")
    status, headers, _ = call("POST", "/similarity/pairwise", length=1 << 30)
    if status != 413 or headers.get("x-request-id"):
        failures.append(f"1 GiB announced: {status}, not nginx's 413")
    return failures


def overload_client(n, stop_at, body, results):
    i = 0
    while time.monotonic() < stop_at:
        i += 1
        request_id = f"ov-{n}-{i}"
        status, headers, answer = call("POST", "/similarity/matrix", body, request_id,
                                       port=OVERLOAD_GATEWAY)
        if status == 200 and headers.get("x-request-id") == request_id:
            results.append((200, None))
        elif (status == 503 and headers.get("content-type") == "application/problem+json"
              and headers.get("retry-after") and headers.get("x-request-id") == request_id):
            results.append((503, None))
            time.sleep(OVERLOAD_BACKOFF)
        else:
            results.append((status, f"{status} {headers.get('content-type')} {answer[:120]!r}"))


def check_overload():
    """The replicas shed load with 503: nginx must pass those on (after one retry), never
    take a replica out for them and answer 502 itself."""
    rng = random.Random(1)
    rows = [[round(rng.uniform(-1, 1), 3) for _ in range(64)] for _ in range(128)]
    body = json.dumps({"a": rows, "top_k": 5}).encode()
    results = []
    stop_at = time.monotonic() + OVERLOAD_SECONDS
    threads = [threading.Thread(target=overload_client, args=(n, stop_at, body, results))
               for n in range(OVERLOAD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = {}
    for status, _ in results:
        counts[status] = counts.get(status, 0) + 1
    print(f"overload: {len(results)} requests from {OVERLOAD_THREADS} threads in "
          f"{OVERLOAD_SECONDS:.0f} s: {counts}")
    failures = [problem for _, problem in results if problem]
    if not counts.get(503):
        failures.append("no 503: the replicas were not overloaded")
    if counts.get(200, 0) < len(results) / 4:
        failures.append(f"only {counts.get(200, 0)} of {len(results)} succeeded")
    return failures


def gateway_config(workdir, port, replicas):
    workdir = os.path.join(workdir, str(port))
    os.mkdir(workdir)
    site = open(os.path.join(ROOT, "deploy", "nginx", "simserve.conf")).read()
    servers = iter(replicas)
    site, n = re.subn(r"server simserve-\d+:8080", lambda m: f"server 127.0.0.1:{next(servers)}", site)
    assert n == 2, "simserve.conf must list two upstream servers"
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    with open(os.path.join(workdir, "simserve.conf"), "w") as f:
        f.write(site)
    main = f"""
worker_processes 2;
daemon off;
error_log {workdir}/error.log warn;
pid {workdir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    include {workdir}/simserve.conf;
}}
"""
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(main)
    return path


def client(n, stop_at, results):
    """Alternates pairwise and matrix requests with their expected answers."""
    i = 0
    while time.monotonic() < stop_at:
        i += 1
        request_id = f"gw-{n}-{i}"
        if i % 2:
            body, path = {"a": [[1.0, 0.0], [3.0, 4.0]], "b": [[0.0, 2.0], [3.0, 4.0]]}, "pairwise"
            check = lambda j: j["scores"] == [0.0, 1.0]
        else:
            body, path = {"a": [[1.0, 0.0], [0.0, 1.0]], "metric": "dot"}, "matrix"
            check = lambda j: j["matrix"] == [[1.0, 0.0], [0.0, 1.0]]
        request = urllib.request.Request(
            f"http://127.0.0.1:{GATEWAY}/similarity/{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-Request-Id": request_id})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.load(response)
                ok = (response.status == 200 and check(answer)
                      and response.headers.get("x-request-id") == request_id)
                results.append("ok" if ok else f"wrong answer {response.status} {answer}")
        except urllib.error.HTTPError as err:
            results.append(f"HTTP {err.code}: {err.read()[:200]!r}")
        except OSError as err:
            results.append(f"error: {err}")


def report(name, failures):
    print(f"{name}: {'ok' if not failures else f'{len(failures)} failed'}")
    for failure in failures[:10]:
        print("  ", failure)
    return not failures


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "simserve")
    nginx = nginx_binary()
    workdir = tempfile.mkdtemp(prefix="simserve-gateway-")
    # Started as root, nginx's workers run as nobody, and write the body temp files here.
    os.chmod(workdir, 0o755)
    replicas, gateways = [], []
    try:
        # Every port bound before any traffic, so no client socket of a phase holds one.
        for ports, flags in ((REPLICAS, []), (OVERLOAD_REPLICAS, OVERLOAD_FLAGS)):
            for port in ports:
                replicas.append(subprocess.Popen(
                    [server, "--addr", f"127.0.0.1:{port}", "--log", "warn", *flags]))
        for port in REPLICAS + OVERLOAD_REPLICAS:
            wait_for(f"http://127.0.0.1:{port}/healthz")
        for port, upstream in ((GATEWAY, REPLICAS), (OVERLOAD_GATEWAY, OVERLOAD_REPLICAS)):
            config = gateway_config(workdir, port, upstream)
            subprocess.run([nginx, "-t", "-q", "-c", config], check=True)
            gateways.append(subprocess.Popen([nginx, "-c", config]))
            wait_for(f"http://127.0.0.1:{port}/healthz")

        ok = report("routes", check_routes())
        ok &= report("body limit", check_body_limit())

        results = []
        start = time.monotonic()
        threads = [threading.Thread(target=client, args=(n, start + SECONDS, results))
                   for n in range(THREADS)]
        for t in threads:
            t.start()
        time.sleep(STOP_AFTER)
        replicas[0].send_signal(signal.SIGTERM)
        code = replicas[0].wait(timeout=30)
        stopped_at = time.monotonic() - start
        for t in threads:
            t.join()
        failures = [r for r in results if r != "ok"]
        print(f"{len(results)} requests through nginx in {SECONDS:.0f} s; replica 1 got SIGTERM at "
              f"{STOP_AFTER:.0f} s and exited {code} at {stopped_at:.2f} s; failed: {len(failures)}")
        for failure in failures[:10]:
            print("  ", failure)
        ok &= not failures and code == 0 and len(results) > 100

        ok &= report("overload", check_overload())
        return 0 if ok else 1
    finally:
        for gateway in gateways:
            gateway.send_signal(signal.SIGQUIT)
            gateway.wait(timeout=10)
        for replica in replicas:
            if replica.poll() is None:
                replica.send_signal(signal.SIGTERM)
                replica.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
