"""What `sculpt env` reports for bug reports: package versions and the compute device."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = (
    "sculpt",
    "torch",
    "transformers",
    "sae-lens",
    "trl",
    "peft",
    "textual",
    "duckdb",
    "pyarrow",
    "datasets",
    "accelerate",
)
"""Distributions whose versions matter for reproducing a run."""


def installed_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Versions read from package metadata (no imports); None where not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def package_versions() -> dict[str, str]:
    """Python and the installed versions, for people to read."""
    versions = {k: v or "not installed" for k, v in installed_versions().items()}
    return {"python": f"{platform.python_version()} ({sys.executable})", **versions}


def _nvidia_gpus() -> list[str]:
    """GPU names from the NVIDIA driver, without importing torch."""
    if shutil.which("nvidia-smi"):
        try:
            done = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
            if names:
                return names
        except (OSError, subprocess.TimeoutExpired):
            pass
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        model = next((ln for ln in info.read_text().splitlines() if ln.startswith("Model:")), "")
        names.append(model.partition(":")[2].strip() or "NVIDIA GPU")
    return names


def device_summary(ask_torch: bool = False) -> dict[str, str]:
    """The device, and the CPU cores this process may run on. By default from the driver and
    torch's build tag (fast); `ask_torch` imports torch and reports what it actually sees."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"platform": platform.platform(), "cpu_cores": str(cores)}
    if ask_torch:
        out["device"] = _torch_device()
        return out
    gpus = _nvidia_gpus()
    try:
        build = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        build = "not installed"
    if gpus:
        names = ", ".join(sorted(set(gpus)))
        warn = "; torch is a CPU build" if build.endswith("+cpu") else ""
        out["device"] = f"cuda × {len(gpus)} ({names}){warn}"
    else:
        out["device"] = f"cpu (no NVIDIA driver; torch {build})"
    return out


def _torch_device() -> str:
    try:
        import torch  # imported only on request: it costs seconds
    except ImportError:
        return "unknown (torch not installed)"
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
        return f"cuda × {count} ({', '.join(names)}), CUDA {torch.version.cuda}"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return f"cpu (torch sees no GPU; {torch.get_num_threads()} threads)"


def collect(ask_torch: bool = False) -> dict[str, str]:
    return {**package_versions(), **device_summary(ask_torch)}
