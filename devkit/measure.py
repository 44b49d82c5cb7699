"""Measuring helpers for the tests and the benchmarks."""
from __future__ import annotations


def peak_rss() -> int:
    """This process's peak resident memory (VmHWM), in bytes. ru_maxrss would include a forked
    parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
