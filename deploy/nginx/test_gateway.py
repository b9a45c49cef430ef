#!/usr/bin/env python3
"""nginx in front of two simserve replicas; one is stopped with SIGTERM mid-run; no client
request may fail.

    python3 deploy/nginx/test_gateway.py [path/to/simserve]

Installs nginx from Debian if it is missing, starts two replicas of a simserve binary
(default target/release/simserve) and nginx with deploy/nginx/simserve.conf (its upstream
servers pointed at the replicas) on loopback, sends requests through nginx from 8 threads
for 8 s, sends SIGTERM to one replica after 3 s, and checks that every answer was a 200 with
the right scores and the request id sent. Exit status 0 on success.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GATEWAY, REPLICAS = 18100, (18101, 18102)
THREADS, SECONDS, STOP_AFTER = 8, 8.0, 3.0


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


def gateway_config(workdir):
    site = open(os.path.join(ROOT, "deploy", "nginx", "simserve.conf")).read()
    servers = iter(REPLICAS)
    site, n = re.subn(r"server simserve-\d+:8080", lambda m: f"server 127.0.0.1:{next(servers)}", site)
    assert n == 2, "simserve.conf must list two upstream servers"
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{GATEWAY};")
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


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "simserve")
    nginx = nginx_binary()
    workdir = tempfile.mkdtemp(prefix="simserve-gateway-")
    replicas = [subprocess.Popen([server, "--addr", f"127.0.0.1:{port}", "--log", "warn"])
                for port in REPLICAS]
    gateway = None
    try:
        for port in REPLICAS:
            wait_for(f"http://127.0.0.1:{port}/healthz")
        config = gateway_config(workdir)
        subprocess.run([nginx, "-t", "-q", "-c", config], check=True)
        gateway = subprocess.Popen([nginx, "-c", config])
        wait_for(f"http://127.0.0.1:{GATEWAY}/healthz")

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
        return 0 if not failures and code == 0 and len(results) > 100 else 1
    finally:
        if gateway:
            gateway.send_signal(signal.SIGQUIT)
            gateway.wait(timeout=10)
        for replica in replicas:
            if replica.poll() is None:
                replica.send_signal(signal.SIGTERM)
                replica.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
