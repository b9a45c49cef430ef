#!/usr/bin/env python3
"""simserve's dense kernels against numpy (OpenBLAS) on the same shapes, in one run.

Rounds alternate between the two so machine noise hits both alike; the table shows medians
over rounds and the ratio. Usage (from the repository root):

    python3 bench/kernels_vs_numpy.py

It builds the example itself and re-runs under the bench venv (`bench/run.py` creates it,
with numpy, scikit-learn and threadpoolctl pinned).

The peer computes what a Python service would, to the same accuracy: cosine as normalised
rows times their transpose, dot as a @ b.T, euclidean as scikit-learn's
`euclidean_distances` on float32 input, which multiplies in float64 blocks as simserve does.
Before any timing, each metric's answer on the first shape is checked: simserve (the release
build, on a free loopback port, with the same `SIMSERVE_BLAS`) answers the same inputs through
POST /similarity/matrix, which computes with the kernel `kernel_rate` times, and no value may
differ from numpy's by more than 1e-4 of numpy's largest magnitude; the script exits otherwise.
Both sides run untimed for half a second before they are timed (`kernel_rate` does so itself).
"""

import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the bench venv)

if os.path.realpath(sys.prefix) != os.path.realpath(run.VENV):
    python = run.venv_python()
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])

import numpy as np  # noqa: E402
from sklearn.metrics.pairwise import euclidean_distances  # noqa: E402

SHAPES = [(1000, 768, 1000), (4096, 1024, 4096)]
METRICS = ["cosine", "dot", "euclidean"]
ROUNDS = 7
# Repeats per measurement, so that each lasts a few hundred milliseconds.
REPEATS = {(1000, 768, 1000): 21, (4096, 1024, 4096): 5}
# Seconds each side runs untimed before it is timed (`kernel_rate`'s WARM_UP).
WARM_UP = 0.5
# Largest difference from numpy's answer accepted, relative to its largest magnitude.
TOLERANCE = 1e-4


def inputs(n, d, m):
    """The two float32 matrices numpy multiplies for shape (n, d, m)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, d), dtype=np.float32) - 0.5
    b = rng.random((m, d), dtype=np.float32) - 0.5
    return a, b


def numpy_kernel(metric, a, b):
    """What a Python service computes for `metric` ("matmul": a @ b.T alone)."""
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-6)
        return np.clip(an @ bn.T, -1, 1)
    if metric in ("dot", "matmul"):
        return a @ b.T
    return euclidean_distances(a, b)


def numpy_rate(metric, n, d, m):
    a, b = inputs(n, d, m)
    warm = time.perf_counter()
    numpy_kernel(metric, a, b)
    while time.perf_counter() - warm < WARM_UP:
        numpy_kernel(metric, a, b)
    times = []
    for _ in range(REPEATS[(n, d, m)]):
        start = time.perf_counter()
        numpy_kernel(metric, a, b)
        times.append(time.perf_counter() - start)
    return 2 * n * d * m / statistics.median(times) / 1e9


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def b64(x):
    x = np.ascontiguousarray(x, dtype="<f4")
    return {"dtype": "float32", "shape": list(x.shape), "data": base64.b64encode(x.tobytes()).decode()}


def check_answers(server_binary, n, d, m):
    """Exits unless simserve's answer for each metric on (n, d, m) is numpy's within TOLERANCE
    (of numpy's largest magnitude); the largest relative difference per metric otherwise."""
    a, b = inputs(n, d, m)
    port = free_port()
    server = subprocess.Popen(run.simserve_command(server_binary, port), env=run.simserve_env())
    differences = {}
    try:
        run.wait_ready(port, server)
        for metric in METRICS:
            body = json.dumps({"a": b64(a), "b": b64(b), "metric": metric, "response_encoding": "base64"})
            answer = run.post(port, "/similarity/matrix", body.encode())["matrix"]
            ours = np.frombuffer(base64.b64decode(answer["data"]), "<f4").reshape(answer["shape"])
            theirs = numpy_kernel(metric, a, b)
            if ours.shape != theirs.shape:
                sys.exit(f"{metric} {n}x{d}x{m}: simserve answers shape {ours.shape}, numpy {theirs.shape}")
            scale = float(np.max(np.abs(theirs)))
            differences[metric] = float(np.max(np.abs(ours.astype(np.float64) - theirs))) / scale
            if not differences[metric] <= TOLERANCE:
                sys.exit(f"{metric} {n}x{d}x{m}: simserve and numpy differ by up to "
                         f"{differences[metric]:.2e} of numpy's largest value (over {TOLERANCE:g})")
    finally:
        server.terminate()
        server.wait()
    return differences


def simserve_rate(binary, metric, n, d, m):
    out = subprocess.run([binary, metric, str(n), str(d), str(m), str(REPEATS[(n, d, m)])],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split("gflops=")[1])


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "simserve", "--example", "kernel_rate"],
                   cwd=root, check=True)
    binary = os.path.join(root, "target", "release", "examples", "kernel_rate")
    n, d, m = SHAPES[0]
    checked = check_answers(os.path.join(root, "target", "release", "simserve"), n, d, m)
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}"
                         for i in threadpool_info())
    except ImportError:
        blas = "unknown"
    print(f"numpy {np.__version__} ({blas}); {os.cpu_count()} cpus; "
          f"{ROUNDS} rounds, medians")
    print(f"answers checked on {n}x{d}x{m}, largest difference from numpy relative to its largest value: "
          + ", ".join(f"{metric} {difference:.1e}" for metric, difference in checked.items()))
    print(f"{'kernel':<28}{'simserve GFLOP/s':>18}{'numpy GFLOP/s':>16}{'ratio':>8}")
    for n, d, m in SHAPES:
        for metric in METRICS:
            ours, theirs = [], []
            for _ in range(ROUNDS):
                ours.append(simserve_rate(binary, metric, n, d, m))
                theirs.append(numpy_rate(metric, n, d, m))
            o, t = statistics.median(ours), statistics.median(theirs)
            print(f"{metric + f' {n}x{d}x{m}':<28}{o:>18.1f}{t:>16.1f}{o / t:>8.2f}")
            sys.stdout.flush()
        matmul = statistics.median(numpy_rate("matmul", n, d, m) for _ in range(ROUNDS))
        print(f"{f'(numpy float32 a @ b.T {n}x{d}x{m})':<46}{matmul:>16.1f}")


if __name__ == "__main__":
    main()
