"""What the operating system says about memory (psutil: the same answers on Linux, macOS and Windows).
The arithmetic of what models will take is in ``memory.py``; this module only asks the OS."""

from __future__ import annotations

import sys

import psutil

__all__ = ["available_bytes", "peak_rss_bytes", "rss_bytes"]


def available_bytes() -> int:
    """Memory the OS could give us now; on macOS capped at Metal's GPU working-set limit."""
    available = int(psutil.virtual_memory().available)
    if sys.platform == "darwin":
        # Apple silicon shares RAM with the GPU, but Metal caps the working set below total RAM
        # (about 2/3 on small machines, 3/4 on large); llama.cpp models must fit under that cap.
        total = int(psutil.virtual_memory().total)
        return min(available, int(total * (0.67 if total <= 36 * 2**30 else 0.75)))
    return available


def rss_bytes() -> int | None:
    """This process's resident set size now, or None where the OS will not say."""
    try:
        return int(psutil.Process().memory_info().rss)
    except (psutil.Error, OSError):
        return None


def peak_rss_bytes() -> int:
    """The most this process has held resident so far (the current RSS where no peak is kept)."""
    try:
        import resource  # Unix only
    except ImportError:
        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))  # Windows keeps the peak working set
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux
