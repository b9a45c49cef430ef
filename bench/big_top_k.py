#!/usr/bin/env python3
"""1,000 users x 1,000,000 items x 64 dims, top_k 10, base64 input, sent twice to a running
simserve on port 18080 (start it with --max-body-bytes 500000000 --memory-budget-bytes 8000000000); prints time, RSS (VmRSS) and
peak RSS (VmHWM) of the server, and checks user 0's top 10 against numpy.

    target/release/simserve --addr 127.0.0.1:18080 --max-body-bytes 500000000 --memory-budget-bytes 8000000000 --request-timeout 300s &
    python3 bench/big_top_k.py
"""
import base64, json, time, urllib.request, numpy as np, subprocess
rng = np.random.default_rng(0)
users = rng.standard_normal((1000, 64)).astype('<f4')
items = rng.standard_normal((1_000_000, 64)).astype('<f4')
enc = lambda x: {"dtype": "float32", "shape": list(x.shape), "data": base64.b64encode(x.tobytes()).decode()}
body = json.dumps({"users": enc(users), "items": enc(items), "top_k": 10}).encode()
print("body MB", len(body)/1e6)
pid = subprocess.check_output(["pgrep", "-f", "target/release/simserve"]).split()[0].decode()
def hwm():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmHWM", "VmRSS")): print(line.strip())
hwm()
for _ in range(2):
    t = time.time()
    r = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:18080/similarity/user-item", data=body, headers={"content-type": "application/json"}))
    out = json.loads(r.read())
    print("status", r.status, "seconds", round(time.time() - t, 2), out["shape"])
    hwm()
# reference check for user 0
s = (users[:1] / np.linalg.norm(users[:1])) @ (items / np.linalg.norm(items, axis=1, keepdims=True)).T
print("top10 user0 ref", np.argsort(-s[0], kind="stable")[:10].tolist())
print("top10 user0 got", out["indices"][0])
