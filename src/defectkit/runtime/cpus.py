"""The CPU cores this process may run on. Standard library only, so that the bundle ships it."""
from __future__ import annotations

import os


def usable_cpus() -> int:
    """The cores in this process's affinity mask (a container's or a scheduler's cpuset, a test worker's
    share), not the machine's count: os.cpu_count() counts every core of the host, and threads sized by it
    oversubscribe the cores the process was given."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
