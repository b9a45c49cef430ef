#!/usr/bin/env python3
"""Where simserve's CPU goes on the large JSON request, by phase.

    python3 bench/phase_profile.py                 # from the repository root; about 1 minute a run
    python3 bench/phase_profile.py --runs 3 --binary target/release/simserve --seconds 15

The request is BENCHMARKS.md's "matrix 1000x768 vs 1000x768, JSON" row: two 1000x768
matrices of nested JSON numbers (float32 values rounded to 6 decimals as Python writes them,
about 20 characters each; 31.7 MB), the same bytes `bench/run.py --write-requests` writes for
that row, posted to /similarity/matrix; the answer is the 1000x1000 matrix as nested JSON.

It builds simserve (release; or takes `--binary`), starts it on a free loopback port with
bench/run.py's flags, and for each of `--runs` runs drives it with wrk at concurrency 2 twice
for `--seconds`: once unobserved, for requests/s and the server's CPU time per request
(utime + stime from /proc over the requests completed), then under
`perf record -e cpu-clock --call-graph dwarf -p PID`. Every sample is given the phase of the
innermost frame of its call chain that a pattern of PATTERNS (top of this file) names:

    read body   socket reads, hyper's body reading, simserve copying the body into its buffer
    parse       JSON numbers into tensors: serde_json's deserializer, simserve::tensor, ::body
    compute     the GEMM and normalising: simserve::compute, faer, gemm, spindle
    encode      the JSON answer: float formatting (zmij, ryu), serialisation, simserve::answer
    write       compression, hyper's writing, socket writes
    copies & memory   memcpy, allocator and page faults with no phase's frame in their chain
    other       everything else: tokio, axum and the middleware, scheduling, idle spinning

and a kind, from the frames between the sample and that phase's frame: the phase's own code,
copies (memcpy, memset, the kernel's socket copies), allocator (jemalloc, Vec growth,
drops, madvise), page faults (and the zeroing of new pages), or other kernel work.

Prints, per run, requests/s, CPU per request and how much else the machine was doing; then
a table with the median over runs of each phase's share of the server's samples, its CPU ms
per request (share x the unobserved CPU per request) and its kinds; the top symbols of each
phase; and the top 15 symbols with their phases, so the classification can be checked.
`--no-call-graph` samples without call chains: each sample is its own symbol's phase, so
a memcpy is "copies & memory" whoever called it and most of the kernel's page-fault work is
"other"; cheaper, and comparable with `perf report --no-children --sort sym`.
`--keep` keeps the request file and perf data for `perf report -i`.
Needs: cargo, numpy, wrk (`apt-get install wrk`), perf (as root, or with
kernel.perf_event_paranoid <= 1). Runs under bench/run.py's venv if numpy is missing.
"""

import argparse
import collections
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import run  # noqa: E402  (bench/run.py: the request generator, wrk and /proc helpers)
from simserve_proc import wait_healthy  # noqa: E402

SCENARIO = "matrix 1000x768 vs 1000x768, JSON"

