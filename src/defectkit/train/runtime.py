"""Where a run executes: the device, CPU threads, the C allocator, data-loader workers."""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from defectkit.core.checks import InputError
from defectkit.runtime.cpus import usable_cpus


def pick_device(name: str) -> torch.device:
    """'auto' = CUDA when a GPU is visible, else the CPU; 'cpu', 'cuda', 'cuda:N' as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError("device 'mps': Apple's Metal GPU asked for but not available here; use device cpu or auto")
    if not (name in ("cpu", "cuda", "mps") or name.startswith("cuda:")):
        raise InputError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: CUDA asked for but not available (no GPU visible, or a CPU-only "
                         "torch build); use device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise InputError(f"device {name!r}: {e}") from e


def keep_freed_memory() -> None:
    """Process-wide: ask glibc to keep freed memory in its heap instead of returning each large
    block to the OS. PyTorch's CPU allocator frees and re-allocates the same large activation
    buffers every step, and glibc would map and page-fault each one in again (README,
    Benchmarks). No-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-4, 0)  # M_MMAP_MAX: no block gets its own mapping
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never trim the heap's top


def configure(device: torch.device, threads: int = 0) -> None:
    """Set up this process for training on `device`: the allocator (process-wide), torch's
    CPU threads (0 = all cores) on CPU, cudnn autotuning on CUDA."""
    keep_freed_memory()
    if device.type == "cpu":
        torch.set_num_threads(threads or usable_cpus())
    else:
        torch.backends.cudnn.benchmark = True


def default_num_workers(device_type: str) -> int:
    """Data-loader worker processes: none on a 2-core CPU (they would compete with the model)."""
    cpus = usable_cpus()
    if device_type == "cuda":
        return min(8, cpus)
    return 0 if cpus <= 2 else min(4, cpus // 2)


DEVICE_SHARE = 0.25  # of a GPU's free memory the decoded images may take on the device data path


def use_device_path(choice: str, device: torch.device, nbytes: int) -> bool:
    """Recipe data_path: "device" (any device, the CPU included), "loader", or "auto": the device path
    on CUDA when the decoded images (`nbytes`) take at most DEVICE_SHARE of the GPU's free memory."""
    if choice != "auto":
        return choice == "device"
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


def free_memory_bytes() -> int:
    """The memory available to a new allocation (Linux: MemAvailable), 0 where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
