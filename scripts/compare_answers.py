"""Sends one corpus of requests to two simserve builds and compares their answers byte for byte.

    python3 scripts/compare_answers.py path/to/old/simserve path/to/new/simserve

For refactors that must not change behaviour: every answer (status, content type, the
headers clients read, and the body with `request_id` removed) must be identical. The corpus
covers every operation and output form, every metric and encoding, gzip and zstd, and the
error catalogue (malformed and wrong-typed bodies, ragged and wrong-rank tensors, bad base64,
out-of-range indices, limits, 404, 405, 415, 413); `/openapi.yaml` is left out (its changes
show in git). Both servers run with the same flags, on
loopback. Exits 1 on any difference, printing the first few.
"""

import base64
import gzip
import http.client
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from simserve_proc import wait_healthy  # noqa: E402

FLAGS = ["--log", "warn", "--max-output-elements", "5000", "--max-body-bytes", "200000"]
HEADERS_COMPARED = ("content-type", "content-encoding", "retry-after", "www-authenticate",
                    "vary", "connection")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(values, shape, dtype="float32"):
    fmt = "<%d%s" % (len(values), "f" if dtype == "float32" else "d")
    return {"dtype": dtype, "shape": shape,
            "data": base64.b64encode(struct.pack(fmt, *values)).decode()}


