#!/usr/bin/env python3
"""simserve against the Python service it replaces, on identical requests, in one run.

    python3 bench/run.py            # from the repository root; about 6 minutes
    python3 bench/run.py --write-requests DIR    # only writes the request files, 0.json ...
    python3 bench/run.py --only JSON --rounds 5  # scenarios whose name has "JSON", 5 rounds

It builds simserve (release), creates a venv with the pinned peer dependencies
(bench/peer/requirements.txt), writes the request files, starts simserve and the peer on
loopback (the peer twice: numpy's OpenBLAS with its default threads, and with one thread per
worker process; see PEER_BLAS), checks they give the same answers, drives each scenario with
wrk, and prints one table: requests/s (the peer's both ways), p50, p99, peak RSS, the ratio of
simserve to the faster peer, each server's CPU time per request (its worker processes
included) and the CPU wrk itself took, in cores, on the same machine. With `--rounds N` each
scenario is run N times, the servers alternating within each round, and every column is the
median over the rounds (the ratio is that of the medians); the requests/s of each round go to
stderr. `--only TEXT` keeps the scenarios whose name holds TEXT. After the table it names the
library simserve multiplies with, as its `simserve_matrix_products_info` metric says: what
`SIMSERVE_BLAS` (taken from this script's environment; `auto` when unset) chose, OpenBLAS where
the host has it (Debian's `libopenblas0`, which the image ships) and its kernels suit the
processor, else faer. A run on a host without the library does not measure what the image
serves.
Needs: cargo, python3, wrk (`apt-get install wrk`). Results: BENCHMARKS.md.
"""

import argparse
import base64
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "bench-venv")
SIMSERVE_PORT, PEER_PORT = 18091, 18092

# name, path, concurrency, seconds, request builder (numpy rng -> dict)
SCENARIOS = [
    ("pairwise 8x128, c=64", "/similarity/pairwise", 64, 10,
     lambda np, rng: {"a": js(rng, np, 8, 128), "b": js(rng, np, 8, 128)}),
    ("pairwise 256x384, c=8", "/similarity/pairwise", 8, 10,
     lambda np, rng: {"a": js(rng, np, 256, 384), "b": js(rng, np, 256, 384)}),
    ("matrix 1000x768 vs 1000x768, JSON", "/similarity/matrix", 2, 15,
     lambda np, rng: {"a": js(rng, np, 1000, 768), "b": js(rng, np, 1000, 768)}),
    ("matrix 1000x768 vs 1000x768, base64", "/similarity/matrix", 2, 15,
     lambda np, rng: {"a": b64(rng, np, 1000, 768), "b": b64(rng, np, 1000, 768),
                      "response_encoding": "base64"}),
    ("matrix top_k=10, 1000 vs 100000 x768, base64", "/similarity/matrix", 1, 20,
     lambda np, rng: {"a": b64(rng, np, 1000, 768), "b": b64(rng, np, 100_000, 768), "top_k": 10}),
    ("user-item top_k=20 + exclude, 500 x 50000 x64", "/similarity/user-item", 2, 15,
     lambda np, rng: {"users": b64(rng, np, 500, 64), "items": b64(rng, np, 50_000, 64), "top_k": 20,
                      "exclude": [sorted(set(rng.integers(0, 50_000, 50).tolist())) for _ in range(500)]}),
]


def js(rng, np, n, d):
    return np.round(rng.standard_normal((n, d)).astype(np.float32), 6).tolist()


def b64(rng, np, n, d):
    x = rng.standard_normal((n, d)).astype("<f4")
    return {"dtype": "float32", "shape": [n, d], "data": base64.b64encode(x.tobytes()).decode()}


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def venv_python():
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        sh(sys.executable, "-m", "venv", VENV)
    sh(python, "-m", "pip", "install", "--quiet", "-r", os.path.join(ROOT, "bench", "peer", "requirements.txt"),
       "threadpoolctl==3.8.0", "scikit-learn==1.9.1")
    return python


def write_requests(python, directory):
    """Request files are written by the venv's numpy, one per scenario."""
    code = f"""
import json, sys, numpy as np
sys.path.insert(0, {os.path.join(ROOT, 'bench')!r})
import run
rng = np.random.default_rng(7)
for i, (name, path, conc, secs, build) in enumerate(run.SCENARIOS):
    with open({directory!r} + f'/{{i}}.json', 'w') as f:
        json.dump(build(np, rng), f)
"""
    sh(python, "-c", code)


def clean_env():
    env = dict(os.environ)
    # Older-OpenBLAS workarounds set on some machines; they slow a current numpy.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    # Thread counts numpy's OpenBLAS reads: PEER_BLAS sets them, nothing else.
    for threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS"):
        env.pop(threads, None)
    return env


# The peer runs two ways, and each scenario's ratio is against the faster: numpy's OpenBLAS
# with its default threads (one per core in each of the two worker processes), and with one
# thread per worker, as a service of one process per core is usually deployed. With requests
# in flight on both workers the default puts four busy threads on two cores (the binary
# matrix at two connections served half the requests it does with one thread a worker);
# one request at a time gets both cores only with the default.
PEER_BLAS = (("default threads", {}), ("1 BLAS thread", {"OPENBLAS_NUM_THREADS": "1"}))