# (label, pattern searched in a frame's symbol). A frame takes the label of the first pattern
# that matches it, so order matters: a drop of a tensor is memory work, not parse. The memory
# labels never own a sample: a memcpy belongs to the phase of the code that called it.
PATTERNS = [
    ("page faults", r"asm_exc_page_fault|exc_page_fault|handle_mm_fault|clear_page"),
    ("allocator", r"_rjem_|jemalloc|^(__libc_)?(malloc|free|realloc|calloc)$|alloc::raw_vec|"
                  r"alloc::alloc::|finish_grow|drop_in_place|bytes::bytes::.*drop|madvise|munmap|"
                  r"^(pac|arena|extent|tcache|large|sec|hpa)_"),
    ("copies", r"memcpy|memmove|memset|_copy_to_iter|_copy_from_iter|copy_user"),
    ("read body", r"simserve::api::admitted_body::receive|simserve::body::(read|discard)\b|"
                  r"simserve::body::.* as simserve::body::Sink>::take|"
                  r"simserve::coding::inflate|miniz_oxide::inflate|flate2::.*(Decoder|decompress)|"
                  r"ZSTD_decompress|hyper::proto::h1::conn::Conn<.*>::poll_read_body|"
                  r"hyper::proto::h1::io::.*(poll_read|read_mem)|hyper::proto::h1::decode::|"
                  r"hyper::body::incoming|TcpStream::poll_read|__libc_recv|tcp_recvmsg|sock_recvmsg|"
                  r"__sys_recvfrom"),
    ("write", r"simserve::coding::compress|flate2::|miniz_oxide::deflate|zstd::|ZSTD_|"
              r"hyper::proto::h1::io::.*(poll_flush|write)|hyper::proto::h1::(encode|role)::|"
              r"hyper::proto::h1::conn::Conn<.*>::(write|poll_flush)|TcpStream::poll_write|"
              r"writev|tcp_sendmsg|sock_write_iter|__sys_sendto"),
    ("parse", r"simserve::tensor::|simserve::body::|simserve::api::validate|serde_json::de::|"
              r"serde_json::read::|serde_core::de::|serde::de::|base64::.*decode|dec2flt|"
              r"fast_float|lexical"),
    ("compute", r"simserve::compute::|gemm|faer::|spindle::|pulp::|matrixmultiply"),
    ("encode", r"simserve::answer::|zmij|ryu::|dtoa|serde_json::ser::|serde_core::ser::|"
               r"serde::ser::|base64::.*encode"),
]
MEMORY = ["page faults", "allocator", "copies"]  # the first of these in a chain is its kind
PHASES = ["read body", "parse", "compute", "encode", "write", "copies & memory", "other"]
KINDS = ["code", "copies", "allocator", "page faults", "kernel"]
KERNEL_START = 0xFFFF800000000000  # x86-64: addresses from here up are the kernel's
COMPILED = [(label, re.compile(pattern)) for label, pattern in PATTERNS]


def label(symbol):
    return next((name for name, pattern in COMPILED if pattern.search(symbol)), None)


def classify(stack):
    """(phase, kind, shown symbol) of a sample; `stack` is [(symbol, is_kernel)], sampled frame
    first."""
    labels = [label(symbol) for symbol, _ in stack]
    owner = next((i for i, name in enumerate(labels) if name in PHASES), None)
    below = labels[:len(labels) if owner is None else owner]
    memory = [name for name in MEMORY if name in below]
    leaf, in_kernel = stack[0]
    if memory:
        kind = memory[0]
    else:
        kind = "kernel" if in_kernel else "code"
    if owner is not None:
        phase = labels[owner]
    else:
        phase = "copies & memory" if memory else "other"
    # The kernel's page-fault path is a dozen small symbols; they are shown as one.
    shown = "[kernel] page faults" if kind == "page faults" and in_kernel else leaf
    return phase, kind, shown


