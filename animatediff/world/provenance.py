"""What a build's bits depend on: library versions, the kernels torch picks on this CPU, threads, the GPU.

A rebuild gives the shipped weights bit for bit only where all of these match; `build.json` records them.
"""

from __future__ import annotations

import platform

import numpy
import torch


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, object]:
    """torch, diffusers, transformers and numpy versions, torch's CPU capability (its kernel path: AVX2, AVX512,
    ...; `ATEN_CPU_CAPABILITY` can lower it), the CPU model and torch's thread count, and CUDA/cuDNN and the GPU
    where one is used."""
    import diffusers
    import transformers

    env: dict[str, object] = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env |= {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(),
        }
    return env


def describe(env: dict[str, object]) -> str:
    """One line: 'torch 2.13.0, diffusers 0.42.1, ..., CPU AVX512 (AMD EPYC), 2 threads'."""
    libraries = ", ".join(f"{k} {env[k]}" for k in ("torch", "diffusers", "transformers", "numpy"))
    line = f"{libraries}; CPU {env['cpu_capability']} ({env['cpu']}), {env['threads']} threads"
    if "gpu" in env:
        line += f"; GPU {env['gpu']} (CUDA {env['cuda']}, cuDNN {env['cudnn']})"
    return line
