#!/usr/bin/env python3
"""RSS of a simserve binary under rounds of concurrent large requests.

    python3 bench/alloc.py target/release/simserve [ROUNDS] [CONCURRENCY]

Each round sends CONCURRENCY requests at once, alternating a 1000x768 base64 matrix (JSON
answer, 11 MB) and a 500 x 50000 x 64 user-item top-k; after each round it reads the server's
VmRSS. Prints the RSS after the first round, after the last, the growth between them, the
peak (VmHWM), and the RSS after 12 idle seconds and one small request. Run it once per allocator build to compare them.
It serves on port 18098, which must be free (the script checks).
"""

import base64
import json
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

from simserve_proc import require_free

PORT = 18098


def b64(x):
    x = np.ascontiguousarray(x, dtype="<f4")
    return {"dtype": "float32", "shape": list(x.shape), "data": base64.b64encode(x.tobytes()).decode()}


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith(key))


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    rng = np.random.default_rng(1)
    bodies = [
        ("/similarity/matrix", json.dumps({"a": b64(rng.standard_normal((1000, 768))),
                                           "b": b64(rng.standard_normal((1000, 768)))}).encode()),
        ("/similarity/user-item", json.dumps({"users": b64(rng.standard_normal((500, 64))),
                                              "items": b64(rng.standard_normal((50_000, 64))),
                                              "top_k": 20}).encode()),
    ]
    require_free(PORT)
    server = subprocess.Popen([binary, "--addr", f"127.0.0.1:{PORT}", "--log", "warn"])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        failures = []

        def send(path, body):
            req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=body,
                                         headers={"content-type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=120).read()
            except OSError as err:
                failures.append(err)

        series = []
        for r in range(rounds):
            threads = [threading.Thread(target=send, args=bodies[(r + i) % 2]) for i in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            series.append(status(server.pid, "VmRSS"))
        peak = status(server.pid, "VmHWM")
        # Idle, then one small request: what an allocator gives back once the burst is over.
        time.sleep(12)
        send("/similarity/pairwise", b'{"a": [[1, 0]], "b": [[0, 1]]}')
        idle = status(server.pid, "VmRSS")
    finally:
        server.terminate()
        server.wait()
    print(f"{binary}: {rounds} rounds x {concurrency} concurrent; RSS after round 1 {series[0]} MB, "
          f"after round {rounds} {series[-1]} MB (growth {series[-1] - series[0]} MB), peak {peak} MB, "
          f"after 12 s idle {idle} MB, failed {len(failures)}")
    print("RSS per round (MB):", " ".join(map(str, series)))


if __name__ == "__main__":
    main()