def samples(perf_data, call_graph):
    """Stacks of `perf script`'s samples: [(symbol, is_kernel)], sampled frame first."""
    out = subprocess.run(["perf", "script", "--no-inline", "-i", perf_data, "-F", "tid,ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    frame = re.compile(r"^\s*(?:\d+\s+)?([0-9a-f]+) (.*) \((.*)\)$")
    stacks, stack = [], []
    for line in out.splitlines():
        match = frame.match(line)
        if match and (not call_graph or line.startswith("\t")):
            ip, symbol, dso = match.groups()
            if ip != "ffffffffffffffff":
                stack.append((symbol, dso.startswith("[kernel") or int(ip, 16) >= KERNEL_START))
            if not call_graph:
                stacks.append(stack)
                stack = []
        elif not line.strip() and stack:
            stacks.append(stack)
            stack = []
    if stack:
        stacks.append(stack)
    return stacks


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_request(path):
    """bench/run.py's request for SCENARIO, from its generator and seed (the same bytes)."""
    import numpy as np
    rng = np.random.default_rng(7)
    for name, route, _, _, build in run.SCENARIOS:
        body = build(np, rng)  # earlier rows are built too, so the generator is where run.py's is
        if name == SCENARIO:
            with open(path, "w") as f:
                json.dump(body, f)
            return route
    raise SystemExit(f"bench/run.py has no scenario {SCENARIO!r}")


def machine_busy():
    """CPU seconds the whole machine has spent busy so far."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def window(server, seconds, perf_command=None):
    """Drives the server with wrk for `seconds`, under perf if given; returns requests/s, requests
    done, the server's CPU seconds, and the CPU seconds of everything but the server, wrk and
    perf."""
    pid = server.process.pid
    cpu, machine, ours = run.cpu_seconds(pid), machine_busy(), children_cpu()
    perf = subprocess.Popen(perf_command, stderr=subprocess.PIPE, text=True) if perf_command else None
    try:
        rps, _, _, failed, done, _, _ = run.load(server.port, server.route, server.body_file, 2, seconds,
                                              server.lua_file)
    finally:
        if perf:
            _, errors = perf.communicate()
            if perf.returncode:
                raise SystemExit(f"perf record failed: {errors.strip()}")
    if failed:
        raise SystemExit(f"{failed} requests failed (non-2xx answers or socket errors)")
    cpu = run.cpu_seconds(pid) - cpu
    others = machine_busy() - machine - cpu - (children_cpu() - ours)
    return rps, done, cpu, others


class Server:
    """A running simserve and the request it is driven with."""

    def __init__(self, process, port, route, body_file, lua_file):
        self.process, self.port, self.route = process, port, route
        self.body_file, self.lua_file = body_file, lua_file


def profile_once(server, perf_data, args):
    """One run: the unobserved window, then the profiled one; a dict of its figures."""
    rps, done, cpu, others = window(server, args.seconds)
    graph = ["--call-graph", "dwarf,16384"] if not args.no_call_graph else []
    perf_command = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(args.frequency), *graph,
                    "-p", str(server.process.pid), "-o", perf_data, "--", "sleep", str(args.seconds)]
    p_rps, p_done, p_cpu, p_others = window(server, args.seconds, perf_command)
    stacks = samples(perf_data, not args.no_call_graph)
    return {
        "rps": rps, "cpu_ms": cpu * 1e3 / max(done, 1), "others": others / args.seconds,
        "profiled_rps": p_rps, "profiled_cpu_ms": p_cpu * 1e3 / max(p_done, 1),
        "others_profiled": p_others / args.seconds,
        "sampled": len(stacks) / args.frequency / max(p_cpu, 1e-9),
        "classified": [classify(stack) for stack in stacks if stack],
    }


def phase_table(result):
    """{phase: (share %, {kind: share %})} of one run's samples."""
    total = len(result["classified"])
    counts = collections.Counter((phase, kind) for phase, kind, _ in result["classified"])
    return {phase: (100 * sum(counts[phase, k] for k in KINDS) / total,
                    {k: 100 * counts[phase, k] / total for k in KINDS}) for phase in PHASES}


def report(results, seconds, load_before, load_after):
    for i, r in enumerate(results, 1):
        print(f"run {i}: {r['rps']:.2f} req/s, {r['cpu_ms']:.1f} ms server CPU per request, "
              f"other processes {r['others']:.2f} cores; under perf {r['profiled_rps']:.2f} req/s, "
              f"{r['profiled_cpu_ms']:.1f} ms per request, other processes {r['others_profiled']:.2f} "
              f"cores, {len(r['classified'])} samples covering {100 * r['sampled']:.0f}% of the "
              f"server's CPU time")
    print(f"load average before: {load_before}; after: {load_after}")
    tables = [phase_table(r) for r in results]
    cpu_ms = statistics.median(r["cpu_ms"] for r in results)
    print()
    print(f"{SCENARIO}, wrk c=2, {len(results)} x {seconds} s; medians over runs "
          f"(each cell on its own, so columns need not add up); {cpu_ms:.1f} ms server CPU per request")
    print()
    print("| phase | % of server samples | ms CPU per request | " + " | ".join(KINDS) + " |")
    print("|---|---:|---:|" + "---:|" * len(KINDS))
    for phase in PHASES + ["all"]:
        if phase == "all":
            shares, kinds = [100.0], {k: [sum(t[p][1][k] for p in PHASES) for t in tables] for k in KINDS}
        else:
            shares = [t[phase][0] for t in tables]
            kinds = {k: [t[phase][1][k] for t in tables] for k in KINDS}
        share = statistics.median(shares)
        cells = " | ".join(f"{statistics.median(kinds[k]):.1f}" for k in KINDS)
        print(f"| {phase} | {share:.1f} | {share * cpu_ms / 100:.1f} | {cells} |")

    pooled = [c for r in results for c in r["classified"]]
    total = len(pooled)
    print()
    print("Inside each phase, its largest symbols (% of all samples, runs pooled):")
    for phase in PHASES:
        symbols = collections.Counter(shown for p, _, shown in pooled if p == phase)
        listed = ", ".join(f"{short(s)} {100 * n / total:.1f}" for s, n in symbols.most_common(6))
        print(f"- {phase}: {listed}")

    print()
    print("Top 15 symbols (self time, runs pooled) and the phases their samples were given:")
    print()
    print("| % of samples | symbol | kind | phases (by call chain) |")
    print("|---:|---|---|---|")
    by_symbol = collections.defaultdict(list)
    for phase, kind, shown in pooled:
        by_symbol[shown].append((phase, kind))
    for shown, tags in sorted(by_symbol.items(), key=lambda item: -len(item[1]))[:15]:
        kind = collections.Counter(k for _, k in tags).most_common(1)[0][0]
        phases = collections.Counter(p for p, _ in tags).most_common()
        spread = ", ".join(f"{p} {100 * n / len(tags):.0f}%" for p, n in phases if 100 * n / len(tags) >= 1)
        print(f"| {100 * len(tags) / total:.1f} | {short(shown, 100)} | {kind} | {spread} |")


def short(symbol, width=70):
    return symbol if len(symbol) <= width else symbol[:width - 1] + "…"


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def ensure_numpy():
    """Re-runs under bench/run.py's venv when this Python has no numpy."""
    if importlib.util.find_spec("numpy"):
        return
    python = os.path.join(run.VENV, "bin", "python")
    if os.path.exists(python) and os.path.realpath(sys.prefix) != os.path.realpath(run.VENV):
        os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])
    sys.exit("numpy is needed: pip install numpy (or run bench/run.py once, whose venv has it)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", help="a simserve binary (default: build target/release/simserve)")
    parser.add_argument("--seconds", type=int, default=15, help="length of each wrk window")
    parser.add_argument("--runs", type=int, default=1, help="runs, each one unobserved and one profiled window")
    parser.add_argument("--frequency", type=int, default=499, help="perf samples per second of CPU time")
    parser.add_argument("--no-call-graph", action="store_true",
                        help="no call chains: a sample's phase is its own symbol's")
    parser.add_argument("--keep", action="store_true", help="keep the request file and perf data")
    args = parser.parse_args()
    ensure_numpy()
    for tool in ("wrk", "perf"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    binary = args.binary
    if not binary:
        run.sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
        binary = os.path.join(ROOT, "target", "release", "simserve")

    work = tempfile.mkdtemp(prefix="simserve-phases-")
    body_file, lua_file = os.path.join(work, "request.json"), os.path.join(work, "post.lua")
    route = write_request(body_file)
    with open(lua_file, "w") as f:
        f.write(run.LUA)
    port = free_port()
    process = subprocess.Popen(run.simserve_command(binary, port))
    try:
        wait_healthy(f"http://127.0.0.1:{port}", seconds=30)
        with open(body_file, "rb") as f:
            answer = run.post(port, route, f.read())  # also warms the server's pools
        if answer.get("shape") != [1000, 1000]:
            sys.exit(f"unexpected answer shape {answer.get('shape')}")
        server = Server(process, port, route, body_file, lua_file)
        load_before = load_average()
        results = [profile_once(server, os.path.join(work, f"perf-{i}.data"), args)
                   for i in range(1, args.runs + 1)]
        load_after = load_average()
    finally:
        process.terminate()
        process.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args.seconds, load_before, load_after)
    if args.keep:
        print(f"\nrequest and perf data kept in {work} (perf report -i {work}/perf-1.data --no-children)")


if __name__ == "__main__":
    main()
