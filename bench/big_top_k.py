#!/usr/bin/env python3
"""1,000 users x 1,000,000 items x 64 dims, top_k 10, base64 input (a 342 MB body), sent twice
to a simserve this script starts (release build, port 18080); prints each answer's time, the
server's RSS (VmRSS) and peak RSS (VmHWM), and checks user 0's top 10 against numpy.

    python3 bench/big_top_k.py

Needs numpy, and port 18080 free. simserve runs with --max-body-bytes 500000000
--memory-budget-bytes 8000000000 --request-timeout 300s.
"""
import base64
import json
import os
import subprocess
import time
import urllib.request

import numpy as np

from simserve_proc import require_free, stop_all, wait_healthy

PORT = 18080
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def memory(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            print(line.strip())


def main():
    require_free(PORT)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    rng = np.random.default_rng(0)
    users = rng.standard_normal((1000, 64)).astype("<f4")
    items = rng.standard_normal((1_000_000, 64)).astype("<f4")

    def encoded(x):
        return {"dtype": "float32", "shape": list(x.shape), "data": base64.b64encode(x.tobytes()).decode()}

    body = json.dumps({"users": encoded(users), "items": encoded(items), "top_k": 10}).encode()
    print("body MB", len(body) / 1e6)
    server = subprocess.Popen([os.path.join(ROOT, "target", "release", "simserve"), "--addr", f"127.0.0.1:{PORT}",
                               "--max-body-bytes", "500000000", "--memory-budget-bytes", "8000000000",
                               "--request-timeout", "300s", "--log", "warn"])
    try:
        wait_healthy(f"http://127.0.0.1:{PORT}", seconds=30)
        memory(server.pid)
        for _ in range(2):
            start = time.time()
            request = urllib.request.Request(f"http://127.0.0.1:{PORT}/similarity/user-item", data=body,
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as response:
                out = json.loads(response.read())
                print("status", response.status, "seconds", round(time.time() - start, 2), out["shape"])
            memory(server.pid)
    finally:
        stop_all([server])
    # The reference for user 0.
    scores = (users[:1] / np.linalg.norm(users[:1])) @ (items / np.linalg.norm(items, axis=1, keepdims=True)).T
    print("top10 user0 ref", np.argsort(-scores[0], kind="stable")[:10].tolist())
    print("top10 user0 got", out["indices"][0])


if __name__ == "__main__":
    main()
