#!/usr/bin/env python3
"""simserve against the Python service it replaces, on identical requests, in one run.

    python3 bench/run.py            # from the repository root; about 6 minutes
    python3 bench/run.py --write-requests DIR    # only writes the request files, 0.json ...
    python3 bench/run.py --only JSON --rounds 5  # scenarios whose name has "JSON", 5 rounds

It builds simserve (release), creates a venv with the pinned peer dependencies
(bench/peer/requirements.txt: FastAPI on `uvicorn[standard]`, whose httptools parser and uvloop
event loop the peer is started with by name, so that a venv without them fails to start rather
than falls back to pure-Python h11 and asyncio), writes the request files, starts simserve and
the peer on loopback (the peer twice: numpy's OpenBLAS with its default threads, and with one
thread per worker process; see PEER_BLAS), checks they give the same answers (shapes, scores
within 1e-4, and for top-k the same indices but where near-tied scores swap them), drives each
scenario with wrk, and prints one table: requests/s (the peer's both ways), p50, p99, peak RSS,
the ratio of simserve to the faster peer, requests that failed (non-2xx answers and wrk's socket
errors), the fewest requests a server completed in one round, each server's CPU time per
request (its worker processes included) and the CPU wrk itself took, in cores, on the same
machine. With `--rounds N` each scenario is run N times, the order of the servers rotating from
round to round, and every column is the median over the rounds (the ratio is that of the
medians); the requests/s of each round go to stderr. `--only TEXT` keeps the scenarios whose
name holds TEXT.

A rate from wrk is requests completed in the run's seconds, so with a few slow requests it rests
on a count of a few (the top-k scenario at one connection: the peer takes 4-10 s a request,
so 4-10 in its 40 s). No ratio is computed from a round in which either server
completed fewer than MIN_DONE requests: the ratio reads "too few" and the completions are shown;
raise the scenario's seconds in SCENARIOS for a ratio there.

The peer's two worker processes share one listening socket and often take both connections of
a two-connection scenario in one worker, leaving the other idle. Its rounds are checked: one in
which a worker took less than half the busiest's CPU is run again (BALANCED, TRIES), and the
fastest of its tries is kept, so the rule can only favour the peer. Any server's round is run
again when the machine stalled it (STALLED) or one of its processes restarted, and requests
that failed in any try count. The line after the table counts the rounds run again.

simserve and the peer start with the same environment (`clean_env`), simserve's without any
`SIMSERVE_*` setting but `SIMSERVE_BLAS` and without jemalloc's `_RJEM_*` ones (its flags are
the script's); the settings left out are named after the table. After the table it names the
library simserve multiplies with, as its `simserve_matrix_products_info` metric says: what
`SIMSERVE_BLAS` (taken from this script's environment; `auto` when unset) chose, OpenBLAS where
the host has it (Debian's `libopenblas0`, which the image ships) and its kernels suit the
processor, else faer. A run on a host without the library does not measure what the image
serves.
Needs: cargo, python3, wrk (`apt-get install wrk`), ports 18091-18093 free. Results:
BENCHMARKS.md.
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

from simserve_proc import require_free, stop_all

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "bench-venv")
SIMSERVE_PORT, PEER_PORT = 18091, 18092  # the peers: PEER_PORT and PEER_PORT + 1
# Fewest requests a server must complete in a round for its rate to enter a ratio.
MIN_DONE = 3
# Scores at which two top-k answers list different indices must agree this closely (near-ties).
TIE = 1e-4
# The peer's worker processes (uvicorn --workers) and how it spreads connections: all of them
# wait on one listening socket, and uvloop accepts every connection pending when it wakes, so
# the two connections of a two-connection scenario often land in one worker, the other idle. A
# peer round in which its idlest worker took less than BALANCED of its busiest's CPU is run
# again, up to TRIES times in all, and its fastest try kept: the ratio is against the peer at
# its best, as it would use its two cores behind more clients.
PEER_WORKERS, BALANCED, TRIES = 2, 0.5, 4
# A round whose wrk run took over STALLED seconds more than asked was stalled by the machine
# (a paused virtual machine: wrk's rate is requests over its whole run) and is run again.
STALLED = 1.0

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
    ("matrix top_k=10, 1000 vs 100000 x768, base64", "/similarity/matrix", 1, 40,
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
    """The venv's python, the venv created if missing and the pinned packages installed into it
    every time (pip leaves those already at their pins alone), so that a changed
    requirements.txt reaches an existing venv."""
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        sh(sys.executable, "-m", "venv", VENV)
    sh(python, "-m", "pip", "install", "--quiet", "-r", os.path.join(ROOT, "bench", "peer", "requirements.txt"),
       "threadpoolctl==3.8.0", "scikit-learn==1.9.1")
    return python


def check_peer_venv():
    """Exits with a message unless the venv has the peer's HTTP stack (httptools, uvloop):
    without them uvicorn's supervisor would restart failing workers until wait_ready gave up."""
    missing = subprocess.run([os.path.join(VENV, "bin", "python"), "-c", "import httptools, uvloop"],
                             capture_output=True, text=True)
    if missing.returncode:
        sys.exit(f"the peer's venv ({VENV}) lacks httptools or uvloop (bench/peer/requirements.txt "
                 f"pins them): {(missing.stderr.strip().splitlines() or [''])[-1]}")


