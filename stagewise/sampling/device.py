"""Which device a run uses: the accepted names, their check, and "auto".

Accepted: "cpu", "cuda", "cuda:N" (N < the number of visible GPUs), "mps" and "auto" (CUDA's current device
when CUDA is available, else the CPU). A name this machine cannot serve is rejected with what it can serve,
before any compute, so a chapter asked for ``device="cuda"`` on a CPU-only build stops at its validation cell.
"""

from __future__ import annotations

import os
import re

import torch

from ..config import ConfigError, Pattern

DEVICE_PATTERN = r"cpu|cuda|cuda:\d+|mps|auto"
DEVICE_FORMS = "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"
# The rule of a chapter's ``device`` parameter: the form of the name, checked before a kernel starts (on the
# machine that launches the run); check_device then checks, in the kernel, that the machine running it has it.
DEVICE_NAME = Pattern(DEVICE_PATTERN, DEVICE_FORMS)


def available_devices() -> list[str]:
    """The device names this machine can run on now, e.g. ['cpu', 'auto'] or ['cpu', 'cuda', 'cuda:0', 'auto']."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names + ["auto"]


def device_problem(spec: object) -> str | None:
    """None when ``spec`` names a device this machine has; else the accepted values, as a sentence."""
    accepted = f"{DEVICE_FORMS}; available here: {', '.join(map(repr, available_devices()))}"
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str) or re.fullmatch(DEVICE_PATTERN, spec) is None:
        return accepted
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            return (f"{accepted} (this torch {torch.__version__} has no usable CUDA: built for CUDA "
                    f"{torch.version.cuda}; install a CUDA build, e.g. make TORCH_INDEX= ...)")
        if ":" in spec and int(spec.split(":")[1]) >= torch.cuda.device_count():
            return accepted
    if spec == "mps" and "mps" not in available_devices():
        return accepted
    return None


def check_device(spec: str) -> str:
    """``spec`` unchanged when this machine has that device, else a ConfigError naming it and what is accepted
    (for a chapter's validation cell: a GPU that is missing stops the chapter before any compute). Where the
    pipeline checks a run's parameters before its kernel starts (``STAGEWISE_PRECHECK`` set), the machine is not
    checked: a run meant for a GPU machine or cluster is prepared on a laptop, and its kernel checks its own."""
    if os.environ.get("STAGEWISE_PRECHECK"):
        return spec
    problem = device_problem(spec)
    if problem is not None:
        raise ConfigError(f"device = {spec!r} (accepted: {problem})")
    return spec


def resolve_device(spec: str | torch.device | None, fallback: torch.device) -> torch.device:
    """The torch.device of ``spec`` ("auto": CUDA when available, else the CPU; None: ``fallback``)."""
    if spec is None:
        return fallback
    check_device(spec)
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def describe(device: torch.device) -> str:
    """A human name of the device: the GPU's name, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "cpu"
    return device.type
