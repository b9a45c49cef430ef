#!/usr/bin/env python3
"""Where the machine's idle goes when simserve serves the large JSON matrix at two connections.

    python3 bench/sched_idle.py [--runs 4] [--seconds 8] [VARIANT ...]

A VARIANT is `LABEL=BINARY` followed by any `NAME=VALUE` settings of the server's environment,
all in one argument: `"threads4=target/release/simserve SIMSERVE_COMPUTE_THREADS=4"`. Without
one, `target/release/simserve` as it is. Each run starts each variant in turn (the order
alternating between runs) with bench/run.py's flags, gives it 3 s of `wrk -t2 -c2` on
bench/run.py's JSON matrix request, then measures `--seconds` more of the same load:
requests/s, the server's CPU a request, and from /proc/stat the machine's idle and softirq
share. Over 3 s in the middle of that window it records every context switch
(`perf sched record -a`) and finds how much of each CPU's idle time had a thread ready to run
waiting on another CPU, preempted there or woken onto it: idle the kernel's placement and
balancing could have filled, as opposed to idle with nothing to run. It says which kind of
thread waited (compute: the compute pool's and the blocking pool's, at the lower priority;
runtime: tokio's workers and threads not yet lowered; wrk; other: the rest of the machine).
The kinds' shares overlap where threads of two kinds waited at once. The kernel's per-CPU
threads are left out.

Prints one line per run and variant, then each variant's medians.
Needs: wrk (`apt-get install wrk`), perf (as root, or with kernel.perf_event_paranoid <= 1),
bench/run.py's venv (for numpy, to write the request), 2 CPUs or more, port 18094 free (the
script checks).
"""

import argparse
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: flags, wrk driver, /proc helpers)
from simserve_proc import require_free  # noqa: E402

PORT = 18094
WARM_SECONDS = 3
RECORD_SECONDS = 3
SWITCH = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:.*prev_comm=(.*?) prev_pid=(\d+) "
                    r"prev_prio=(\d+) prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+) next_prio=(\d+)")
WAKING = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_waking: comm=(.*?) pid=(\d+) prio=(\d+)")


def machine_ticks():
    """/proc/stat's first line: user, nice, system, idle, iowait, irq, softirq, steal."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def kind(comm, prio):
    """The kind of thread a context switch names (prio 120 is niceness 0); `None` for the
    kernel's per-CPU threads (`ksoftirqd/0`, `kworker/1:1`), which cannot run elsewhere."""
    if re.search(r"/\d", comm):
        return None
    if comm.startswith("wrk"):
        return "wrk"
    if comm.startswith("tokio-rt-worker"):
        return "runtime" if prio == 120 else "compute"
    if comm.startswith("simserve"):
        return "compute" if prio > 120 else "other"
    return "other"


def union(intervals):
    """Total length of the union of `intervals`."""
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def overlap(intervals, windows):
    """Parts of `intervals` (start, end, label) inside the union of `windows`, as intervals."""
    windows = sorted(windows)
    out = []
    for s, e, label in intervals:
        for a, b in windows:
            if b <= s:
                continue
            if a >= e:
                break
            out.append((max(a, s), min(b, e), label))
    return out


def idle_causes(perf_data):
    """From a `perf sched record -a` file: (seconds recorded, idle seconds, idle seconds with a
    thread ready to run waiting on another CPU, those with a thread woken there, the ready ones
    by kind of thread). A thread waits from its preemption (switched out still runnable) or its
    wake-up until it next runs; only the part of that wait spent while a CPU other than the one
    it ran on was idle counts."""
    out = subprocess.run(["perf", "script", "-i", perf_data, "-F", "cpu,time,event,trace"],
                         capture_output=True, text=True, check=True).stdout
    switches = [(float(m[2]), 1, int(m[1]), m[3], int(m[4]), int(m[5]), m[6], int(m[8]))
                for m in SWITCH.finditer(out)]
    wakings = [(float(m[2]), 0, int(m[1]), m[3], int(m[4]), int(m[5]), "", -1)
               for m in WAKING.finditer(out)]
    events = sorted(switches + wakings)
    idle = collections.defaultdict(list)
    idle_since, ready, waiting = {}, {}, []
    for t, is_switch, cpu, comm, pid, prio, state, next_pid in events:
        if not is_switch:
            if pid != 0 and kind(comm, prio):
                ready.setdefault(pid, (t, kind(comm, prio), "woken"))
            continue
        if next_pid == 0:
            idle_since[cpu] = t
        if pid == 0 and cpu in idle_since:
            idle[cpu].append((idle_since.pop(cpu), t))
        if pid != 0 and state.startswith("R") and kind(comm, prio):
            ready[pid] = (t, kind(comm, prio), "preempted")
        if next_pid in ready:
            start, what, how = ready.pop(next_pid)
            waiting.append((start, t, cpu, what, how))
    switch_times = [e[0] for e in switches]
    span = switch_times[-1] - switch_times[0] if switch_times else 0.0
    idle_total = sum(e - s for spans in idle.values() for s, e in spans)
    filled, woken, by_kind = [], [], collections.defaultdict(list)
    for cpu, spans in idle.items():
        elsewhere = [(s, e, (what, how)) for s, e, where, what, how in waiting if where != cpu]
        parts = overlap(elsewhere, spans)
        filled.append(union([(s, e) for s, e, _ in parts]))
        woken.append(union([(s, e) for s, e, (_, how) in parts if how == "woken"]))
        for s, e, (what, _) in parts:
            by_kind[what].append((s, e))
    return span, idle_total, sum(filled), sum(woken), {k: union(v) for k, v in by_kind.items()}


