"""Memory and CPU readings of the current process, shared by the benchmark scripts (Linux)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys


def status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``, ...) in MiB; None where unreadable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM), so that the peak of an earlier step
    (loading signals) does not hide a smaller peak of the measured one. ``ru_maxrss``
    cannot be reset. False where the counter is unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return status_mb("VmHWM") is not None


def cpu_seconds() -> float:
    """User + system CPU time of this process, over all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str, case: dict, timeout: float, threads: int) -> dict:
    """Run ``script --child <case as JSON>`` in a fresh process with ``threads`` BLAS/OpenMP
    threads; the case with the child's last printed line (a JSON object) and a status."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run([sys.executable, script, "--child", json.dumps(case)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**case, "status": f"timeout after {timeout:.0f} s", "load_avg": load}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {**case, "status": "error: " + (lines[-1] if lines else f"rc={proc.returncode}"),
                "load_avg": load}
    return {**case, **json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok",
            "load_avg": load}
