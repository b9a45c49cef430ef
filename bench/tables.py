#!/usr/bin/env python3
"""Server-side tables: one user, and a thousand, against a 1,000,000 x 64 table, in one run.

    python3 bench/tables.py                 # from the repository root; about 6 minutes
    python3 bench/tables.py --phases        # also times variants of the one-user request
    python3 bench/tables.py --simserve BINARY --rounds 20 --queries 25 --batch-rounds 5

simserve is target/release/simserve unless --simserve or SIMSERVE_BIN names another
(`cargo build --release` first). The script needs the peer's pinned dependencies
(bench/peer/requirements.txt, with uvicorn's httptools and uvloop, which the peer is started
with by name) and faiss-cpu; when the running python lacks them it installs them into
target/bench-venv (as bench/run.py does) and runs itself again there. It serves on ports
18100-18102, which must be free (it checks).

It writes items.npy (1,000,000 x 64 float32, standard normal, seed 1) and users.npy
(1,000 x 64, seed 2) to a temporary directory, starts `simserve --tables DIR` and the Python
peer (bench/peer/app.py with PEER_TABLES=DIR: the same table loaded and normalised once, one
uvicorn worker, since one keep-alive connection is served by one worker anyway), and compares,
in rounds that interleave every contender (the order rotates each round):

- one user against the whole table, top_k 10: simserve and the peer over HTTP on one
  keep-alive connection (`{"users": [[64 JSON floats]], "items": {"table": "items"}}`),
  numpy in this process (`normalised @ q`, argpartition, sort of the 10), faiss IndexFlatIP
  on the normalised table (one query per search, default threads, and one thread);
- 1,000 users against it, top_k 10: simserve with the users named (`{"table": "users"}`) and
  sent inline as base64, faiss with the 1,000 normalised queries in one search (its default
  settings, and for information with BLAS forced: distance_compute_blas_threshold = 20);
- simserve's peak RSS (VmHWM) after loading and after the queries, against the table's size;
- a reload: a new items.npy (seed 11) written under a hidden name and renamed into place,
  POST /tables/reload timed while VmRSS is sampled every 2 ms, the version in GET /tables
  checked, and a query answered from the new table.

With --phases, simserve answers variants of the one-user request in the same way (top_k 1,
metric dot, the user as base64, a 100,000-row table served by a second simserve, and GET
/healthz for HTTP alone), to show what each part of its time costs.

Answers are checked first: simserve's, the peer's and faiss's top 10 against numpy's (equal
indices, or scores equal within 1e-5 where near-ties reorder them). Latencies are pooled over
the rounds (p50, p99); queries/s is the median over rounds of queries / wall time of the
block; ratios are also given per round. simserve computes at niceness 10 (src/cpu.rs); this
process (numpy, faiss, the HTTP clients) and the peer compute at 10 too (--niceness), so that
other work on a shared machine weighs on every contender alike, and that other work (CPU time
of processes other than these, in cores) is reported. Results: BENCHMARKS.md.
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from simserve_proc import require_free, stop_all

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "bench-venv")
FAISS = "faiss-cpu==1.15.1"
SIMSERVE_PORT, PEER_PORT = 18100, 18101  # and SIMSERVE_PORT + 2 for --phases' second simserve
ROWS, USERS, DIM, K = 1_000_000, 1_000, 64, 10
USER_ITEM = "/similarity/user-item"
HEADERS = {"content-type": "application/json"}
# simserve's compute threads run this much nicer than its runtime (src/cpu.rs). By default this
# process's threads and the peer compute at it too, so that other work on a shared machine
# weighs on every contender alike (on an idle machine niceness changes nothing).
COMPUTE_NICENESS = 10
# Rounds during which the rest of the machine used less CPU than this are also summarised alone.
QUIET_CORES = 0.1


# --- environment --------------------------------------------------------------------------

def ensure_deps():
    """Runs the script again in target/bench-venv unless this python has what it needs."""
    try:
        import faiss  # noqa: F401
        import fastapi  # noqa: F401
        import httptools  # noqa: F401
        import numpy  # noqa: F401
        import orjson  # noqa: F401
        import uvicorn  # noqa: F401
        import uvloop  # noqa: F401
        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        sys.exit("target/bench-venv lacks a dependency even after installing")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-r",
                    os.path.join(ROOT, "bench", "peer", "requirements.txt"), FAISS], check=True)
    os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])


def lower_threads(niceness):
    """Every thread of this process to `niceness` (Linux niceness is per thread; threads
    started later inherit it from the thread that starts them)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), niceness)
        except OSError:
            pass