def corpus():
    """(method, path, headers, body bytes) for every request to compare."""
    rng = random.Random(20261130)
    json_headers = {"content-type": "application/json"}
    out = []

    def post(path, body, headers=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        out.append(("POST", path, headers or json_headers, raw))

    def rows(n, d, scale=1.0):
        return [[round(rng.uniform(-1, 1) * scale, 6) for _ in range(d)] for _ in range(n)]

    metrics = ["cosine", "dot", "euclidean", "manhattan"]
    for metric in metrics:
        for encoding in ["json", "base64"]:
            a, b = rows(5, 7), rows(5, 7)
            common = {"metric": metric, "response_encoding": encoding}
            post("/similarity/pairwise", {"a": a, "b": b, **common})
            post("/similarity/pairwise", {"a": a[:1], "b": b, **common})
            post("/similarity/pairwise", {"pairs": [[x, y] for x, y in zip(a, b)], **common})
            post("/similarity/matrix", {"a": a, **common})
            post("/similarity/matrix", {"a": a, "b": rows(9, 7), **common})
            post("/similarity/matrix", {"a": [rows(4, 3), rows(4, 3)], **common})
            post("/similarity/matrix", {"a": a, "top_k": 2, "exclude_self": True, **common})
            post("/similarity/matrix", {"a": a, "b": b, "threshold": 0.1, **common})
            post("/similarity/matrix", {"a": [rows(4, 3), rows(4, 3)], "threshold": 0.2,
                                        "exclude_self": True, **common})
            users, items = rows(4, 6), rows(8, 6)
            post("/similarity/user-item", {"users": users, "items": items, **common})
            post("/similarity/user-item", {"users": users, "items": items,
                                           "pairs": [[0, 1], [3, 7], [2, 2]], **common})
            post("/similarity/user-item", {"users": users, "items": items, "top_k": 3,
                                           "exclude": [[1], [], [0, 7], [2]],
                                           "item_ids": [f"sku-{i}" for i in range(8)], **common})
            post("/similarity/user-item", {"users": users, "items": items, "threshold": 0.0,
                                           **common})
            flat = [v for row in a for v in row]
            post("/similarity/matrix", {"a": b64(flat, [5, 7]), **common})
            post("/similarity/matrix", {"a": b64(flat, [5, 7], "float64"), "top_k": 3, **common})
    # Zero vectors, huge values (overflow), ties.
    post("/similarity/matrix", {"a": [[0, 0], [0, 0], [1, 0]], "top_k": 2})
    post("/similarity/pairwise", {"a": [[3e38, 3e38]], "b": [[3e38, 3e38]], "metric": "dot"})
    post("/similarity/matrix", {"a": [[1, 1], [1, 1], [1, 1]], "top_k": 2, "metric": "dot"})
    # Compressed bodies and answers.
    body = json.dumps({"a": rows(30, 16)}).encode()
    post("/similarity/matrix", gzip.compress(body), {**json_headers, "content-encoding": "gzip"})
    out.append(("POST", "/similarity/matrix", {**json_headers, "accept-encoding": "gzip"}, body))
    out.append(("POST", "/similarity/matrix", {**json_headers, "accept-encoding": "zstd"}, body))
    # The error catalogue.
    for bad in [b"", b"[1]", b"{", b"{\"a\": [[1, 2]],}", b"null", b"{\"a\": [[1, 2]]} x",
                b"\xef\xbb\xbf{}", b"{\"a\": [[1, NaN]]}"]:
        post("/similarity/matrix", bad)
    for body in [
        {}, {"a": []}, {"a": [[]]}, {"a": [[1, 2], [3]]}, {"a": [[1, "x"]]}, {"a": [[1, None]]},
        {"a": [[[1]], [2]]}, {"a": [1, 2]}, {"a": [[1e39]]}, {"a": "abc"}, {"a": {"dtype": "x"}},
        {"a": {"dtype": "float32", "shape": [2, 2], "data": "!!"}},
        {"a": {"dtype": "float32", "shape": [2, 2], "data": "AAAA"}},
        {"a": {"dtype": "float32", "shape": [1, 1], "data": "AADAfw=="}},
        {"a": {"dtype": "float32", "shape": [1, 1], "data": "AACAPw==", "x": 1}},
        {"a": [[1, 2]], "b": [[1, 2, 3]]}, {"a": [[1, 2]], "metric": "jaccard"},
        {"a": [[1, 2]], "top_k": 0}, {"a": [[1, 2]], "top_k": -1}, {"a": [[1, 2]], "top_k": 1.5},
        {"a": [[1, 2]], "threshold": "high"}, {"a": [[1, 2]], "threshold": 1e40},
        {"a": [[1, 2]], "exclude_self": True}, {"a": [[1, 2]], "b": [[1, 2]], "exclude_self": True,
                                                "top_k": 1},
        {"a": [[1, 2]], "response_encoding": "hex"}, {"a": [[1, 2]], "unknown": 1},
        {"a": rows(100, 2)},
        {"a": [rows(2, 2)], "b": [rows(2, 2), rows(2, 2)]}, {"a": rows(2, 2), "b": [rows(2, 2)]},
    ]:
        post("/similarity/matrix", body)
    for body in [
        {"a": [[1, 2]]}, {"b": [[1, 2]]}, {"a": [[1, 2]], "b": [[1, 2]], "pairs": [[[1], [2]]]},
        {"pairs": [[[1, 2], [1, 2], [1, 2]]]}, {"a": rows(3, 2), "b": rows(2, 2)},
        {"pairs": [[1, 2]]},
    ]:
        post("/similarity/pairwise", body)
    users, items = rows(3, 2), rows(4, 2)
    for extra in [
        {"pairs": [[0, 9]]}, {"pairs": [[5, 0]]}, {"pairs": [[0]]}, {"pairs": [[0, -1]]},
        {"exclude": [[1]], "top_k": 1}, {"exclude": [[9], [], []], "top_k": 1},
        {"item_ids": ["x"], "top_k": 1}, {"item_ids": [1, 2, 3, 4], "top_k": 1},
        {"pairs": [[0, 0]], "top_k": 1}, {"exclude": [[0], [], []]}, {"item_ids": ["a"] * 4},
        {"items": rows(4, 3)},
    ]:
        post("/similarity/user-item", {"users": users, "items": items, **extra})
    post("/similarity/matrix", json.dumps({"a": rows(1, 2)}).encode(), {"content-type": "text/plain"})
    post("/similarity/matrix", body, {**json_headers, "content-encoding": "br"})
    post("/similarity/matrix", b"\x1f\x8b nonsense", {**json_headers, "content-encoding": "gzip"})
    post("/similarity/matrix", b" " * 300000)
    out.append(("GET", "/similarity/matrix", {}, b""))
    out.append(("DELETE", "/healthz", {}, b""))
    out.append(("GET", "/nowhere", {}, b""))
    out.append(("GET", "/healthz", {}, b""))
    out.append(("GET", "/readyz", {}, b""))
    return out


def answer(port, method, path, headers, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body or None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    kept = {k: response.getheader(k) for k in HEADERS_COMPARED}
    if (response.getheader("content-type") or "").startswith("application/problem+json"):
        problem = json.loads(data)
        problem.pop("request_id", None)
        data = json.dumps(problem, sort_keys=True).encode()
    return response.status, kept, data


def main():
    old, new = sys.argv[1], sys.argv[2]
    servers = []
    try:
        ports = []
        for binary in (old, new):
            port = free_port()
            servers.append(subprocess.Popen([binary, "--addr", f"127.0.0.1:{port}", *FLAGS]))
            wait_healthy(f"http://127.0.0.1:{port}")
            ports.append(port)
        requests = corpus()
        differ, statuses = [], {}
        for method, path, headers, body in requests:
            got = [answer(port, method, path, headers, body) for port in ports]
            statuses[got[1][0]] = statuses.get(got[1][0], 0) + 1
            if got[0] != got[1]:
                differ.append((method, path, body[:120], got))
        for method, path, body, (a, b) in differ[:5]:
            print(f"DIFFERS {method} {path} {body!r}\n  old: {str(a)[:300]}\n  new: {str(b)[:300]}")
        print("statuses:", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
        print(f"{len(requests) - len(differ)} passed, {len(differ)} failed")
        return 1 if differ else 0
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
