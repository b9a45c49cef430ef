"""What the bench scripts share: checking a port is free, waiting for a simserve to answer,
reading its memory, and stopping the servers a script started. Importing it makes SIGTERM
end the script through its `finally` blocks, as Ctrl-C does, so that a script stopped by a
timeout or `kill` stops the servers it started rather than leaving them running."""

import signal
import socket
import time
import urllib.request


def _exit_on_sigterm(signum, _frame):
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def require_free(port):
    """Exits with a message when something already listens on 127.0.0.1:`port` (another bench
    script's server, say): a server started there could not bind, and the one found would be
    measured in its place."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    except OSError:
        return
    raise SystemExit(f"port {port} is in use: something already listens on 127.0.0.1:{port} "
                     "(another benchmark still running?); stop it and run again")


def stop_all(procs):
    """Terminates the processes `procs` (servers a script started), then waits for each."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait()


def wait_healthy(base, seconds=10.0):
    """Returns once GET {base}/healthz answers; raises TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{base} did not answer")


def memory_mb(pid, field="VmRSS"):
    """A memory figure of process `pid` from /proc, in MB (`VmRSS` now, `VmHWM` its peak)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")
