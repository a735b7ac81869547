"""The training precision ``fit`` uses when ``--trainer.precision`` is not given: the fastest one that
keeps accuracy, bf16-mixed where the hardware computes in bfloat16 natively, 32-true elsewhere.

On our 2-core CPU with AVX512-BF16, bf16-mixed trained MiniLM 1.38x faster with the same dev accuracy
(docs/benchmarks.md). CPUs without native bfloat16 emulate it, which is slower than float32.
"""

from __future__ import annotations

from pathlib import Path

import torch

NATIVE_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 (AVX512-BF16, AMX); Arm (FEAT_BF16)


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str | None, set[str]]:
    """The CPU's model name and feature flags, read from Linux's ``/proc/cpuinfo`` (None and none elsewhere)."""
    name, flags = None, set()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:  # not Linux
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name is None:
            name = value.strip()
        elif key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    return name, flags


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU's feature flags include bfloat16 arithmetic."""
    return bool(NATIVE_BF16_CPU_FLAGS & cpu_info(cpuinfo)[1])


def fastest_precision(accelerator: object = "auto", cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``bf16-mixed`` if the device ``accelerator`` resolves to computes in bfloat16 natively, else ``32-true``."""
    name = accelerator if isinstance(accelerator, str) else ""
    if name in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "32-true"
    if name in ("auto", "cpu"):
        return "bf16-mixed" if cpu_has_native_bf16(cpuinfo) else "32-true"
    return "32-true"