def clean_env():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)  # older-OpenBLAS workarounds slow a current numpy
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def status(pid):
    """Fields of /proc/PID/status in kB (VmRSS, VmHWM, RssAnon, RssFile)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def family(pid):
    pids, frontier = [pid], [pid]
    while frontier:
        out = subprocess.run(["pgrep", "-P", str(frontier.pop())], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        pids += children
        frontier += children
    return pids


class OtherLoad:
    """CPU the rest of the machine used (cores) between two calls: all busy time from
    /proc/stat less the time of this process, simserve and the peer."""

    def __init__(self, pids):
        self.pids = pids
        self.last = self._sample()

    def _sample(self):
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]
        ours = 0
        for pid in self.pids:
            for p in family(pid):
                try:
                    with open(f"/proc/{p}/stat") as f:
                        stat = f.read().rsplit(")", 1)[1].split()
                    ours += int(stat[11]) + int(stat[12])
                except (OSError, IndexError, ValueError):
                    pass
        return time.monotonic(), busy, ours

    def cores(self):
        now = self._sample()
        (t0, busy0, ours0), (t1, busy1, ours1) = self.last, now
        self.last = now
        return max(0, (busy1 - busy0) - (ours1 - ours0)) / os.sysconf("SC_CLK_TCK") / (t1 - t0)


# --- servers ------------------------------------------------------------------------------

def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(port, path, proc, seconds=300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with {proc.returncode}")
        try:
            if get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not answer {path} with 200")


class Client:
    """One keep-alive connection; post() returns the decoded answer (an error on non-200).
    Servers close idle connections (simserve after --header-timeout, uvicorn after 5 s), so a
    timed block starts on a fresh() connection; one closed anyway is reopened and counted."""

    reconnects = 0

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def fresh(self):
        self.conn.close()
        self.conn.connect()

    def post(self, path, body):
        try:
            self.conn.request("POST", path, body, HEADERS)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            Client.reconnects += 1
            self.conn.close()
            self.conn.request("POST", path, body, HEADERS)
            response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:300]!r}")
        return json.loads(data)


# --- the measurements ---------------------------------------------------------------------

def timed(fn, items):
    """Per-item latencies (s) of fn over items, and the wall time of the whole block."""
    latencies = []
    start = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - start


def concurrent(port, bodies, clients):
    """Wall time of `bodies` sent by `clients` connections at once, shared out in turn."""
    shares = [bodies[i::clients] for i in range(clients)]
    conns = [Client(port) for _ in range(clients)]
    for conn, share in zip(conns, shares):
        conn.post(USER_ITEM, share[0])  # connect outside the timing
    errors = []

    def run(conn, share):
        try:
            for body in share:
                conn.post(USER_ITEM, body)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(conns, shares)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def same_top(np, got_idx, got_scores, ref_scores_row, what):
    """got (indices, scores) is a correct top-k of one row whose every score is ref_scores_row:
    indices equal to the reference's, or (near-ties) the scores at the indices given equal
    the reference's within 1e-5 and the sorted score lists agree within 1e-5."""
    got_idx = np.asarray(got_idx, dtype=np.int64)
    got_scores = np.asarray(got_scores, dtype=np.float64)
    part = np.argpartition(-ref_scores_row, K - 1)[:K]
    want_idx = part[np.argsort(-ref_scores_row[part], kind="stable")]
    want_scores = ref_scores_row[want_idx].astype(np.float64)
    if np.array_equal(got_idx, want_idx) and np.allclose(got_scores, want_scores, atol=1e-5):
        return "same indices"
    ok = (len(set(got_idx.tolist())) == K
          and np.allclose(np.sort(got_scores), np.sort(want_scores), atol=1e-5)
          and np.allclose(ref_scores_row[got_idx], got_scores, atol=1e-5))
    if not ok:
        sys.exit(f"{what}: top {K} differs from numpy's: {got_idx.tolist()} {got_scores.tolist()} "
                 f"against {want_idx.tolist()} {want_scores.tolist()}")
    return "near-ties reordered"


