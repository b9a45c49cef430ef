#!/usr/bin/env python3
"""Two simserve builds on the same requests, rounds interleaved, in one run.

    python3 bench/ab.py OLD_BINARY NEW_BINARY [--rounds 3] [--seconds 8] [--only NAME]

Writes bench/run.py's request files (with its venv's numpy), then for each round and each
scenario starts each build in turn (the order alternating between rounds) with bench/run.py's
flags, drives it with wrk at the scenario's concurrency and records requests/s. Prints the
median requests/s of each build per scenario and the ratio NEW / OLD, with every round's
numbers, so a change is judged on a noisy machine by builds measured minutes apart. A
request that fails (a non-2xx answer, or a socket error in wrk's report) stops the run with a
non-zero exit: a build that answers errors fast would otherwise look faster.
Needs: wrk (`apt-get install wrk`), bench/run.py's venv (created by running it once), and
port 18097 free (the script checks).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: scenarios, flags, wrk driver)
from simserve_proc import require_free  # noqa: E402

PORT = 18097


def serve(binary):
    """`binary` started on PORT with bench/run.py's flags, once it answers; exits if the port
    is taken or the build does not start."""
    require_free(PORT)
    proc = subprocess.Popen(run.simserve_command(binary, PORT), env=run.simserve_env())
    try:
        run.wait_ready(PORT, proc)
    except RuntimeError as err:
        proc.terminate()
        proc.wait()
        sys.exit(f"{binary}: {err}")
    return proc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--skip", default="100000",
                        help="leave out scenarios whose name contains this (default: the 414 MB one)")
    parser.add_argument("--only", default="", help="keep the scenarios whose name holds this")
    args = parser.parse_args()
    scenarios = [(i, s) for i, s in enumerate(run.SCENARIOS) if args.skip not in s[0] and args.only in s[0]]
    rates = {(name, build): [] for _, (name, *_rest) in scenarios for build in ("old", "new")}
    work, lua = run.request_files("simserve-ab-")
    try:
        for round_ in range(args.rounds):
            builds = [("old", args.old), ("new", args.new)]
            if round_ % 2:
                builds.reverse()
            for i, (name, path, concurrency, _seconds, _build) in scenarios:
                for label, binary in builds:
                    proc = serve(binary)
                    try:
                        body = os.path.join(work, f"{i}.json")
                        rps, _, _, failed, done, _, _ = run.load(PORT, path, body, concurrency, args.seconds, lua)
                    finally:
                        proc.terminate()
                        proc.wait()
                    if failed:
                        sys.exit(f"round {round_ + 1}: {name}: {label} ({binary}): {failed} requests failed "
                                 f"(non-2xx answers or socket errors; {done} completed)")
                    rates[(name, label)].append(rps)
                    print(f"round {round_ + 1}: {name}: {label} {rps:.1f} req/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| scenario | old req/s | new req/s | new / old | rounds (old; new) |")
    print("|---|---:|---:|---:|---|")
    for _, (name, *_rest) in scenarios:
        old, new = rates[(name, "old")], rates[(name, "new")]
        print(f"| {name} | {statistics.median(old):.1f} | {statistics.median(new):.1f} | "
              f"{statistics.median(new) / statistics.median(old):.2f}x | "
              f"{', '.join(f'{r:.1f}' for r in old)}; {', '.join(f'{r:.1f}' for r in new)} |")


if __name__ == "__main__":
    main()
