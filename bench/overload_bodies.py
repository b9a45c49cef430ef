#!/usr/bin/env python3
"""Large bodies at overload: /healthz latency while 48 clients post 31.7 MB JSON matrices.

    python3 bench/overload_bodies.py OLD_SIMSERVE NEW_SIMSERVE   # about 1.5 minutes

Starts each given simserve binary in turn with its defaults (on 2 CPUs: 2 compute permits and
a queue of 8) on a free loopback port, and for `--seconds` (20) runs `--clients` (48) threads,
each posting one 31.7 MB body to /similarity/matrix in a loop: `a` and `b` are 1000x768
nested JSON numbers as Python's `json` writes float32 values (about 20 characters each), the
request of BENCHMARKS.md's "matrix 1000x768 vs 1000x768, JSON" row. Each request is sent the
way ordinary clients send it: a new connection, the whole body, then the answer
(`http.client`). Meanwhile a process of its own (so that the clients' threads do not delay it)
GETs /healthz every 20 ms on a new connection.

Binaries alternate for `--rounds` (2) rounds (A B A B) so that the machine's noise shows, and
for each round the script prints /healthz p50 / p99 / max, the answers counted (200, 503,
others) and the clients' connection errors, the server's peak RSS (VmHWM) and the CPU seconds
it used during the load; beside it the CPU seconds of the clients, which share the machine,
and of everything else (the /healthz prober and other work on the machine: the noise); then
the median of each column per binary. Needs only python3.

Clients post again at once after a 503 unless `--honour-retry-after`; `--server-flag=FLAG`
(repeatable) passes a flag to every server.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import Counter

from simserve_proc import memory_mb, wait_healthy

PATH = "/similarity/matrix"
ROWS, DIM = 1000, 768
HEALTH_EVERY = 0.020
CLIENT_TIMEOUT = 60


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def json_body():
    """`{"a": ..., "b": ...}`: two 1000x768 matrices of float32 values rounded to 6 decimals,
    written as Python writes them (e.g. 0.12345600128173828); deterministic."""
    rng = random.Random(7)
    to_f32 = struct.Struct("<f")

    def matrix():
        return [[to_f32.unpack(to_f32.pack(round(rng.gauss(0, 1), 6)))[0] for _ in range(DIM)]
                for _ in range(ROWS)]

    return json.dumps({"a": matrix(), "b": matrix()}).encode()


def machine_busy_seconds():
    """CPU seconds all CPUs have spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(port, body, deadline, answers, errors, lock, honour_retry_after):
    """Posts `body` on a new connection, reads the answer, closes, again until `deadline`;
    after a 503, first waits its Retry-After when `honour_retry_after`."""
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        try:
            conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            with lock:
                answers[response.status] += 1
            retry_after = response.getheader("Retry-After")
            if honour_retry_after and response.status == 503 and retry_after:
                time.sleep(min(float(retry_after), max(0.0, deadline - time.monotonic())))
        except (OSError, http.client.HTTPException) as err:
            with lock:
                errors[type(err).__name__] += 1
        finally:
            conn.close()


def probe(port, deadline, out):
    """GETs /healthz every HEALTH_EVERY seconds on a new connection until `deadline`; puts
    (latencies in ms, failures) on `out`."""
    latencies, failures = [], Counter()
    tick = time.monotonic()
    while tick < deadline:
        begun = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                latencies.append((time.monotonic() - begun) * 1e3)
            else:
                failures[response.status] += 1
        except (OSError, http.client.HTTPException) as err:
            failures[type(err).__name__] += 1
        finally:
            conn.close()
        tick += HEALTH_EVERY
        time.sleep(max(0.0, tick - time.monotonic()))
    out.put((latencies, failures))