def b64(np, x):
    x = np.ascontiguousarray(x, dtype="<f4")
    return {"dtype": "float32", "shape": list(x.shape), "data": base64.b64encode(x.tobytes()).decode()}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def save(np, path, array):
    with open(path, "wb") as f:  # np.save on a name appends .npy; a file object keeps the name
        np.save(f, array)


def main():
    ensure_deps()
    import faiss
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simserve", default=os.environ.get("SIMSERVE_BIN",
                                                             os.path.join(ROOT, "target", "release", "simserve")))
    parser.add_argument("--rounds", type=int, default=20, help="rounds of one-user queries")
    parser.add_argument("--queries", type=int, default=25, help="one-user queries per contender per round")
    parser.add_argument("--batch-rounds", type=int, default=5, help="rounds of 1,000-user requests")
    parser.add_argument("--phases", action="store_true", help="also time variants of the one-user request")
    parser.add_argument("--niceness", type=int, default=COMPUTE_NICENESS,
                        help="niceness this process and the peer compute at (simserve computes at 10); 0 keeps "
                             "the default")
    args = parser.parse_args()
    if not os.path.exists(args.simserve):
        sys.exit(f"{args.simserve} does not exist: cargo build --release, or pass --simserve")

    work = tempfile.mkdtemp(prefix="simserve-tables-")
    procs = []
    try:
        run(np, faiss, args, work, procs)
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


