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
"""

import os
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


def numpy_rate(metric, n, d, m):
    rng = np.random.default_rng(0)
    a = rng.random((n, d), dtype=np.float32) - 0.5
    b = rng.random((m, d), dtype=np.float32) - 0.5

    def run():
        if metric == "cosine":
            an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)
            bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-6)
            return np.clip(an @ bn.T, -1, 1)
        if metric in ("dot", "matmul"):
            return a @ b.T
        return euclidean_distances(a, b)

    run()
    times = []
    for _ in range(REPEATS[(n, d, m)]):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 2 * n * d * m / statistics.median(times) / 1e9


def simserve_rate(binary, metric, n, d, m):
    out = subprocess.run([binary, metric, str(n), str(d), str(m), str(REPEATS[(n, d, m)])],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split("gflops=")[1])


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "kernel_rate"],
                   cwd=root, check=True)
    binary = os.path.join(root, "target", "release", "examples", "kernel_rate")
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}"
                         for i in threadpool_info())
    except ImportError:
        blas = "unknown"
    print(f"numpy {np.__version__} ({blas}); {os.cpu_count()} cpus; "
          f"{ROUNDS} rounds, medians")
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
