"""What the bench scripts share: waiting for a simserve to answer, and reading its memory."""

import time
import urllib.request


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