def peer_command(port, workers=PEER_WORKERS):
    """The command the bench scripts start the Python peer with: uvicorn with `workers` worker
    processes, its parser and event loop named (httptools, uvloop: what `uvicorn[standard]`
    deploys) so that it fails rather than falls back to pure-Python h11 and asyncio."""
    return [os.path.join(VENV, "bin", "uvicorn"), "app:app", "--app-dir", os.path.join(ROOT, "bench", "peer"),
            "--workers", str(workers), "--port", str(port), "--http", "httptools", "--loop", "uvloop",
            "--log-level", "warning", "--no-access-log"]


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


def left_out(name):
    """Whether simserve_env leaves the variable `name` out: simserve's own settings but
    SIMSERVE_BLAS (which this script passes on), and jemalloc's (`_RJEM_MALLOC_CONF`)."""
    return (name.startswith("SIMSERVE_") and name != "SIMSERVE_BLAS") or name.startswith("_RJEM_")


def simserve_env():
    """The environment simserve is started with: the peer's (clean_env) without the settings
    `left_out` names, so that only the script's flags configure it."""
    return {name: value for name, value in clean_env().items() if not left_out(name)}


def environment_line():
    """What of this script's environment reaches simserve, and what is left out."""
    kept = f"SIMSERVE_BLAS={os.environ['SIMSERVE_BLAS']}" if "SIMSERVE_BLAS" in os.environ else "SIMSERVE_BLAS unset"
    dropped = sorted(name for name in os.environ if left_out(name))
    return (f"simserve's environment: {kept}; left out: "
            + (", ".join(dropped) if dropped else "no other SIMSERVE_* or _RJEM_* setting"))


def simserve_command(binary, port):
    """The command the bench scripts start simserve with: room for the largest request
    (the 414 MB top-k body), a queue for 64 connections, time for the slowest request."""
    return [binary, "--addr", f"127.0.0.1:{port}", "--max-body-bytes", "700000000",
            "--memory-budget-bytes", "12000000000", "--request-timeout", "120s",
            "--max-queue", "128", "--log", "warn"]


def wait_ready(port, proc, seconds=60):
    """Returns once GET /healthz on `port` answers while `proc`, the server started for it, still
    runs: an answer from another server on the port, `proc` having failed to bind, is an error."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server started for port {port} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
        except OSError:
            time.sleep(0.1)
            continue
        time.sleep(0.2)  # a server that could not bind has had time to exit
        if proc.poll() is not None:
            raise RuntimeError(f"port {port} answers, but the server started for it exited with "
                               f"{proc.returncode}: another server holds the port")
        return
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


def cpu_by_process(pid):
    """User + system CPU seconds so far of a server and each of its worker processes: {pid: s}."""
    seconds = {}
    for p in family(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            seconds[p] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return seconds


def cpu_seconds(pid):
    """User + system CPU time of a server and its worker processes so far."""
    return sum(cpu_by_process(pid).values())


def worker_split(before, after, workers):
    """The CPU seconds each of a server's `workers` busiest processes took between two
    cpu_by_process readings, busiest first, over the processes in both."""
    taken = sorted((after[p] - before[p] for p in after.keys() & before.keys()), reverse=True)
    return (taken + [0.0] * workers)[:workers]


def lopsided(split):
    """Whether a round's worker split (worker_split) left a worker mostly idle: the idlest took
    less than BALANCED of the busiest's CPU."""
    return split[0] > 0 and split[-1] < BALANCED * split[0]


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