def one_round(binary, body, seconds, clients, flags=(), honour_retry_after=False):
    port = free_port()
    server = subprocess.Popen([binary, "--addr", f"127.0.0.1:{port}", "--log", "warn", *flags],
                              stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        cpu_before = cpu_seconds(server.pid)
        machine_before = machine_busy_seconds()
        clients_before = resource.getrusage(resource.RUSAGE_SELF)
        answers, errors = Counter(), Counter()
        lock = threading.Lock()
        deadline = time.monotonic() + seconds
        fork = multiprocessing.get_context("fork")
        probed = fork.Queue()
        prober = fork.Process(target=probe, args=(port, deadline, probed))
        prober.start()
        threads = [threading.Thread(target=client, args=(port, body, deadline, answers, errors,
                                                         lock, honour_retry_after))
                   for _ in range(clients)]
        for thread in threads:
            thread.start()
        latencies, failures = probed.get()
        prober.join()
        for thread in threads:
            thread.join()
        cpu = cpu_seconds(server.pid) - cpu_before
        machine = machine_busy_seconds() - machine_before
        clients_after = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = (clients_after.ru_utime + clients_after.ru_stime
                      - clients_before.ru_utime - clients_before.ru_stime)
        peak = memory_mb(server.pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    latencies.sort()
    return {
        "healthz p50 ms": statistics.median(latencies),
        "healthz p99 ms": latencies[int(0.99 * (len(latencies) - 1))],
        "healthz max ms": latencies[-1],
        "probes": len(latencies),
        "probe failures": sum(failures.values()),
        "200": answers[200],
        "503": answers[503],
        "other status": sum(n for status, n in answers.items() if status not in (200, 503)),
        "connection errors": sum(errors.values()),
        "peak RSS MB": peak,
        "CPU s": cpu,
        "client CPU s": client_cpu,
        "other CPU s": machine - cpu - client_cpu,
        "exit": code,
        "detail": dict(errors) | {f"probe {k}": n for k, n in failures.items()}
        | {str(k): n for k, n in answers.items() if k not in (200, 503)},
    }


COLUMNS = ["healthz p50 ms", "healthz p99 ms", "healthz max ms", "probes", "probe failures",
           "200", "503", "other status", "connection errors", "peak RSS MB", "CPU s",
           "client CPU s", "other CPU s", "exit"]
COUNTS = {"probes", "probe failures", "200", "503", "other status", "connection errors", "exit"}


def row(label, got):
    """A table row of `got` (column: value); counts as integers unless a median fell between."""
    cells = [f"{got[c]:g}" if c in COUNTS else f"{got[c]:.1f}" for c in COLUMNS]
    return f"| {label} | " + " | ".join(cells) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binaries", nargs="+", help="simserve binaries, alternated")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--honour-retry-after", action="store_true",
                        help="clients wait a 503's Retry-After before posting again")
    parser.add_argument("--server-flag", action="append", default=[], metavar="FLAG",
                        help="passed to every server, e.g. --server-flag=--max-queue=0")
    args = parser.parse_args()

    body = json_body()
    print(f"body: {len(body) / 1e6:.1f} MB JSON to {PATH}; {args.clients} clients for "
          f"{args.seconds:.0f} s, /healthz every {HEALTH_EVERY * 1e3:.0f} ms; "
          f"{os.cpu_count()} CPUs; server flags: {' '.join(args.server_flag) or 'none'}; "
          f"clients {'wait' if args.honour_retry_after else 'ignore'} Retry-After", flush=True)
    print("| binary, round | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS), flush=True)
    results = {binary: [] for binary in args.binaries}
    for number in range(1, args.rounds + 1):
        for binary in args.binaries:
            got = one_round(binary, body, args.seconds, args.clients, args.server_flag,
                            args.honour_retry_after)
            results[binary].append(got)
            print(row(f"{binary}, round {number}", got), flush=True)
            if got["detail"]:
                print(f"<!-- {binary}, round {number}: {got['detail']} -->", flush=True)
    for binary, rounds in results.items():
        print(row(f"{binary}, median", {c: statistics.median(r[c] for r in rounds)
                                        for c in COLUMNS}))
    if any(r["exit"] != 0 for rounds in results.values() for r in rounds):
        sys.exit("a server did not exit 0 on SIGTERM")


if __name__ == "__main__":
    main()