def run(np, faiss, args, work, procs):
    for port in (SIMSERVE_PORT, PEER_PORT, SIMSERVE_PORT + 2):
        require_free(port)
    out = {}
    items = np.random.default_rng(1).standard_normal((ROWS, DIM), dtype=np.float32)
    users = np.random.default_rng(2).standard_normal((USERS, DIM), dtype=np.float32)
    save(np, os.path.join(work, "items.npy"), items)
    save(np, os.path.join(work, "users.npy"), users)
    if args.phases:  # the first 100,000 rows, served by a second simserve
        os.mkdir(os.path.join(work, "small"))
        save(np, os.path.join(work, "small", "items.npy"), items[:100_000])
    table_bytes = items.nbytes
    del items
    log = open(os.path.join(work, "simserve.log"), "w")
    started = time.perf_counter()
    simserve = subprocess.Popen(
        [args.simserve, "--addr", f"127.0.0.1:{SIMSERVE_PORT}", "--tables", work, "--log", "warn",
         "--request-timeout", "600s"], stdout=log, stderr=log)
    procs.append(simserve)
    wait_for(SIMSERVE_PORT, "/readyz", simserve)
    out["load_s"] = time.perf_counter() - started
    out["rss_loaded"] = status(simserve.pid)
    small = None
    if args.phases:
        small = subprocess.Popen([args.simserve, "--addr", f"127.0.0.1:{SIMSERVE_PORT + 2}", "--tables",
                                  os.path.join(work, "small"), "--log", "warn"])
        procs.append(small)
        wait_for(SIMSERVE_PORT + 2, "/readyz", small)
    # From here on this process (numpy, faiss) and the peer compute at simserve's compute niceness.
    lower_threads(args.niceness)
    peer = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", os.path.join(ROOT, "bench", "peer"),
         "--workers", "1", "--port", str(PEER_PORT), "--http", "httptools", "--loop", "uvloop",
         "--log-level", "warning", "--no-access-log"],
        env={**clean_env(), "PEER_TABLES": work})
    procs.append(peer)
    wait_for(PEER_PORT, "/healthz", peer)

    # In this process: the table as numpy loads it, normalised once; faiss over the same rows.
    table = np.load(os.path.join(work, "items.npy"))
    normalised = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-6)
    del table
    index = faiss.IndexFlatIP(DIM)
    xb = normalised.copy()
    faiss.normalize_L2(xb)
    index.add(xb)
    del xb
    default_threads = faiss.omp_get_max_threads()
    default_blas_threshold = faiss.cvar.distance_compute_blas_threshold
    users_n = users / np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-6)

    n_queries = args.queries
    queries = np.random.default_rng(3).standard_normal((args.rounds * n_queries, DIM), dtype=np.float32)
    # JSON numbers as Python writes float32 values (about 20 characters each).
    bodies = [json.dumps({"users": [q.tolist()], "items": {"table": "items"}, "top_k": K}).encode()
              for q in queries]

    def numpy_one(q):
        s = normalised @ (q / max(float(np.linalg.norm(q)), 1e-6))
        part = np.argpartition(-s, K - 1)[:K]
        order = np.argsort(-s[part], kind="stable")
        return part[order], s[part][order]

    def faiss_one(q):
        x = q[None].copy()
        faiss.normalize_L2(x)
        return index.search(x, K)

    simserve_client, peer_client = Client(SIMSERVE_PORT), Client(PEER_PORT)

    # --- answers -------------------------------------------------------------------------
    checks = {}
    for i in range(5):
        q = queries[i]
        ref = normalised @ (q / np.linalg.norm(q))
        got = simserve_client.post(USER_ITEM, bodies[i])
        checks.setdefault("simserve", []).append(same_top(np, got["indices"][0], got["scores"][0], ref,
                                                          f"simserve query {i}"))
        got = peer_client.post(USER_ITEM, bodies[i])
        checks.setdefault("peer", []).append(same_top(np, got["indices"][0], got["scores"][0], ref,
                                                      f"peer query {i}"))
        d, ix = faiss_one(q)
        checks.setdefault("faiss", []).append(same_top(np, ix[0], d[0], ref, f"faiss query {i}"))
        idx, sc = numpy_one(q)
        checks.setdefault("numpy", []).append(same_top(np, idx, sc, ref, f"numpy query {i}"))
    many_named = json.dumps({"users": {"table": "users"}, "items": {"table": "items"}, "top_k": K,
                             "response_encoding": "base64"}).encode()
    many_inline = json.dumps({"users": b64(np, users), "items": {"table": "items"}, "top_k": K,
                              "response_encoding": "base64"}).encode()
    for label, body in (("simserve 1000 named", many_named), ("simserve 1000 inline", many_inline)):
        got = simserve_client.post(USER_ITEM, body)
        scores = np.frombuffer(base64.b64decode(got["scores"]["data"]), "<f4").reshape(got["scores"]["shape"])
        for u in (0, 1, 500, 999):
            checks.setdefault(label, []).append(same_top(np, got["indices"][u], scores[u], normalised @ users_n[u],
                                                         f"{label} user {u}"))
    _, ix = index.search(users_n[:4].copy(), K)
    for u in range(4):
        got_scores = normalised[ix[u]] @ users_n[u]
        checks.setdefault("faiss 1000", []).append(same_top(np, ix[u], got_scores, normalised @ users_n[u],
                                                            f"faiss user {u}"))
    out["checks"] = checks

    # --- one user: rounds of short blocks, contenders in turn ---------------------------
    one_user = {
        "simserve": lambda i: simserve_client.post(USER_ITEM, bodies[i]),
        "peer": lambda i: peer_client.post(USER_ITEM, bodies[i]),
        "numpy": lambda i: numpy_one(queries[i]),
        "faiss": lambda i: faiss_one(queries[i]),
        "faiss 1 thread": lambda i: faiss_one(queries[i]),
    }
    threads_of = {"faiss 1 thread": 1}
    lat = {name: [] for name in one_user}  # every latency, pooled
    round_p50 = {name: [] for name in one_user}
    qps = {name: [] for name in [*one_user, "simserve c=2"]}  # per round
    for name, fn in one_user.items():  # warm up: caches, thread pools, the peer's first request
        for i in range(3):
            fn(i)
    load = OtherLoad([os.getpid(), simserve.pid, peer.pid])
    contenders = [*one_user, "simserve c=2"]
    other = []
    for r in range(args.rounds):
        block = range(r * n_queries, (r + 1) * n_queries)
        for name in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            time.sleep(0.3)  # the previous contender's idle threads stop spinning
            faiss.omp_set_num_threads(threads_of.get(name, default_threads))
            simserve_client.fresh()
            peer_client.fresh()
            if name == "simserve c=2":
                qps[name].append(n_queries / concurrent(SIMSERVE_PORT, [bodies[i] for i in block], 2))
                continue
            ls, wall = timed(one_user[name], block)
            lat[name] += ls
            round_p50[name].append(statistics.median(ls))
            qps[name].append(n_queries / wall)
        faiss.omp_set_num_threads(default_threads)
        other.append(load.cores())
        print(f"one user, round {r + 1}/{args.rounds}: other load {other[-1]:.2f} cores; p50 ms "
              + ", ".join(f"{n} {round_p50[n][-1] * 1e3:.1f}" for n in one_user), file=sys.stderr)
    out["other"] = other

    # --- 1,000 users: rounds, contenders in turn ------------------------------------------
    def search(blas):
        def run_search():
            faiss.cvar.distance_compute_blas_threshold = 20 if blas else default_blas_threshold
            try:
                index.search(users_n, K)
            finally:
                faiss.cvar.distance_compute_blas_threshold = default_blas_threshold
        return run_search

    many_calls = {
        "simserve 1000 named": lambda: simserve_client.post(USER_ITEM, many_named),
        "simserve 1000 inline base64": lambda: simserve_client.post(USER_ITEM, many_inline),
        "faiss 1000": search(False),
        "faiss 1000 BLAS": search(True),
    }
    many = {name: [] for name in many_calls}
    other_many = []
    load.cores()
    for r in range(args.batch_rounds):
        names = list(many_calls)
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(0.3)
            simserve_client.fresh()
            _, wall = timed(lambda _, call=many_calls[name]: call(), [None])
            many[name].append(wall)
        other_many.append(load.cores())
        print(f"1,000 users, round {r + 1}/{args.batch_rounds}: other load {other_many[-1]:.2f} cores; s "
              + ", ".join(f"{n} {many[n][-1]:.2f}" for n in many), file=sys.stderr)
    out["other_many"] = other_many
    out["rss_queried"] = status(simserve.pid)

    # --- phases (optional) ---------------------------------------------------------------
    if args.phases:
        out["phases"] = phases(np, args, queries, simserve_client, simserve.pid, small.pid)

    # --- reload --------------------------------------------------------------------------
    before = {t["name"]: t["version"] for t in json.loads(get(SIMSERVE_PORT, "/tables")[1])["tables"]}
    new_items = np.random.default_rng(11).standard_normal((ROWS, DIM), dtype=np.float32)
    hidden = os.path.join(work, ".items.npy.tmp")
    save(np, hidden, new_items)
    os.rename(hidden, os.path.join(work, "items.npy"))
    reset_peak(simserve.pid)
    out["rss_before_reload"] = status(simserve.pid)
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(status(simserve.pid)["VmRSS"])
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    conn = Client(SIMSERVE_PORT)
    t0 = time.perf_counter()
    reloaded = conn.post("/tables/reload", b"")
    out["reload_s"] = time.perf_counter() - t0
    time.sleep(0.2)
    stop.set()
    sampler.join()
    out["reload_answer"] = reloaded
    out["rss_reload_hwm"] = status(simserve.pid)
    out["rss_reload_sampled_max"] = max(samples)
    out["rss_reload_samples"] = len(samples)
    after = {t["name"]: t["version"] for t in json.loads(get(SIMSERVE_PORT, "/tables")[1])["tables"]}
    out["versions"] = (before["items"], after["items"], before["users"] == after["users"])
    new_n = new_items / np.maximum(np.linalg.norm(new_items, axis=1, keepdims=True), 1e-6)
    got = simserve_client.post(USER_ITEM, bodies[0])
    q = queries[0]
    out["reload_check"] = same_top(np, got["indices"][0], got["scores"][0], new_n @ (q / np.linalg.norm(q)),
                                   "simserve after the reload")
    out["reload_answer_versions"] = got.get("tables")
    time.sleep(0.5)
    out["rss_after_reload"] = status(simserve.pid)

    report(out, lat, round_p50, qps, many, table_bytes, args, default_threads, default_blas_threshold)


