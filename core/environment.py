"""What `sculpt env` reports for bug reports: package versions and the compute device."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

PACKAGES = ("sculpt", "torch", "transformers", "sae-lens", "trl", "peft", "textual", "duckdb",
            "pyarrow", "datasets")
"""Distributions whose versions matter for reproducing a run."""


def package_versions() -> dict[str, str]:
    """Installed versions read from package metadata (no imports), or "not installed"."""
    out = {"python": f"{platform.python_version()} ({sys.executable})"}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_summary() -> dict[str, str]:
    """The device torch would use, and the CPU cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"platform": platform.platform(), "cpu_cores": str(cores)}
    try:
        import torch  # imported here: it costs a second or two
    except ImportError:
        out["device"] = "unknown (torch not installed)"
        return out
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
        out["device"] = f"cuda × {count} ({', '.join(names)}), CUDA {torch.version.cuda}"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out["device"] = "mps"
    else:
        out["device"] = f"cpu (torch threads {torch.get_num_threads()})"
    return out


def collect() -> dict[str, str]:
    return {**package_versions(), **device_summary()}
