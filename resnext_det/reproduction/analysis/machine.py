"""What a measurement ran on: CPU model and instruction set, cores, GPU, library versions.

Times differ about 3x between CPUs with AVX-512 and those with AVX2 only, so every
recorded figure names the instruction set it ran with (``docs/results/benchmarks.md``).
"""

import os
import platform
from pathlib import Path

import detectron2
import torch
import torchvision

__all__ = ["cpu_isa", "cpu_model", "machine_description"]


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_isa() -> str:
    """The vector instruction set PyTorch's CPU kernels run with: 'AVX-512' or 'AVX2' (or
    what else the CPU has), lowered by ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` as
    when AVX2 is emulated on an AVX-512 machine."""
    flags = _cpu_flags()
    capability = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    limited = capability in ("avx2", "default") or onednn.startswith(("AVX2", "SSE"))
    if "avx512f" in flags and not limited:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2" + (" (emulated on an AVX-512 CPU)" if "avx512f" in flags else "")
    return "no AVX2" if flags else "unknown"


def machine_description() -> str:
    """One line: CPU, instruction set, cores, GPU and versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_model()} ({cpu_isa()}), {os.cpu_count()} cores, {torch.get_num_threads()} "
        f"torch threads, {gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Detectron2 {detectron2.__version__}"
    )