def measure(binary, env, body, lua, seconds, cpus, work):
    require_free(PORT)
    server = subprocess.Popen(run.simserve_command(binary, PORT), env={**run.simserve_env(), **env})
    try:
        run.wait_ready(PORT, server)
        run.load(PORT, "/similarity/matrix", body, 2, WARM_SECONDS, lua)
        ticks, cpu = machine_ticks(), run.cpu_seconds(server.pid)
        perf_data = os.path.join(work, "sched.data")
        record = subprocess.Popen(
            ["bash", "-c", f"sleep {(seconds - RECORD_SECONDS) / 2}; perf sched record -a -q "
                           f"-o {perf_data} -- sleep {RECORD_SECONDS}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rps, _, _, failed, done, _, _ = run.load(PORT, "/similarity/matrix", body, 2, seconds, lua)
        if record.wait():
            raise SystemExit("perf sched record failed: run as root, or with "
                             "kernel.perf_event_paranoid <= 1")
        spent = run.cpu_seconds(server.pid) - cpu
        delta = [b - a for a, b in zip(ticks, machine_ticks())]
    finally:
        server.terminate()
        server.wait()
    if failed:
        raise SystemExit(f"{failed} requests failed (non-2xx answers or socket errors)")
    span, idle, filled, woken, by_kind = idle_causes(perf_data)
    return {
        "rps": rps,
        "cpu_ms": 1000 * spent / max(done, 1),
        "idle_pct": 100 * delta[3] / sum(delta),
        "softirq_pct": 100 * delta[6] / sum(delta),
        "recorded_idle_pct": 100 * idle / (span * cpus) if span else 0.0,
        "filled_pct": 100 * filled / idle if idle else 0.0,
        "woken_pct": 100 * woken / idle if idle else 0.0,
        "by_kind": {k: 100 * v / idle for k, v in by_kind.items()} if idle else {},
    }


def line(label, r):
    kinds = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(r["by_kind"].items(), key=lambda kv: -kv[1]))
    return (f"{label}: {r['rps']:.2f} req/s, {r['cpu_ms']:.1f} ms CPU a request, machine idle "
            f"{r['idle_pct']:.1f}% (softirq {r['softirq_pct']:.1f}%); recorded idle "
            f"{r['recorded_idle_pct']:.1f}%, of it {r['filled_pct']:.0f}% with a thread ready to run "
            f"waiting on another CPU ({kinds}; {r['woken_pct']:.0f}% with one woken there, not "
            f"preempted)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="*", help='"LABEL=BINARY [NAME=VALUE ...]"')
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if args.seconds < RECORD_SECONDS + 2:
        parser.error(f"--seconds must be at least {RECORD_SECONDS + 2}")
    for tool in ("wrk", "perf"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    variants = []
    for spec in args.variants or [f"simserve={os.path.join(run.ROOT, 'target', 'release', 'simserve')}"]:
        first, *settings = spec.split()
        label, _, binary = first.partition("=")
        variants.append((label, binary, dict(s.split("=", 1) for s in settings)))
    cpus = os.cpu_count() or 1
    work, lua = run.request_files("simserve-idle-")
    body = os.path.join(work, f"{next(i for i, s in enumerate(run.SCENARIOS) if 'JSON' in s[0])}.json")
    results = collections.defaultdict(list)
    for n in range(args.runs):
        order = variants if n % 2 == 0 else variants[::-1]
        for label, binary, env in order:
            r = measure(binary, env, body, lua, args.seconds, cpus, work)
            results[label].append(r)
            print(line(f"run {n + 1}, {label}", r), flush=True)
            time.sleep(1)
    print()
    for label, _, _ in variants:
        rs = results[label]
        med = {key: statistics.median(r[key] for r in rs)
               for key in ("rps", "cpu_ms", "idle_pct", "softirq_pct", "recorded_idle_pct", "filled_pct",
                           "woken_pct")}
        kinds = {k: statistics.median(r["by_kind"].get(k, 0.0) for r in rs)
                 for k in {k for r in rs for k in r["by_kind"]}}
        print(line(f"{label}, medians of {len(rs)}", {**med, "by_kind": kinds}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