def wrk_failures(out):
    """Requests that failed in wrk's report `out`: answers other than 2xx or 3xx, and socket
    errors (connect, read, write, timeout; wrk prints the line only when one happened)."""
    answers = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (int(answers.group(1)) if answers else 0) + (sum(map(int, sockets.groups())) if sockets else 0)


def load(port, path, body_file, concurrency, seconds, lua_file):
    """wrk's rate, p50, p99, failed requests (non-2xx answers and socket errors, wrk_failures),
    requests done, its own CPU seconds and the seconds its run took (over `seconds` only when
    the machine stalled: wrk does not wait for requests in flight)."""
    threads = min(2, concurrency)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "120s",
         "-s", lua_file, f"http://127.0.0.1:{port}{path}"],
        env={**os.environ, "BODY_FILE": body_file}, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    failed = wrk_failures(out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    done, took = re.search(r"(\d+) requests in (\S+),", out).groups()
    return rps, p50, p99, failed, int(done), wrk_cpu, to_ms(took) / 1e3


def decoded(x):
    """An answer's array: base64 float32 as its shape says, or nested JSON numbers."""
    import numpy as np
    if isinstance(x, dict):
        return np.frombuffer(base64.b64decode(x["data"]), "<f4").reshape(x["shape"]).astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def answer_difference(ours, theirs):
    """How two answers to one request differ, or None when they agree: the same `shape`, the
    same fields, every array of exactly that shape (nothing broadcast), scores (or the matrix)
    within 1e-4, and top-k `indices` equal but for near-ties (tie_difference)."""
    import numpy as np

    if ours["shape"] != theirs["shape"]:
        return f"shapes {ours['shape']} and {theirs['shape']}"
    shape = tuple(ours["shape"])
    fields = [key for key in ("matrix", "scores", "indices") if key in ours or key in theirs]
    for key in fields:
        if key not in ours or key not in theirs:
            return f"{key!r} in one answer only"
    values = {key: (decoded(ours[key]), decoded(theirs[key])) for key in fields}
    for key, (a, b) in values.items():
        if a.shape != shape or b.shape != shape:
            return f"{key!r} of shapes {a.shape} and {b.shape}, the answers' shape being {shape}"
    key = "matrix" if "matrix" in values else "scores"
    a, b = values[key]
    if not np.allclose(a, b, atol=1e-4):
        return f"{key!r} differ by up to {np.nanmax(np.abs(a - b)):.2e}"
    if "indices" in values:
        for row, (ia, ib, sa, sb) in enumerate(zip(*values["indices"], a, b)):
            difference = tie_difference(ia.tolist(), ib.tolist(), sa, sb)
            if difference:
                return f"row {row}: {difference}"
    return None


def tie_difference(ia, ib, sa, sb):
    """How two top-k lists of one row (indices `ia`, `ib`, scores best first `sa`, `sb`) differ
    beyond near-ties, or None. Each list's indices must be distinct. Where the lists hold
    different items at a position (x in one, y in the other), the two scores there must agree
    within TIE, and each answer that lists both x and y must score them within TIE of each
    other: tied items may come in either order, and at the k-th place either may be listed."""
    if len(set(ia)) != len(ia) or len(set(ib)) != len(ib):
        return "an index listed twice"
    at_a, at_b = {item: at for at, item in enumerate(ia)}, {item: at for at, item in enumerate(ib)}
    for at, (x, y) in enumerate(zip(ia, ib)):
        if x == y:
            continue
        gaps = [abs(sa[at] - sb[at])]
        if x in at_b:  # the other answer's scores of y (here) and of x
            gaps.append(abs(sb[at] - sb[at_b[x]]))
        if y in at_a:  # this answer's scores of x (here) and of y
            gaps.append(abs(sa[at] - sa[at_a[y]]))
        if max(gaps) > TIE:
            return (f"position {at} lists {x:.0f} (score {sa[at]:.7f}) and {y:.0f} (score {sb[at]:.7f}), "
                    f"not a near-tie (scores {max(gaps):.1e} apart)")
    return None


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
        out = subprocess.run([binary, "dot", "1000", "768", "1000", "7"], env=simserve_env(), capture_output=True,
                             text=True).stdout
        ours.append(float(out.split("gflops=")[1]))
        theirs.append(float(subprocess.run([python, "-c", code], env=clean_env(), capture_output=True,
                                           text=True).stdout))
    o, t = statistics.median(ours), statistics.median(theirs)
    return f"GEMM 1000x768x1000: simserve dot kernel {o:.1f} GFLOP/s, numpy a @ b.T {t:.1f} GFLOP/s ({o / t:.2f}x)"


def ratio_text(results, digits=2):
    """simserve's requests/s over the faster peer's, from `results` ({label: (rps, ..., done)}),
    or "too few" when simserve or that peer completed fewer than MIN_DONE requests (in a round:
    `done` is a round's count, or the fewest of the rounds)."""
    faster = max((label for label, _ in PEER_BLAS), key=lambda label: results[label][0])
    ours, theirs = results["simserve"], results[faster]
    if min(ours[7], theirs[7]) < MIN_DONE:
        return f"too few (done {ours[7]} / {theirs[7]})"
    return f"{ours[0] / max(theirs[0], 1e-9):.{digits}f}x"


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
    check_peer_venv()
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="rounds per scenario, the servers' order rotating")
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

    for port in (SIMSERVE_PORT, *(PEER_PORT + at for at in range(len(PEER_BLAS)))):
        require_free(port)
    rows = []
    again = []  # per scenario: the rounds run again, stalled or lopsided
    servers = []
    try:
        simserve = subprocess.Popen(
            simserve_command(os.path.join(ROOT, "target", "release", "simserve"), SIMSERVE_PORT), env=simserve_env())
        servers.append(("simserve", SIMSERVE_PORT, simserve))
        for at, (label, blas) in enumerate(PEER_BLAS):
            servers.append((label, PEER_PORT + at, subprocess.Popen(peer_command(PEER_PORT + at), env=peer_env(blas))))
        peers = servers[1:]
        for _, port, proc in servers:
            wait_ready(port, proc)
        library = products_library(SIMSERVE_PORT)
        for i in chosen:
            name, path, concurrency, seconds, _ = SCENARIOS[i]
            body_file = os.path.join(work, f"{i}.json")
            with open(body_file, "rb") as f:
                body = f.read()
            ours = post(SIMSERVE_PORT, path, body)
            for label, port, _ in peers:
                difference = answer_difference(ours, post(port, path, body))
                if difference:
                    sys.exit(f"{name}: simserve and the peer ({label}) disagree: {difference}")
            if args.warm:
                for label, port, _ in servers:
                    load(port, path, body_file, concurrency, args.warm, lua_file)
            rounds = {label: [] for label, _, _ in servers}
            rerun = {label: 0 for label, _, _ in servers}  # rounds run again: stalled, or lopsided
            kept_problem = {label: 0 for label, _, _ in servers}  # none of the TRIES clean
            for round_ in range(args.rounds):
                # The order rotates, so that no server always runs first (or after a given one).
                at = round_ % len(servers)
                for label, port, proc in servers[at:] + servers[:at]:
                    # A round is run again (up to TRIES times in all) when wrk's run took longer
                    # than asked (the machine stalled: wrk's rate is over its whole run), when
                    # the server's processes changed (a worker restarted: its CPU is lost), or
                    # for the peer, when the scenario has a connection for each worker and one
                    # of them stayed mostly idle (BALANCED). Of the peer's tries the fastest is
                    # kept, so that the rule can only favour it; failures of every try count.
                    checked = label != "simserve" and concurrency >= PEER_WORKERS
                    tries = []
                    for attempt in range(1, TRIES + 1):
                        time.sleep(0.5)  # the previous server's idle BLAS threads stop spinning
                        reset_peak(proc.pid)
                        cpu = cpu_by_process(proc.pid)
                        rps, p50, p99, failed, done, wrk_cpu, took = load(port, path, body_file, concurrency,
                                                                          seconds, lua_file)
                        after = cpu_by_process(proc.pid)
                        cpu_ms = (sum(after.values()) - sum(cpu.values())) * 1e3 / max(done, 1)
                        split = worker_split(cpu, after, PEER_WORKERS)
                        problem = (f"wrk's run took {took:.1f} s of {seconds}" if took > seconds + STALLED else
                                   "its processes changed (a worker restarted)" if after.keys() != cpu.keys() else
                                   "its workers at " + " and ".join(f"{s / seconds:.2f}" for s in split) + " cores"
                                   if checked and lopsided(split) else None)
                        tries.append(((rps, p50, p99, peak_mb(proc.pid), failed, cpu_ms, wrk_cpu / seconds, done),
                                      problem))
                        if problem is None:
                            break
                        print(f"{name}: {label} {rps:.1f} req/s, {problem}; "
                              + ("again" if attempt < TRIES else f"no clean try in {TRIES}"), file=sys.stderr)
                    # The peer's fastest try, lopsided or not; simserve's last (run again only
                    # when stalled or restarted).
                    runs = [run for run, _ in tries]
                    kept = max(runs, key=lambda run: run[0]) if label != "simserve" else runs[-1]
                    rerun[label] += len(tries) - 1
                    kept_problem[label] += tries[-1][1] is not None
                    failed_tries = sum(run[4] for run, _ in tries)
                    rps, p50, p99, peak, _, cpu_ms, wrk_cores, done = kept
                    rounds[label].append((rps, p50, p99, peak, failed_tries, cpu_ms, wrk_cores, done))
                last = {label: runs[-1] for label, runs in rounds.items()}
                print(f"{name}: " + ", ".join(f"{label} {run[0]:.1f} req/s ({run[7]} done, {run[5]:.2f} ms CPU "
                                                f"each)" for label, run in last.items())
                      + f" ({ratio_text(last)} the faster peer)", file=sys.stderr)
            # Medians of every column but failed requests, summed over the rounds, and requests
            # done, the fewest of any round.
            result = {label: tuple(sum(column) if at == 4 else min(column) if at == 7 else statistics.median(column)
                                   for at, column in enumerate(zip(*runs)))
                      for label, runs in rounds.items()}
            rows.append((name, len(body) / 1e6, result))
            if any(rerun.values()) or any(kept_problem.values()):
                again.append(f"{name}: " + ", ".join(
                    f"{label} {rerun[label]} run again, {kept_problem[label]} never clean" for label, _, _ in servers))
    finally:
        stop_all([proc for _, _, proc in servers])
        shutil.rmtree(work, ignore_errors=True)

    default, one = (label for label, _ in PEER_BLAS)
    print(f"| scenario | body MB | simserve req/s | peer req/s ({default} / {one}) | ratio to the faster peer "
          "| simserve p50 / p99 ms | peer p50 / p99 ms | simserve peak RSS MB | peer peak RSS MB "
          "| failed: non-2xx or socket errors (s/p) | fewest done in a round (s/p) "
          "| server CPU ms per request (s/p) | wrk CPU cores (s/p) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mb, r in rows:
        s = r["simserve"]
        # The peer's columns are those of its faster setting (its failures: both settings').
        faster = max((label for label, _ in PEER_BLAS), key=lambda label: r[label][0])
        p = r[faster]
        both = " / ".join(f"{r[label][0]:.1f}" for label, _ in PEER_BLAS)
        failed = sum(r[label][4] for label, _ in PEER_BLAS)
        print(f"| {name} | {mb:.1f} | {s[0]:.1f} | {both} | {ratio_text(r, 1)} ({faster}) "
              f"| {s[1]:.1f} / {s[2]:.1f} | {p[1]:.1f} / {p[2]:.1f} | {s[3]:.0f} | {p[3]:.0f} | {s[4]} / {failed} "
              f"| {s[7]} / {p[7]} | {s[5]:.2f} / {p[5]:.2f} | {s[6]:.2f} / {p[6]:.2f} |")
    print()
    print(f"Rounds run again (up to {TRIES} times in all), wrk's run over its seconds by {STALLED} s, a worker "
          f"restarted, or a peer worker below {BALANCED} of the busiest's CPU: "
          + ("; ".join(again) if again else "none"))
    print(f"simserve's matrix products: {library}")
    print(environment_line())
    print(kernel_line(python))


if __name__ == "__main__":
    main()
