"""The Open Inference Protocol's binary form against simserve's own base64 JSON route, on
the same request: a 1000 x 768 matrix against a 1000 x 768 matrix (cosine), float32 in,
the 1000 x 1000 float32 matrix out.

Starts the release build (`cargo build --release` first) with its defaults, checks that both
routes give the same matrix, then alternates `wrk` runs on the two (concurrency 2 unless `--connections`, 15 s,
`--rounds` times each; every contender once a round, the order rotating from round to round;
a non-2xx answer or socket error stops the run) and prints requests/s per run, their medians, each server's CPU time
per request, the cores it kept busy (requests/s x CPU per request), the cores wrk itself took
on the same machine, the cores the machine left idle (/proc/stat), each server's peak RSS
during each run (worker processes included; all but requests/s are medians over the runs)
and the ratios. With
`--peer`, the Python peer (bench/peer, FastAPI + numpy with 2 uvicorn workers, in the venv
bench/run.py makes, its packages installed as bench/run.py installs them) answers the same
binary request in the same rounds, Triton-style, started twice as bench/run.py starts it
(`run.peer_command`: httptools and uvloop; numpy's OpenBLAS with its default threads, and with
one thread per worker: `run.PEER_BLAS`); the ratios are against the faster of the two.
Needs: numpy, wrk (`apt-get install wrk`), pgrep (procps). Results: BENCHMARKS.md.

With `--dot`, the same binary request with `"parameters": {"metric": "dot"}` runs in the same
rounds on the same server: the same GEMM without the cosine's own passes (both sides' squared
norms, scaling and clamping the scores), so its CPU per request against the cosine's bounds
what computing the norms elsewhere (as the inputs arrive, say) could save.

With `--json`, the same request in JSON both ways runs in the same rounds too: the native route
with nested arrays of numbers in and out (`json.dumps(x.tolist())`), and the `/v2` route with each
input's `data` flat, as `tritonclient` and KServe's client write it with `binary_data=False`,
its matrix answered as JSON `data` (with `--against`, the other build answers it as well).

With `--faer`, a second simserve started with `SIMSERVE_BLAS=off` (faer's GEMM in place of
OpenBLAS) answers the binary request in the same rounds too; with `--against BINARY`, another
simserve build (an earlier commit's, say) does.

`--connections N` runs wrk with N connections (and threads) rather than 2.

Run: python3 bench/v2_binary.py [--rounds 3] [--seconds 15] [--peer] [--dot] [--json] [--faer]
     [--against BINARY] [--connections 2]
"""