def phases(np, args, queries, simserve_client, simserve_pid, small_pid):
    """Variants of the one-user request, in turn: what each part of simserve's time costs.
    The 100,000-row table (the first rows of items) is served by a second simserve."""
    small_client = Client(SIMSERVE_PORT + 2)
    n = args.queries

    def body(q, **extra):
        return json.dumps({"users": [q.tolist()], "items": {"table": "items"}, "top_k": K, **extra}).encode()

    variants = {
        "cosine, top_k 10, JSON (as measured)": (simserve_client, [body(q) for q in queries]),
        "top_k 1": (simserve_client, [body(q, top_k=1) for q in queries]),
        "metric dot": (simserve_client, [body(q, metric="dot") for q in queries]),
        "user as base64": (simserve_client, [json.dumps({"users": b64(np, q[None]), "items": {"table": "items"},
                                                         "top_k": K}).encode() for q in queries]),
        "100,000 rows": (small_client, [body(q) for q in queries]),
        "GET /healthz (HTTP alone)": (None, None),
    }
    health = http.client.HTTPConnection("127.0.0.1", SIMSERVE_PORT, timeout=10)

    def healthz(_):
        health.request("GET", "/healthz")
        health.getresponse().read()

    results = {name: [] for name in variants}
    load = OtherLoad([os.getpid(), simserve_pid, small_pid])
    for client, bs in variants.values():
        if client is not None:
            client.post(USER_ITEM, bs[0])
    for r in range(args.rounds):
        block = range(r * n, (r + 1) * n)
        names = list(variants)
        for name in names[r % len(names):] + names[:r % len(names)]:
            client, bs = variants[name]
            time.sleep(0.3)
            for c in (simserve_client, small_client):
                c.fresh()
            health.close()
            health.connect()
            if client is None:
                ls, _ = timed(healthz, block)
            else:
                ls, _ = timed(lambda i, c=client, bs=bs: c.post(USER_ITEM, bs[i]), block)
            results[name] += ls
    other = load.cores()
    return {name: (statistics.median(v), pct(v, 99)) for name, v in results.items()}, other