def peer_env(blas):
    """The environment of a peer started with `blas`, one of PEER_BLAS's settings."""
    return {**clean_env(), **blas}


def simserve_command(binary, port):
    """The command the bench scripts start simserve with: room for the largest request
    (the 414 MB top-k body), a queue for 64 connections, time for the slowest request."""
    return [binary, "--addr", f"127.0.0.1:{port}", "--max-body-bytes", "700000000",
            "--memory-budget-bytes", "12000000000", "--request-timeout", "120s",
            "--max-queue", "128", "--log", "warn"]


def wait_ready(port):
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def products_library(port):
    """The library simserve multiplies with, from its `simserve_matrix_products_info` metric
    (openblas or faer). Results depend on it, so the run says which."""
    try:
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError as err:
        return f"unknown ({err})"
    found = re.search(r'simserve_matrix_products_info\{library="(\w+)"\}', metrics)
    return found.group(1) if found else "unknown"


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def family(pid):
    """pid and its descendants."""
    pids, frontier = [pid], [pid]
    while frontier:
        out = subprocess.run(["pgrep", "-P", str(frontier.pop())], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        pids += children
        frontier += children
    return pids


def reset_peak(pid):
    for p in family(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def cpu_seconds(pid):
    """User + system CPU time of a server and its worker processes so far."""
    total = 0
    for p in family(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def peak_mb(pid):
    total = 0
    for p in family(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
        except (OSError, StopIteration):
            pass
    return total / 1024


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*all")
f:close()
"""


def request_files(prefix):
    """A new temporary folder holding the scenarios' request files (`INDEX.json`, written by
    `bench/run.py --write-requests` with the venv's numpy) and wrk's `post.lua`: the folder
    and the script's path. The caller removes the folder."""
    work = tempfile.mkdtemp(prefix=prefix)
    subprocess.run([os.path.join(VENV, "bin", "python"), os.path.join(ROOT, "bench", "run.py"),
                    "--write-requests", work], check=True)
    lua = os.path.join(work, "post.lua")
    with open(lua, "w") as f:
        f.write(LUA)
    return work, lua


def to_ms(value):
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def load(port, path, body_file, concurrency, seconds, lua_file):
    """wrk's rate, p50, p99, non-2xx count, requests done and its own CPU seconds."""
    threads = min(2, concurrency)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "120s",
         "-s", lua_file, f"http://127.0.0.1:{port}{path}"],
        env={**os.environ, "BODY_FILE": body_file}, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = int(errors.group(1)) if errors else 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    done = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, p50, p99, failed, done, wrk_cpu


def same_answer(ours, theirs):
    """Both servers agree: shapes equal, scores within 1e-4."""
    import numpy as np

    def values(x):
        if isinstance(x, dict):
            return np.frombuffer(base64.b64decode(x["data"]), "<f4").reshape(x["shape"])
        return np.asarray(x, dtype=np.float64)

    if ours["shape"] != theirs["shape"]:
        return False
    key = "matrix" if "matrix" in ours else "scores"
    return np.allclose(values(ours[key]), values(theirs[key]), atol=1e-4)


def kernel_line(python):
    """numpy's a @ b.T rate beside simserve's dot kernel (the same product), 1000x768x1000, same run;
    each runs untimed for half a second first, as `kernel_rate` does."""
    sh("cargo", "build", "--release", "--quiet", "--example", "kernel_rate", cwd=ROOT)
    binary = os.path.join(ROOT, "target", "release", "examples", "kernel_rate")
    code = ("import numpy as np, time, statistics as s\n"
            "a=np.random.rand(1000,768).astype(np.float32); b=np.random.rand(1000,768).astype(np.float32)\n"
            "w=time.perf_counter()\na@b.T\nwhile time.perf_counter()-w<0.5: a@b.T\nt=[]\n"
            "for _ in range(7):\n t0=time.perf_counter(); a@b.T; t.append(time.perf_counter()-t0)\n"
            "print(2*1000*768*1000/s.median(t)/1e9)")
    ours, theirs = [], []
    for _ in range(3):
        out = subprocess.run([binary, "dot", "1000", "768", "1000", "7"], capture_output=True, text=True).stdout
        ours.append(float(out.split("gflops=")[1]))
        theirs.append(float(subprocess.run([python, "-c", code], env=clean_env(), capture_output=True,
                                           text=True).stdout))
    o, t = statistics.median(ours), statistics.median(theirs)
    return f"GEMM 1000x768x1000: simserve dot kernel {o:.1f} GFLOP/s, numpy a @ b.T {t:.1f} GFLOP/s ({o / t:.2f}x)"


def main():
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        python = venv_python()
        os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])
    python = sys.executable
    if sys.argv[1:2] == ["--write-requests"]:
        write_requests(python, sys.argv[2])  # the request files alone, for profiling
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="rounds per scenario, servers alternating")
    parser.add_argument("--only", default="", help="keep the scenarios whose name holds this")
    parser.add_argument("--warm", type=int, default=0, metavar="SECONDS",
                        help="load each server this long, unmeasured, before a scenario's rounds")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.warm < 0:
        parser.error("--warm must be at least 0")
    chosen = [i for i, scenario in enumerate(SCENARIOS) if args.only in scenario[0]]
    if not chosen:
        sys.exit(f"no scenario's name holds {args.only!r}")
    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    work = tempfile.mkdtemp(prefix="simserve-bench-")
    write_requests(python, work)
    lua_file = os.path.join(work, "post.lua")
    with open(lua_file, "w") as f:
        f.write(LUA)

    simserve = subprocess.Popen(
        simserve_command(os.path.join(ROOT, "target", "release", "simserve"), SIMSERVE_PORT))
    peers = [(label, PEER_PORT + at, subprocess.Popen(
        [os.path.join(VENV, "bin", "uvicorn"), "app:app", "--app-dir", os.path.join(ROOT, "bench", "peer"),
         "--workers", "2", "--port", str(PEER_PORT + at), "--log-level", "warning", "--no-access-log"],
        env=peer_env(blas))) for at, (label, blas) in enumerate(PEER_BLAS)]
    servers = [("simserve", SIMSERVE_PORT, simserve), *peers]
    rows = []
    try:
        for _, port, _ in servers:
            wait_ready(port)
        library = products_library(SIMSERVE_PORT)
        for i in chosen:
            name, path, concurrency, seconds, _ = SCENARIOS[i]
            body_file = os.path.join(work, f"{i}.json")
            with open(body_file, "rb") as f:
                body = f.read()
            ours = post(SIMSERVE_PORT, path, body)
            for label, port, _ in peers:
                if not same_answer(ours, post(port, path, body)):
                    sys.exit(f"{name}: simserve and the peer ({label}) disagree")
            if args.warm:
                for label, port, _ in servers:
                    load(port, path, body_file, concurrency, args.warm, lua_file)
            rounds = {label: [] for label, _, _ in servers}
            for _ in range(args.rounds):
                for label, port, proc in servers:
                    time.sleep(0.5)  # the previous server's idle BLAS threads stop spinning
                    reset_peak(proc.pid)
                    cpu = cpu_seconds(proc.pid)
                    rps, p50, p99, failed, done, wrk_cpu = load(port, path, body_file, concurrency, seconds,
                                                                lua_file)
                    cpu_ms = (cpu_seconds(proc.pid) - cpu) * 1e3 / max(done, 1)
                    rounds[label].append((rps, p50, p99, peak_mb(proc.pid), failed, cpu_ms, wrk_cpu / seconds))
                faster_peer_rps = max(runs[-1][0] for label, runs in rounds.items() if label != "simserve")
                ratio = rounds["simserve"][-1][0] / max(faster_peer_rps, 1e-9)
                print(f"{name}: " + ", ".join(f"{label} {runs[-1][0]:.1f} req/s ({runs[-1][5]:.2f} ms CPU each)"
                                                for label, runs in rounds.items())
                      + f" ({ratio:.2f}x the faster peer)", file=sys.stderr)
            # Medians of every column but non-2xx answers, which are summed over the rounds.
            result = {label: tuple(sum(column) if at == 4 else statistics.median(column)
                                   for at, column in enumerate(zip(*runs)))
                      for label, runs in rounds.items()}
            rows.append((name, len(body) / 1e6, result))
    finally:
        for _, _, proc in servers:
            proc.terminate()
        for _, _, proc in servers:
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    default, one = (label for label, _ in PEER_BLAS)
    print(f"| scenario | body MB | simserve req/s | peer req/s ({default} / {one}) | ratio to the faster peer "
          "| simserve p50 / p99 ms | peer p50 / p99 ms | simserve peak RSS MB | peer peak RSS MB | non-2xx (s/p) "
          "| server CPU ms per request (s/p) | wrk CPU cores (s/p) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mb, r in rows:
        s = r["simserve"]
        # The peer's columns are those of its faster setting (its non-2xx: both settings').
        faster = max((label for label, _ in PEER_BLAS), key=lambda label: r[label][0])
        p = r[faster]
        both = " / ".join(f"{r[label][0]:.1f}" for label, _ in PEER_BLAS)
        failed = sum(r[label][4] for label, _ in PEER_BLAS)
        print(f"| {name} | {mb:.1f} | {s[0]:.1f} | {both} | {s[0] / p[0]:.1f}x ({faster}) "
              f"| {s[1]:.1f} / {s[2]:.1f} | {p[1]:.1f} / {p[2]:.1f} | {s[3]:.0f} | {p[3]:.0f} | {s[4]} / {failed} "
              f"| {s[5]:.2f} / {p[5]:.2f} | {s[6]:.2f} / {p[6]:.2f} |")
    print()
    print(f"simserve's matrix products: {library}")
    print(kernel_line(python))


if __name__ == "__main__":
    main()
