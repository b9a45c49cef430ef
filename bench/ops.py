#!/usr/bin/env python3
"""Overload and drain: how simserve behaves at ~4x its capacity and on SIGTERM under load.

    python3 bench/ops.py            # from the repository root; about 1.5 minutes

Builds simserve and the load generator (examples/loadgen.rs) in release, starts simserve with
its defaults on loopback, and for one mid-sized request (matrix 400x256 against itself,
top_k 10):

1. capacity: a closed loop of 4 clients for 8 s;
2. unloaded: an open loop at 1/4 of capacity (latency of a request that does not wait);
3. overload: an open loop at 4x capacity for 15 s, probing /healthz every 50 ms;
4. a gzip bomb (100 MiB of JSON whitespace, ~100 KiB gzipped), then slowloris: 1,000 connections that send half a request head, with --header-timeout 5s;
5. drain: a closed loop of 8 clients, SIGTERM after 3 s, with --shutdown-delay 0s and 1s.

Prints the shed rate, p99 of admitted requests against unloaded, how fast refusals come,
/healthz p99 during overload, peak RSS, and every request that failed during the drain.
Needs only cargo and python3, and port 18099 free (the script checks). Results: README.md,
"Operations".
"""

import json
import os
import random
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from simserve_proc import memory_mb, require_free, wait_healthy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 18099
BASE = f"http://127.0.0.1:{PORT}"
SERVER = os.path.join(ROOT, "target", "release", "simserve")
LOADGEN = os.path.join(ROOT, "target", "release", "examples", "loadgen")


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "simserve",
                    "--example", "loadgen"], check=True, cwd=ROOT)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start(*flags):
    require_free(PORT)
    proc = subprocess.Popen([SERVER, "--addr", f"127.0.0.1:{PORT}", "--log", "warn", *flags],
                            stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
    try:
        wait_healthy(BASE)
    except TimeoutError:
        proc.kill()
        sys.exit("simserve did not start")
    return proc


def load(body_path, seconds, rate=0.0, concurrency=8, probe=False):
    args = [LOADGEN, "--url", f"{BASE}/similarity/matrix", "--body", body_path,
            "--seconds", str(seconds), "--rate", str(rate), "--concurrency", str(concurrency)]
    if probe:
        args += ["--probe", f"{BASE}/healthz"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def result(proc):
    out, _ = proc.communicate()
    return json.loads(out)


def slowloris(count=1000):
    """Opens `count` connections that send half a request head; returns seconds until the
    server had closed them all, and /healthz latencies (ms) meanwhile."""
    raise_fd_limit()
    selector = selectors.DefaultSelector()
    opened = time.monotonic()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", PORT))
        sock.sendall(b"POST /similarity/matrix HTTP/1.1\r\nHost: simserve\r\n")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    open_left, last_close, health = count, None, []
    while open_left and time.monotonic() - opened < 60:
        begun = time.monotonic()
        urllib.request.urlopen(f"{BASE}/healthz", timeout=5).read()
        health.append((time.monotonic() - begun) * 1e3)
        for key, _ in selector.select(timeout=0.05):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_left -= 1
                last_close = time.monotonic() - opened
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    return open_left, last_close, sorted(health)


def gzip_bomb(pid):
    """Posts 100 MB of JSON whitespace gzipped; returns the status, the bomb's size, and RSS
    (MB) before, at its peak while sampled every 5 ms, and 2 s after."""
    import gzip
    import threading
    bomb = gzip.compress(b"{" + b" " * (100 << 20), compresslevel=9)
    before = memory_mb(pid)
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak.append(memory_mb(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    request = urllib.request.Request(f"{BASE}/similarity/matrix", data=bomb, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Content-Encoding": "gzip"})
    try:
        status = urllib.request.urlopen(request, timeout=30).status
    except urllib.error.HTTPError as err:
        status = err.code
    done.set()
    sampler.join()
    time.sleep(2)
    return status, len(bomb), before, max(peak), memory_mb(pid)


def main():
    build()
    rng = random.Random(7)
    rows = [[round(rng.gauss(0, 1), 5) for _ in range(256)] for _ in range(400)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"a": rows, "top_k": 10}, f)
        body = f.name

    server = start()
    try:
        cap = result(load(body, 8, concurrency=4))
        capacity = cap["counts"].get("200", 0) / cap["elapsed_s"]
        calm = result(load(body, 8, rate=capacity / 4, concurrency=64, probe=True))
        over = result(load(body, 15, rate=capacity * 4, concurrency=4000, probe=True))
        peak = memory_mb(server.pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    server = start("--header-timeout", "5s")
    try:
        bomb = gzip_bomb(server.pid)
        still_open, closed_after, health = slowloris()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    drains = []
    for delay in ["0s", "1s"]:
        server = start("--shutdown-delay", delay)
        drain = load(body, 6, concurrency=8)
        time.sleep(3)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        drains.append((delay, code, time.monotonic() - signalled, result(drain)))
    os.unlink(body)

    counts = over["counts"]
    total = sum(counts.values())
    shed = counts.get("503", 0) / total if total else float("nan")
    admitted = over["latency_ms"].get("200") or {}
    refused = over["latency_ms"].get("503") or {}
    unloaded = calm["latency_ms"]["200"]
    print(f"request: matrix 400x256 against itself, top_k 10 (JSON, "
          f"{len(json.dumps({'a': rows}))//1024} KiB)")
    print(f"capacity (closed loop, 4 clients):       {capacity:8.1f} req/s")
    print(f"unloaded p50 / p99 at {capacity/4:6.1f} req/s:     {unloaded['p50']:8.1f} / {unloaded['p99']:.1f} ms")
    print(f"overload offered:                        {total/over['elapsed_s']:8.1f} req/s "
          f"({total/over['elapsed_s']/capacity:.1f}x capacity) for {over['elapsed_s']:.0f} s")
    print(f"  answered 200 / 503 / errors:           {counts.get('200', 0)} / {counts.get('503', 0)} / "
          f"{total - counts.get('200', 0) - counts.get('503', 0)}")
    print(f"  shed rate:                             {shed:8.1%}")
    print(f"  admitted p50 / p99:                    {admitted.get('p50', float('nan')):8.1f} / "
          f"{admitted.get('p99', float('nan')):.1f} ms  ({admitted.get('p99', float('nan'))/unloaded['p99']:.1f}x unloaded p99)")
    print(f"  503 p50 / p99:                         {refused.get('p50', float('nan')):8.2f} / "
          f"{refused.get('p99', float('nan')):.2f} ms")
    print(f"  /healthz p99 unloaded / overloaded:    {calm['probe_ms']['p99']:8.2f} / {over['probe_ms']['p99']:.2f} ms")
    print(f"  peak RSS:                              {peak:8.1f} MB")
    status, size, before, peak_bomb, after = bomb
    print(f"gzip bomb: {size // 1024} KiB inflating to 100 MiB: {status}; RSS before / peak / 2 s after: "
          f"{before:.1f} / {peak_bomb:.1f} / {after:.1f} MB")
    print(f"slowloris: 1000 connections sending half a head, --header-timeout 5s: "
          f"{1000 - still_open} closed, the last after {closed_after:.1f} s; "
          f"/healthz p99 meanwhile {health[int(0.99 * (len(health) - 1))]:.2f} ms")
    for delay, code, exited_after, drained in drains:
        dc = drained["counts"]
        print(f"drain, --shutdown-delay {delay}: SIGTERM after 3 s of 8 clients; "
              f"exit code {code} after {exited_after:.2f} s")
        print(f"  answered 200: {dc.get('200', 0)}, 503: {dc.get('503', 0)}, "
              f"failed after sending: {dc.get('other_error', 0)}, "
              f"refused at connect once the listener closed: {dc.get('connect_error', 0)}")


if __name__ == "__main__":
    main()