def spread(values, fmt="{:.2f}"):
    """median (min-max) of per-round values."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(out, lat, round_p50, qps, many, table_bytes, args, default_threads, default_blas_threshold):
    import faiss

    mb = lambda kb: kb * 1024 / 1e6  # noqa: E731  (/proc reports kB)
    med = statistics.median
    p50 = {n: med(v) * 1e3 for n, v in lat.items()}
    p99 = {n: pct(v, 99) * 1e3 for n, v in lat.items()}
    q = {n: med(v) for n, v in qps.items()}
    wall = {n: med(v) for n, v in many.items()}
    per_round = lambda f, xs, ys: [f(x, y) for x, y in zip(xs, ys)]  # noqa: E731
    print()
    print(f"simserve: {args.simserve}; faiss {faiss.__version__} ({default_threads} threads by default, "
          f"distance_compute_blas_threshold {default_blas_threshold}); numpy {__import__('numpy').__version__}; "
          f"numpy, faiss and the peer at niceness {args.niceness}, simserve's compute at its own 10")
    print(f"table loaded, /readyz 200 {out['load_s']:.2f} s after simserve started; connections reopened after "
          f"an idle close: {Client.reconnects}")
    print("answers against numpy: " + "; ".join(
        f"{n} {sum(c == 'same indices' for c in v)}/{len(v)} same indices, all correct" for n, v in out["checks"].items()))
    print(f"other load on the machine, cores: one-user rounds {spread(out['other'])}, "
          f"1,000-user rounds {spread(out['other_many'])}")
    print()
    print(f"One user vs {ROWS:,} x {DIM}, top_k {K}: {args.rounds} rounds x {args.queries} queries per contender "
          "(latencies pooled; queries/s and p50 per round: median (min-max))")
    print()
    print("| contender | p50 ms | p99 ms | p50 per round ms | queries/s per round |")
    print("|---|---:|---:|---:|---:|")
    where = {"simserve": "simserve, HTTP keep-alive, JSON user",
             "peer": "Python peer, HTTP keep-alive, JSON user",
             "numpy": "numpy in-process: normalised @ q, argpartition, sort",
             "faiss": f"faiss IndexFlatIP in-process, {default_threads} threads",
             "faiss 1 thread": "faiss IndexFlatIP in-process, 1 thread"}
    for n in lat:
        print(f"| {where[n]} | {p50[n]:.2f} | {p99[n]:.2f} | {spread([x * 1e3 for x in round_p50[n]])} "
              f"| {spread(qps[n], '{:.1f}')} |")
    print(f"| simserve, HTTP, 2 connections at once | | | | {spread(qps['simserve c=2'], '{:.1f}')} |")
    quiet = [r for r, cores in enumerate(out["other"]) if cores < QUIET_CORES]
    if quiet:
        pick = lambda xs: [xs[r] for r in quiet]  # noqa: E731
        ratio_p50 = per_round(lambda a, b: a / b, pick(round_p50["simserve"]), pick(round_p50["numpy"]))
        ratio_qps = per_round(lambda a, b: a / b, pick(qps["simserve"]), pick(qps["faiss"]))
        print()
        print(f"The {len(quiet)} of {args.rounds} rounds with other load under {QUIET_CORES} cores alone, p50 per "
              "round ms, median (min-max): "
              + "; ".join(f"{n} {spread([x * 1e3 for x in pick(round_p50[n])])}" for n in lat)
              + f". simserve p50 / numpy p50 per round {spread(ratio_p50)}; simserve / faiss queries/s per round "
              f"{spread(ratio_qps)}")
    print()
    print(f"{USERS:,} users vs {ROWS:,} x {DIM}, top_k {K}: {args.batch_rounds} rounds, one request or search each")
    print()
    print("| contender | wall s, median (min-max) | users/s |")
    print("|---|---:|---:|")
    names = {"simserve 1000 named": 'simserve, HTTP, users {"table": "users"}',
             "simserve 1000 inline base64": "simserve, HTTP, users inline base64",
             "faiss 1000": f"faiss IndexFlatIP, one search, defaults ({default_threads} threads)",
             "faiss 1000 BLAS": "faiss IndexFlatIP, one search, BLAS forced (threshold 20)"}
    for n in many:
        print(f"| {names[n]} | {spread(many[n], '{:.3f}')} | {USERS / wall[n]:.0f} |")
    print()
    limit = table_bytes / 1e6 + 300
    print(f"simserve memory, MB (10^6 bytes): table {table_bytes / 1e6:.0f} MB, target peak < {limit:.0f} MB")
    print()
    print("| when | VmHWM (peak) | VmRSS | RssAnon | RssFile |")
    print("|---|---:|---:|---:|---:|")
    for label, st in (("after loading", out["rss_loaded"]), ("after the queries", out["rss_queried"]),
                      ("before the reload (peak reset)", out["rss_before_reload"]),
                      ("after the reload (peak since the reset)", out["rss_reload_hwm"]),
                      ("0.5 s after the reload", out["rss_after_reload"])):
        print(f"| {label} | {mb(st['VmHWM']):.0f} | {mb(st['VmRSS']):.0f} | {mb(st['RssAnon']):.0f} "
              f"| {mb(st['RssFile']):.0f} |")
    print()
    v0, v1, users_same = out["versions"]
    print(f"reload: POST /tables/reload {out['reload_s'] * 1e3:.0f} ms, answer {json.dumps(out['reload_answer'])}; "
          f"items version {v0} -> {v1} ({'changed' if v0 != v1 else 'NOT CHANGED'}), users "
          f"{'kept' if users_same else 'changed'}; VmRSS every 2 ms: max {mb(out['rss_reload_sampled_max']):.0f} MB "
          f"({out['rss_reload_samples']} samples); next query: the new table's top {K} ({out['reload_check']}), "
          f"answer's tables {json.dumps(out['reload_answer_versions'])}")
    if "phases" in out:
        timings, other = out["phases"]
        print()
        print(f"Where simserve's time goes: variants of the one-user request, {args.rounds} rounds x "
              f"{args.queries} each, in turn (other load {other:.2f} cores)")
        print()
        print("| request | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        for n, (a, b) in timings.items():
            print(f"| {n} | {a * 1e3:.2f} | {b * 1e3:.2f} |")
    print()
    peak = max(out["rss_queried"]["VmHWM"], out["rss_reload_hwm"]["VmHWM"]) * 1024 / 1e6
    rows = [
        ("one user: simserve p50 <= numpy in-process p50", f"{p50['simserve']:.2f} / {p50['numpy']:.2f} ms",
         p50["numpy"] / p50["simserve"],
         per_round(lambda s, n: n / s, round_p50["simserve"], round_p50["numpy"]), 1.0),
        ("one user: simserve queries/s >= 1.5x faiss", f"{q['simserve']:.1f} / {q['faiss']:.1f}",
         q["simserve"] / q["faiss"], per_round(lambda s, f: s / f, qps["simserve"], qps["faiss"]), 1.5),
        ("1,000 users, named: simserve users/s >= faiss",
         f"{USERS / wall['simserve 1000 named']:.0f} / {USERS / wall['faiss 1000']:.0f}",
         wall["faiss 1000"] / wall["simserve 1000 named"],
         per_round(lambda s, f: f / s, many["simserve 1000 named"], many["faiss 1000"]), 1.0),
        ("1,000 users, inline base64: simserve users/s >= faiss",
         f"{USERS / wall['simserve 1000 inline base64']:.0f} / {USERS / wall['faiss 1000']:.0f}",
         wall["faiss 1000"] / wall["simserve 1000 inline base64"],
         per_round(lambda s, f: f / s, many["simserve 1000 inline base64"], many["faiss 1000"]), 1.0),
        ("peak RSS (VmHWM) < table + 300 MB", f"{peak:.0f} / {limit:.0f} MB", limit / peak, None, 1.0),
    ]
    print("| target | simserve / other | ratio (higher is better for simserve) | per round: median (min-max) | met |")
    print("|---|---:|---:|---:|---|")
    for name, measured, ratio, rounds, need in rows:
        print(f"| {name} | {measured} | {ratio:.2f}x | {spread(rounds) if rounds else ''} "
              f"| {'yes' if ratio >= need else 'NO'} (needs {need}x) |")
    print()
    print("for information: simserve / peer p50 "
          f"{p50['simserve']:.2f} / {p50['peer']:.2f} ms ({p50['peer'] / p50['simserve']:.2f}x); "
          f"simserve queries/s / faiss on 1 thread {q['simserve'] / q['faiss 1 thread']:.2f}x (per round "
          f"{spread(per_round(lambda s, f: s / f, qps['simserve'], qps['faiss 1 thread']))}); "
          f"simserve 1,000 named users/s / faiss with BLAS forced "
          f"{wall['faiss 1000 BLAS'] / wall['simserve 1000 named']:.2f}x")


if __name__ == "__main__":
    main()
