"""What reproduces a training run, recorded in meta.json ``provenance`` when a model directory is exported.

Seed, the full resolved configuration, library versions, Python and platform, hardware, and the git commit of
the code when it runs from a git checkout (with whether it had uncommitted changes).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("bilstm-toolkit", "torch", "pytorch-lightning", "torchmetrics", "jsonargparse", "spacy", "transformers",
             "tokenizers", "safetensors", "numpy", "seqeval", "sacrebleu")


def _versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _git(root: Path) -> dict[str, Any] | None:
    """The commit of the checkout holding the code, and whether it has uncommitted changes (None: not in git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "uncommitted_changes": bool(status.stdout.strip())}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _hardware() -> dict[str, Any]:
    import torch

    hardware: dict[str, Any] = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                                "torch_threads": torch.get_num_threads()}
    with contextlib.suppress(ValueError, OSError, AttributeError):  # sysconf names differ off Linux
        hardware["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    if torch.cuda.is_available():
        hardware["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return hardware


def provenance(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """The reproducibility record of a run (plain JSON values)."""
    return {"seed": seed, "config": json.loads(json.dumps(config, default=str)) if config is not None else None,
            "versions": _versions(), "python": platform.python_version(), "platform": platform.platform(),
            "hardware": _hardware(), "git": _git(Path(__file__).resolve().parents[1])}