import argparse
import base64
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the peer's venv and command)
from run import PEER_BLAS, cpu_seconds, peak_mb, peer_env, reset_peak, wrk_failures  # noqa: E402
from simserve_proc import wait_healthy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PORT = 8113
PEER_PORT = 8114
FAER_PORT = 8115
AGAINST_PORT = 8116

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE")
local length = os.getenv("HEADER_LENGTH")
if length ~= "" then wrk.headers["Inference-Header-Content-Length"] = length end
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*all")
f:close()
"""


def post(path, body, headers, port=PORT):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.headers, response.read()


def bodies(scratch):
    rng = np.random.default_rng(20261130)
    a = rng.standard_normal((1000, 768)).astype("<f4")
    b = rng.standard_normal((1000, 768)).astype("<f4")
    tensor = lambda x: {"dtype": "float32", "shape": list(x.shape),  # noqa: E731
                        "data": base64.b64encode(x.tobytes()).decode()}
    native = json.dumps({"a": tensor(a), "b": tensor(b), "response_encoding": "base64"}).encode()
    def v2_body(parameters):
        head = json.dumps({
            **({"parameters": parameters} if parameters else {}),
            "inputs": [{"name": n, "shape": list(x.shape), "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}
                       for n, x in (("a", a), ("b", b))],
            "outputs": [{"name": "matrix", "parameters": {"binary_data": True}}]}).encode()
        return head + a.tobytes() + b.tobytes(), len(head)

    v2, head_length = v2_body(None)
    dot, dot_head_length = v2_body({"metric": "dot"})
    native_json = json.dumps({"a": a.tolist(), "b": b.tolist()}).encode()
    v2_json = json.dumps({"inputs": [
        {"name": n, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        for n, x in (("a", a), ("b", b))]}).encode()
    files = {}
    for name, body in (("native", native), ("v2", v2), ("dot", dot),
                       ("native_json", native_json), ("v2_json", v2_json)):
        files[name] = os.path.join(scratch, name)
        Path(files[name]).write_bytes(body)
    products = a.astype("f8") @ b.astype("f8").T
    return files, native, v2, head_length, (dot, dot_head_length, products), (native_json, v2_json)


def v2_matrix(v2, head_length, port):
    headers, body = post("/v2/models/matrix/infer", v2, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(head_length)}, port)
    length = int(headers["inference-header-content-length"])
    shape = json.loads(body[:length])["outputs"][0]["shape"]
    return np.frombuffer(body[length:], "<f4").reshape(shape)


def same_answer(native, v2, head_length):
    _, body = post("/similarity/matrix", native, {"content-type": "application/json"})
    answer = json.loads(body)["matrix"]
    want = np.frombuffer(base64.b64decode(answer["data"]), "<f4").reshape(answer["shape"])
    assert np.array_equal(v2_matrix(v2, head_length, PORT), want), "the two routes disagree"
    return want


def json_matrices(native_json, v2_json, port):
    """The matrix the native route answers `native_json` with and the one the /v2 route
    answers `v2_json` with, both as JSON numbers."""
    _, body = post("/similarity/matrix", native_json, {"content-type": "application/json"}, port)
    native = np.array(json.loads(body)["matrix"], dtype="<f4")
    _, body = post("/v2/models/matrix/infer", v2_json, {"content-type": "application/json"}, port)
    output = json.loads(body)["outputs"][0]
    return native, np.array(output["data"], dtype="<f4").reshape(output["shape"])


def peer(port, blas):
    """The Python peer on `port` with `blas` (one of PEER_BLAS's settings), started as
    bench/run.py starts it, in the venv bench/run.py makes (`run.venv_python`: made if missing,
    the pinned packages installed)."""
    return subprocess.Popen(run.peer_command(port), env=peer_env(blas))


def idle_and_total():
    """The machine's idle and total CPU time so far, in clock ticks (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


CONNECTIONS = 2


def rate(server, path, body_file, content_type, header_length, seconds, lua, port=PORT):
    """Requests/s of `server` (a process) under wrk, its CPU ms per request, its peak RSS
    in MB during the run, the cores wrk itself took (on the same machine, so what wrk
    takes the server cannot have) and the cores the machine left idle."""
    env = {**os.environ, "BODY_FILE": body_file, "CONTENT_TYPE": content_type,
           "HEADER_LENGTH": header_length}
    time.sleep(0.5)  # the previous server's idle BLAS threads stop spinning
    reset_peak(server.pid)
    cpu = cpu_seconds(server.pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle_before, total_before = idle_and_total()
    out = subprocess.run(["wrk", f"-t{CONNECTIONS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "60s", "-s", lua,
                          f"http://127.0.0.1:{port}{path}"],
                         env=env, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server.pid) - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle_after, total_after = idle_and_total()
    idle = (idle_after - idle_before) / max(total_after - total_before, 1) * (os.cpu_count() or 1)
    wrk = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    failed = wrk_failures(out)
    if failed:
        raise SystemExit(f"{path} on port {port}: {failed} requests failed (non-2xx answers or "
                         f"socket errors)\n{out}")
    done = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, cpu * 1e3 / max(done, 1), peak_mb(server.pid), wrk / seconds, idle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--peer", action="store_true")
    parser.add_argument("--dot", action="store_true", help="also metric dot, in the same rounds")
    parser.add_argument("--json", action="store_true", help="also JSON both ways, in the same rounds")
    parser.add_argument("--connections", type=int, default=2, help="wrk's connections (and threads)")
    parser.add_argument("--faer", action="store_true")
    parser.add_argument("--against", type=Path, help="another simserve build, in the same rounds")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    global CONNECTIONS
    CONNECTIONS = args.connections
    binary = REPO / "target" / "release" / "simserve"
    with tempfile.TemporaryDirectory() as scratch:
        files, native, v2, head_length, (dot, dot_head_length, products), (native_json, v2_json) = \
            bodies(scratch)
        lua = os.path.join(scratch, "post.lua")
        Path(lua).write_text(LUA)
        if args.peer:
            run.venv_python()
            run.check_peer_venv()
        server = subprocess.Popen([str(binary), "--addr", f"127.0.0.1:{PORT}", "--log", "warn"])
        # (label, port, process) of each peer.
        peers = [(label, PEER_PORT + 10 * at, peer(PEER_PORT + 10 * at, blas))
                 for at, (label, blas) in enumerate(PEER_BLAS)] if args.peer else []
        faer = subprocess.Popen(
            [str(binary), "--addr", f"127.0.0.1:{FAER_PORT}", "--log", "warn"],
            env={**os.environ, "SIMSERVE_BLAS": "off"}) if args.faer else None
        against = subprocess.Popen(
            [str(args.against), "--addr", f"127.0.0.1:{AGAINST_PORT}", "--log", "warn"]
        ) if args.against else None
        try:
            wait_healthy(f"http://127.0.0.1:{PORT}")
            want = same_answer(native, v2, head_length)
            runs = {"native": [], "v2": [], "dot": [], "faer": [], "against": [],
                    "native_json": [], "v2_json": [], "against_json": [],
                    **{label: [] for label, _ in PEER_BLAS}}
            if args.dot:
                got = v2_matrix(dot, dot_head_length, PORT)
                assert np.allclose(got, products, rtol=1e-4, atol=1e-3), "dot disagrees with numpy"
            if args.json:
                by_native, by_v2 = json_matrices(native_json, v2_json, PORT)
                assert np.array_equal(by_native, want), "the native JSON answer disagrees"
                assert np.array_equal(by_v2, want), "the v2 JSON answer disagrees"
            if against:
                wait_healthy(f"http://127.0.0.1:{AGAINST_PORT}")
                theirs = v2_matrix(v2, head_length, AGAINST_PORT)
                assert np.allclose(theirs, want, atol=1e-5), "the other build disagrees"
                if args.json:
                    _, theirs = json_matrices(native_json, v2_json, AGAINST_PORT)
                    assert np.allclose(theirs, want, atol=1e-5), "the other build's JSON disagrees"
            if faer:
                wait_healthy(f"http://127.0.0.1:{FAER_PORT}")
                theirs = v2_matrix(v2, head_length, FAER_PORT)
                assert np.allclose(theirs, want, atol=1e-5), "faer's product disagrees"
            for label, port, _ in peers:
                wait_healthy(f"http://127.0.0.1:{port}", seconds=60)
                theirs = v2_matrix(v2, head_length, port)
                assert np.allclose(theirs, want, atol=1e-5), f"the peer ({label}) disagrees"
            # (name in runs, process, path, body file, content type, header length, port) of
            # every contender, measured once a round.
            v2_binary = ("/v2/models/matrix/infer", files["v2"], "application/octet-stream",
                         str(head_length))
            contenders = [("native", server, "/similarity/matrix", files["native"], "application/json", "",
                           PORT),
                          ("v2", server, *v2_binary, PORT)]
            if args.json:
                contenders += [
                    ("native_json", server, "/similarity/matrix", files["native_json"], "application/json",
                     "", PORT),
                    ("v2_json", server, "/v2/models/matrix/infer", files["v2_json"], "application/json",
                     "", PORT)]
                if against:
                    contenders.append(("against_json", against, "/v2/models/matrix/infer",
                                       files["v2_json"], "application/json", "", AGAINST_PORT))
            if args.dot:
                contenders.append(("dot", server, "/v2/models/matrix/infer", files["dot"],
                                   "application/octet-stream", str(dot_head_length), PORT))
            if faer:
                contenders.append(("faer", faer, *v2_binary, FAER_PORT))
            if against:
                contenders.append(("against", against, *v2_binary, AGAINST_PORT))
            contenders += [(label, process, *v2_binary, port) for label, port, process in peers]
            for round_ in range(args.rounds):
                # The order rotates, so that no contender always runs first (or after a given one).
                at = round_ % len(contenders)
                for name, process, path, body_file, content_type, header_length, port in \
                        contenders[at:] + contenders[:at]:
                    runs[name].append(rate(process, path, body_file, content_type, header_length,
                                           args.seconds, lua, port))
        finally:
            server.terminate()
            server.wait()
            for other in (faer, against):
                if other:
                    other.terminate()
                    other.wait()
            for _, _, process in peers:
                process.terminate()
                process.wait()
    print(f"bodies: base64 JSON {len(native) / 1e6:.1f} MB, binary v2 {len(v2) / 1e6:.1f} MB")
    print("| server and route | req/s, rounds | median | CPU ms per request, median "
          "| server cores | wrk cores | idle cores | peak RSS MB, median |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    median = lambda name, i: statistics.median(run[i] for run in runs[name])  # noqa: E731
    rps = {name: median(name, 0) for name in runs if runs[name]}
    cpu = {name: median(name, 1) for name in runs if runs[name]}
    peak = {name: median(name, 2) for name in runs if runs[name]}
    wrk = {name: median(name, 3) for name in runs if runs[name]}
    idle = {name: median(name, 4) for name in runs if runs[name]}
    for name, label in (("native", "simserve POST /similarity/matrix, base64"),
                        ("v2", "simserve POST /v2/models/matrix/infer, binary"),
                        ("dot", "simserve POST /v2/models/matrix/infer, binary, metric dot"),
                        ("faer", "simserve POST /v2/models/matrix/infer, binary, SIMSERVE_BLAS=off"),
                        ("against", "--against build POST /v2/models/matrix/infer, binary"),
                        ("native_json", "simserve POST /similarity/matrix, JSON numbers"),
                        ("v2_json", "simserve POST /v2/models/matrix/infer, JSON data"),
                        ("against_json", "--against build POST /v2/models/matrix/infer, JSON data"),
                        *((label, f"Python peer POST /v2/models/matrix/infer, binary, {label}")
                          for label, _ in PEER_BLAS)):
        if runs[name]:
            shown = " / ".join(f"{run[0]:.1f}" for run in runs[name])
            cores = statistics.median(run[0] * run[1] / 1e3 for run in runs[name])
            print(f"| {label} | {shown} | {rps[name]:.1f} | {cpu[name]:.1f} | {cores:.2f} "
                  f"| {wrk[name]:.2f} | {idle[name]:.2f} | {peak[name]:.0f} |")
    print(f"simserve binary v2 / simserve base64 JSON: {rps['v2'] / rps['native']:.2f}x requests/s, "
          f"{cpu['native'] / cpu['v2']:.2f}x less CPU per request (medians)")
    if runs["v2_json"]:
        print(f"simserve v2 JSON / simserve native JSON: "
              f"{rps['v2_json'] / rps['native_json']:.2f}x requests/s, "
              f"{cpu['native_json'] / cpu['v2_json']:.2f}x less CPU per request (medians)")
    if runs["against_json"]:
        print(f"this build / --against build on v2 JSON: "
              f"{rps['v2_json'] / rps['against_json']:.2f}x requests/s, "
              f"{cpu['against_json'] / cpu['v2_json']:.2f}x less CPU per request (medians)")
    if runs["dot"]:
        print(f"cosine / dot on binary v2: {rps['v2'] / rps['dot']:.2f}x requests/s, "
              f"{cpu['v2'] - cpu['dot']:.1f} CPU ms per request more (medians)")
    if runs["faer"]:
        print(f"OpenBLAS / faer on binary v2: {rps['v2'] / rps['faer']:.2f}x requests/s, "
              f"{cpu['faer'] / cpu['v2']:.2f}x less CPU per request (medians)")
    if runs["against"]:
        print(f"this build / --against build on binary v2: {rps['v2'] / rps['against']:.2f}x "
              f"requests/s, {cpu['against'] / cpu['v2']:.2f}x less CPU per request (medians)")
    if args.peer:
        faster = max((label for label, _ in PEER_BLAS), key=lambda label: rps[label])
        print(f"simserve binary v2 / Python peer binary v2 (the faster: {faster}): "
              f"{rps['v2'] / rps[faster]:.2f}x requests/s, "
              f"{cpu[faster] / cpu['v2']:.2f}x less CPU per request (medians)")


if __name__ == "__main__":
    main()
