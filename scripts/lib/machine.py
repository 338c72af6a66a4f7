"""What machine a command runs on: whether CUDA is there, and the one-line description benchmarks and result tables
print (CPU model and cores, or the GPU, with torch's version)."""

from __future__ import annotations

import os
import platform


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows, with the core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def machine_name(device: str) -> str:
    """``device`` ("cuda" or "cpu") in one line: the GPU's name, memory and CUDA version, or the CPU (``cpu_name``)
    and torch's thread count; with torch's version."""
    import torch

    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        memory = f"{props.total_memory / 2**30:.0f} GiB"
        return f"{props.name} ({memory}), CUDA {torch.version.cuda}, torch {torch.__version__}"
    threads = torch.get_num_threads()
    return f"{cpu_name()} ({threads} thread{'s' if threads != 1 else ''}), torch {torch.__version__}"
