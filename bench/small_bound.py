#!/usr/bin/env python3
"""How fast servers doing little or no work answer bench/run.py's small requests here.

    python3 bench/small_bound.py [--rounds 3] [--seconds 8]

bench/run.py's first scenario (pairwise 8x128, a 42 KB JSON body, `wrk -t2 -c64` on the same
two cores as the server) measures request handling more than similarity. This script serves
the same requests, under the same wrk, from seven servers in turn, the order rotating each
round:
- simserve (bench/run.py's flags, built first);
- the Python peer, one BLAS thread a worker (bench/run.py's faster setting on these requests in
  most runs; with 64 connections both its workers get some, so there is no balance check);
- nginx answering every request with simserve's answer to it, fixed, with no work at all
  (`return 200`: the body read and dropped, nothing parsed; two workers on their own listening
  sockets, a request head buffer the whole request fits in, access log off, keep-alive
  unlimited, as simserve's);
- `examples/bare_hyper.rs`, simserve's HTTP stack (hyper on tokio) alone: answering the same
  fixed answer after reading the body, or reading `a` and `b` with simserve's tensor reader,
  scoring them with its kernel and answering (none of simserve's checks, limits, middleware
  or logs); each on tokio's multi-threaded runtime, as simserve, and on one single-threaded
  runtime per CPU with its own listening socket, as nginx's workers.
It prints each server's median requests/s, CPU time per request and the cores wrk took, the
ratios to the peer, and, round by round, what 15x that round's peer would leave a server
for reading, scoring and answering beside wrk, beyond what nginx and hyper per core took
doing no work, against what that work took with simserve's reader. A round whose wrk run
overshot its seconds by bench/run.py's STALLED (the machine stalled) runs again.
Needs: nginx (`apt-get install nginx`), wrk, bench/run.py's venv (created by running it once),
ports 18103-18109 free.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: scenarios, flags, wrk driver, /proc helpers)
from simserve_proc import require_free, stop_all  # noqa: E402

NGINX_PORT, SIMSERVE_PORT, PEER_PORT = 18103, 18104, 18105
# bare_hyper's four settings: (label, port, mode, per-core runtimes)
HYPERS = [("hyper, no work", 18106, "fixed", False), ("hyper, simserve's reader", 18107, "read", False),
          ("hyper per core, no work", 18108, "fixed", True),
          ("hyper per core, simserve's reader", 18109, "read", True)]
SCENARIO = 0  # bench/run.py's pairwise 8x128 at c=64

NGINX_CONF = """
worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    keepalive_requests 4294967295;
    keepalive_timeout 60s;
    client_header_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} reuseport;
        default_type application/json;
        location / {{ return 200 '{answer}'; }}
    }}
}}
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    if os.path.realpath(sys.prefix) != os.path.realpath(run.VENV):
        python = run.venv_python()  # the peer's venv: numpy compares the answers
        os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx or not shutil.which("wrk"):
        sys.exit("nginx and wrk are needed: apt-get install nginx wrk")
    run.check_peer_venv()
    name, path, concurrency, _, _ = run.SCENARIOS[SCENARIO]
    run.sh("cargo", "build", "--release", "--quiet", cwd=run.ROOT)
    run.sh("cargo", "build", "--release", "--quiet", "--example", "bare_hyper", cwd=run.ROOT)
    bare_hyper = os.path.join(run.ROOT, "target", "release", "examples", "bare_hyper")
    # After the builds, which can take minutes: the servers with their own socket per worker
    # (SO_REUSEPORT) would share a port with a process that bound it meanwhile.
    for port in (NGINX_PORT, SIMSERVE_PORT, PEER_PORT, *(port for _, port, _, _ in HYPERS)):
        require_free(port)

    procs, work = [], None
    try:
        work, lua = run.request_files("simserve-bound-")
        body_file = os.path.join(work, f"{SCENARIO}.json")
        with open(body_file, "rb") as f:
            body = f.read()
        simserve = subprocess.Popen(
            run.simserve_command(os.path.join(run.ROOT, "target", "release", "simserve"), SIMSERVE_PORT),
            env=run.simserve_env())
        procs.append(simserve)
        run.wait_ready(SIMSERVE_PORT, simserve)
        answer = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{SIMSERVE_PORT}{path}", data=body,
            headers={"content-type": "application/json"}), timeout=30).read().decode()
        if "'" in answer or "\n" in answer:
            sys.exit("simserve's answer cannot be written into nginx's configuration as is")
        answer_file = os.path.join(work, "answer.json")
        with open(answer_file, "w") as f:
            f.write(answer)
        hypers = []
        for label, port, mode, per_core in HYPERS:
            command = [bare_hyper, str(port), mode, *([answer_file] if mode == "fixed" else []),
                       *(["per-core"] if per_core else [])]
            hypers.append((label, port, subprocess.Popen(command)))
            procs.append(hypers[-1][2])
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(work=work, port=NGINX_PORT, answer=answer))
        peer = subprocess.Popen(run.peer_command(PEER_PORT), env=run.peer_env({"OPENBLAS_NUM_THREADS": "1"}))
        procs.append(peer)
        server = subprocess.Popen([nginx, "-p", work, "-c", os.path.join(work, "nginx.conf"), "-e",
                                   os.path.join(work, "error.log")])
        procs.append(server)
        run.wait_ready(PEER_PORT, peer)
        run.wait_ready(NGINX_PORT, server)
        for _, port, proc in hypers:
            run.wait_ready(port, proc)
        ours = run.post(SIMSERVE_PORT, path, body)
        if run.post(NGINX_PORT, path, body) != ours:
            sys.exit("nginx's fixed answer is not simserve's")
        for label, port, _ in hypers:
            difference = run.answer_difference(ours, run.post(port, path, body))
            if difference:
                sys.exit(f"simserve and {label} disagree: {difference}")
        difference = run.answer_difference(ours, run.post(PEER_PORT, path, body))
        if difference:
            sys.exit(f"simserve and the peer disagree: {difference}")
        servers = [("simserve", SIMSERVE_PORT, simserve), ("peer", PEER_PORT, peer),
                   ("nginx, no work", NGINX_PORT, server), *hypers]
        rounds = {label: [] for label, _, _ in servers}
        for round_ in range(args.rounds):
            at = round_ % len(servers)
            for label, port, proc in servers[at:] + servers[:at]:
                for _ in range(run.TRIES):
                    time.sleep(0.5)
                    cpu = run.cpu_seconds(proc.pid)
                    rps, _, _, failed, done, wrk_cpu, took = run.load(port, path, body_file, concurrency,
                                                                      args.seconds, lua)
                    if failed:
                        sys.exit(f"{label}: {failed} requests failed")
                    cpu_ms = (run.cpu_seconds(proc.pid) - cpu) * 1e3 / max(done, 1)
                    if took <= args.seconds + run.STALLED:
                        break
                    print(f"round {round_ + 1}: {label}: wrk's run took {took:.1f} s, the machine stalled; "
                          "again", file=sys.stderr)
                else:
                    sys.exit(f"{label}: the machine stalled in {run.TRIES} tries")
                # wrk's cores over its run, and its CPU a request served
                rounds[label].append((rps, cpu_ms, wrk_cpu / took, wrk_cpu * 1e6 / max(done, 1)))
                print(f"round {round_ + 1}: {label} {rps:.0f} req/s, {cpu_ms * 1e3:.1f} us CPU a request, "
                      f"wrk {wrk_cpu / took:.2f} cores", file=sys.stderr)
    finally:
        stop_all(procs)
        if work:
            shutil.rmtree(work, ignore_errors=True)

    median = {label: tuple(statistics.median(column) for column in zip(*runs)) for label, runs in rounds.items()}
    peer_rps = median["peer"][0]
    print(f"{name}, {args.rounds} rounds of {args.seconds} s, medians of each column (a row's may come "
          "from different rounds):")
    print("| server | req/s | ratio to the peer | server CPU us per request | wrk CPU cores |")
    print("|---|---:|---:|---:|---:|")
    for label, (rps, cpu_ms, wrk_cores, _) in median.items():
        print(f"| {label} | {rps:.0f} | {rps / peer_rps:.1f}x | {cpu_ms * 1e3:.1f} | {wrk_cores:.2f} |")
    print()
    # What 15x the peer leaves a server for its work, round by round: at 15x the round's peer
    # rate the two cores give 2e6 / rate us a request; wrk takes what it took a request from
    # the server doing no work beside it (wrk generally takes more a request at lower rates,
    # where its event loop wakes up for fewer answers at a time, so a server near the target's
    # rate);
    # what is left beyond that server's own CPU a request is what reading, scoring and
    # answering could take.
    print("What 15x the peer leaves a server for reading, scoring and answering, a round (us a request):")
    floors = ["nginx, no work", "hyper per core, no work"]
    print("| round | peer req/s | 15x, us of the two cores | " + " | ".join(
        f"{label}: wrk, server, left" for label in floors) + " |")
    print("|---:|---:|---:|" + "---:|" * len(floors))
    left = {label: [] for label in floors}
    for round_, (peer_rps_r, _, _, _) in enumerate(rounds["peer"]):
        share = 2e6 / (15 * peer_rps_r)
        cells = []
        for label in floors:
            _, cpu_ms, _, wrk_us = rounds[label][round_]
            left[label].append(share - wrk_us - cpu_ms * 1e3)
            cells.append(f"{wrk_us:.1f}, {cpu_ms * 1e3:.1f}, {tenths(left[label][-1])}")
        print(f"| {round_ + 1} | {peer_rps_r:.0f} | {share:.1f} | " + " | ".join(cells) + " |")
    print()
    work_us = [(read[1] - bare[1]) * 1e3 for read, bare in
               zip(rounds["hyper per core, simserve's reader"], rounds["hyper per core, no work"])]
    print(f"Left at most: {', '.join(f'{label} {tenths(max(left[label]))} us' for label in floors)}; "
          f"the same work took {statistics.median(work_us):.1f} us a request in bare_hyper per core "
          f"(median over rounds of reading against not).")
    print(f"Served, as a share of 15x the peer's median ({15 * peer_rps:.0f} req/s): " + ", ".join(
        f"{label} {m[0] / (15 * peer_rps):.2f}" for label, m in median.items() if label != "peer") + ".")


def tenths(value):
    """`value` to one decimal, without a sign on a zero."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


if __name__ == "__main__":
    main()
