#!/usr/bin/env python3
"""Latency of mid-sized requests served beside large ones, two builds in one run.

    python3 bench/mixed.py OLD_BINARY NEW_BINARY [--runs 4] [--seconds 10]

For judging a change in how requests share the compute threads (the tails it may move),
where `bench/ab.py` judges requests/s of one kind at a time. Writes bench/run.py's request
files (with its venv's numpy), then for each run starts each build in turn (the order
alternating between runs) with bench/run.py's flags and drives it with two wrk processes at
once: the JSON matrix (1000x768 against 1000x768, 31.7 MB) at two connections, and beside it,
from a second in, the pairwise 256x384 request (4 MB) at two more. Prints each one's
requests/s and latency percentiles per run, then the medians of each build. A request that
fails (a non-2xx answer, or a socket error in wrk's report) stops the run with a non-zero exit.
Needs: wrk (`apt-get install wrk`), bench/run.py's venv (created by running it once), and
port 18096 free (the script checks).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: scenarios, flags, request files)
from simserve_proc import require_free  # noqa: E402

PORT = 18096
WARM_SECONDS = 3
PERCENTILES = ("50", "90", "99")


def scenario(name_part):
    """The index and path of the first of bench/run.py's scenarios whose name holds
    `name_part` (its request file is `INDEX.json`)."""
    at, row = next((i, s) for i, s in enumerate(run.SCENARIOS) if name_part in s[0])
    return at, row[1]


def wrk(body, path, connections, seconds, lua):
    return subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "120s",
         "-s", lua, f"http://127.0.0.1:{PORT}{path}"],
        env={**os.environ, "BODY_FILE": body}, stdout=subprocess.PIPE, text=True)


def result(out, what):
    """Requests/s and the latency percentiles (ms) of a wrk report on `what`; exits when a
    request failed (run.wrk_failures) or wrk reported nothing."""
    if "Requests/sec" not in out:
        raise SystemExit(f"{what}: wrk gave no report")
    failed = run.wrk_failures(out)
    if failed:
        raise SystemExit(f"{what}: {failed} requests failed (non-2xx answers or socket errors)")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: run.to_ms(re.search(rf"\s{p}%\s+(\S+)", out).group(1)) for p in PERCENTILES}
    return rps, latency


def measure(binary, large, mid, lua, seconds):
    require_free(PORT)
    server = subprocess.Popen(run.simserve_command(binary, PORT), env=run.simserve_env())
    try:
        run.wait_ready(PORT, server)
        result(wrk(large[1], large[0], 2, WARM_SECONDS, lua).communicate()[0], f"{binary}: warm-up")
        beside = wrk(large[1], large[0], 2, seconds + 2, lua)
        time.sleep(1)
        measured = wrk(mid[1], mid[0], 2, seconds, lua)
        outs = beside.communicate()[0], measured.communicate()[0]
    finally:
        server.terminate()
        server.wait()
    return result(outs[0], f"{binary}: JSON matrix"), result(outs[1], f"{binary}: pairwise 256x384")


def line(label, large, mid):
    def part(name, r):
        rps, latency = r
        return f"{name} {rps:.1f} req/s, " + ", ".join(f"p{p} {latency[p]:.1f}" for p in PERCENTILES) + " ms"
    return f"{label}: " + part("JSON matrix", large) + "; " + part("pairwise 256x384", mid)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    work, lua = run.request_files("simserve-mixed-")
    try:
        (large_at, large_path), (mid_at, mid_path) = scenario("JSON"), scenario("256x384")
        large = (large_path, os.path.join(work, f"{large_at}.json"))
        mid = (mid_path, os.path.join(work, f"{mid_at}.json"))
        builds = [("old", args.old), ("new", args.new)]
        results = {label: [] for label, _ in builds}
        for n in range(args.runs):
            for label, binary in builds if n % 2 == 0 else builds[::-1]:
                r = measure(binary, large, mid, lua, args.seconds)
                results[label].append(r)
                print(line(f"run {n + 1}, {label}", *r), flush=True)
        print()
        for label, _ in builds:
            medians = []
            for which in (0, 1):
                rs = [r[which] for r in results[label]]
                medians.append((statistics.median(rps for rps, _ in rs),
                                {p: statistics.median(lat[p] for _, lat in rs) for p in PERCENTILES}))
            print(line(f"{label}, medians of {args.runs}", *medians))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
