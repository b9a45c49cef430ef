#!/usr/bin/env python3
"""Soak: ~100,000 mixed requests against one simserve, with its RSS after every 10,000.

    python3 bench/soak.py [--requests 100000]      # from the repository root

Builds simserve in release, starts it with its defaults on loopback (port 18095, which must be
free), and sends requests from 4 keep-alive clients, cycling through every route in both
encodings, the top-k and threshold paths, compressed bodies and answers, and a share of bad
requests (422, 400, 404, and 413 for a gzip body that inflates past simserve's ratio limit).
Every answer's status is checked. Prints RSS after each 10,000 requests and the growth per
10,000 after the first 10,000 (warm-up). Exits non-zero when an answer's status is wrong or a
client stopped on an error (a refused or dropped connection, say). Needs only cargo and
python3. Results: README.md, "Reliability".
"""

import argparse
import base64
import gzip
import http.client
import json
import os
import random
import struct
import subprocess
import sys
import threading
import time
import traceback

from simserve_proc import memory_mb, require_free, wait_healthy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 18095
SERVER = os.path.join(ROOT, "target", "release", "simserve")


def b64(rows):
    flat = [x for row in rows for x in row]
    data = base64.b64encode(struct.pack(f"<{len(flat)}f", *flat)).decode()
    return {"dtype": "float32", "shape": [len(rows), len(rows[0])], "data": data}


def mix():
    """(path, body bytes, extra headers, expected status) for each kind of request."""
    rng = random.Random(3)
    m = lambda n, d: [[round(rng.gauss(0, 1), 4) for _ in range(d)] for _ in range(n)]
    a, b = m(32, 64), m(32, 64)
    items = m(500, 32)
    users = m(20, 32)
    json_body = lambda o: json.dumps(o).encode()
    big = json_body({"a": m(200, 64), "top_k": 5})
    # 4 MiB of JSON whitespace, gzipped to a few KiB: past the 200x inflation ratio simserve
    # accepts beyond its first MiB, so 413 after inflating about 1 MiB.
    bomb = gzip.compress(b'{"a": ' + b" " * (4 << 20) + b"[[1, 2]]}")
    return [
        ("/similarity/pairwise", json_body({"a": a, "b": b}), {}, 200),
        ("/similarity/pairwise", json_body({"pairs": [[r, s] for r, s in zip(a, b)], "metric": "euclidean",
                                            "response_encoding": "base64"}), {}, 200),
        ("/similarity/matrix", json_body({"a": a, "b": b, "metric": "dot"}), {}, 200),
        ("/similarity/matrix", json_body({"a": b64(a), "threshold": 0.2, "exclude_self": True}), {}, 200),
        ("/similarity/matrix", big, {}, 200),
        ("/similarity/matrix", gzip.compress(big), {"Content-Encoding": "gzip", "Accept-Encoding": "zstd"}, 200),
        ("/similarity/user-item", json_body({"users": users, "items": b64(items), "top_k": 10,
                                             "exclude": [[i, i + 1] for i in range(20)],
                                             "item_ids": [f"sku-{i}" for i in range(500)]}), {}, 200),
        ("/similarity/user-item", json_body({"users": users, "items": items, "pairs": [[i, 3 * i] for i in range(20)],
                                             "metric": "manhattan"}), {}, 200),
        ("/similarity/matrix", json_body({"a": [[1, 2], [3]]}), {}, 422),
        ("/similarity/matrix", b'{"a": [[1, 2]', {}, 400),
        ("/similarity/nothing", b"{}", {}, 404),
        ("/similarity/matrix", json_body({"a": {"dtype": "float32", "shape": [1, 2], "data": "AACAPw=="}}), {}, 422),
        ("/similarity/matrix", bomb, {"Content-Encoding": "gzip"}, 413),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "simserve"], check=True, cwd=ROOT)
    require_free(PORT)
    server = subprocess.Popen([SERVER, "--addr", f"127.0.0.1:{PORT}", "--log", "warn"])
    try:
        wait_healthy(f"http://127.0.0.1:{PORT}")
        if server.poll() is not None:
            sys.exit(f"simserve exited with {server.returncode}")
        state, marks = soak(server, args.requests)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return report(state, marks)


def soak(server, requests):
    """Sends `requests` requests of mix() from 4 clients to `server`: the shared state (requests
    sent, wrong statuses, clients' errors) and the (requests, RSS MB, time) marks."""
    kinds = mix()
    lock = threading.Lock()
    state = {"sent": 0, "wrong": [], "crashed": [], "next_mark": 10_000}
    marks = [(0, memory_mb(server.pid), time.monotonic())]

    def client(offset):
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        i = offset
        while True:
            with lock:
                if state["sent"] >= requests:
                    return
                state["sent"] += 1
                n = state["sent"]
                if n >= state["next_mark"]:
                    marks.append((n, memory_mb(server.pid), time.monotonic()))
                    state["next_mark"] += 10_000
            path, body, headers, want = kinds[i % len(kinds)]
            i += 1
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
            response = conn.getresponse()
            response.read()
            if response.status != want:
                with lock:
                    state["wrong"].append((path, response.status, want))

    def guarded(offset):
        """client(offset), its error (if it stops on one) recorded for the run to fail on."""
        try:
            client(offset)
        except Exception:  # any error stops this client and fails the run
            with lock:
                state["crashed"].append(traceback.format_exc())

    threads = [threading.Thread(target=guarded, args=(k * 3,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1)
    marks.append((state["sent"], memory_mb(server.pid), time.monotonic()))
    return state, marks


def report(state, marks):
    """Prints the RSS marks and what went wrong; the exit status: 1 if anything did."""
    start = marks[0][2]
    for n, rss, at in marks:
        print(f"{n:>7} requests  {at - start:6.1f} s  RSS {rss:6.1f} MB")
    warm = next((m for m in marks if m[0] >= 10_000), None)
    last = marks[-1]
    if warm and last[0] > warm[0]:
        per_10k = (last[1] - warm[1]) / ((last[0] - warm[0]) / 10_000)
        print(f"growth after warm-up: {last[1] - warm[1]:+.1f} MB over {last[0] - warm[0]} requests "
              f"= {per_10k:+.2f} MB per 10,000; wrong statuses: {len(state['wrong'])}")
    else:
        print(f"no requests after the 10,000 of warm-up; wrong statuses: {len(state['wrong'])}")
    for wrong in state["wrong"][:10]:
        print("  ", wrong)
    for crash in state["crashed"]:
        print(f"a client stopped on an error:\n{crash}", file=sys.stderr)
    return 0 if not state["wrong"] and not state["crashed"] else 1


if __name__ == "__main__":
    sys.exit(main())
