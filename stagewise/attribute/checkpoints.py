"""Checkpoints of your own model: ``save_pretrained`` folders (Trainer's ``checkpoint-N`` included), hub names with
revisions, or one ``nn.Module`` with a state dict per checkpoint; each with its training step and a hash of its
weights. Nothing here writes: folders are only read (``local_files_only``)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from stagewise.artifacts import data_digest, load_safetensors
from stagewise.lm.model import load_checkpoint

__all__ = ["Checkpoint", "checkpoint_step", "load_checkpoints", "weights_digest"]

_STEP_IN_NAME = re.compile(r"(?:checkpoint|step|ckpt|iter|epoch)[-_]?(\d+)$|^(\d+)$", re.IGNORECASE)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) of a state dict: every tensor's name, dtype, shape and bytes, in sorted name order."""
    names = sorted(state)
    return data_digest(json.dumps(names), *[state[k] for k in names])


def checkpoint_step(folder: str | Path) -> int | None:
    """The training step of a checkpoint folder: ``global_step`` of its ``trainer_state.json``, else the number
    at the end of its name (``checkpoint-100``, ``step_100``, ``0000100``); None when neither says."""
    folder = Path(folder)
    state = folder / "trainer_state.json"
    if state.is_file():
        try:
            step = json.loads(state.read_text(encoding="utf-8")).get("global_step")
            if isinstance(step, int):
                return step
        except (OSError, ValueError):
            pass
    match = _STEP_IN_NAME.search(folder.name)
    if match:
        return int(match.group(1) or match.group(2))
    return None


@dataclass
class Checkpoint:
    """One checkpoint: its training ``step``, a ``label`` (where it came from), ``digest``, the sha256 of its
    weights (what cached results are keyed by), and ``opener``, which opens it again (in eval mode). Only one
    checkpoint is held in memory at a time: :meth:`open` reopens it (a picklable call, so a Dask worker can)."""

    step: int
    label: str
    digest: str
    opener: Callable[[], torch.nn.Module] = field(repr=False)

    def open(self) -> torch.nn.Module:
        module = self.opener().eval()
        if weights_digest(module.state_dict()) != self.digest:
            raise RuntimeError(f"checkpoint {self.label} changed while it was used (its weights' hash differs from "
                               "the one read at the start): run again")
        return module


def _from_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    module = copy.deepcopy(model)
    module.load_state_dict(state)
    return module.eval()


def _is_checkpoint_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in _WEIGHT_FILES)


def _expand_folder(path: Path) -> list[Path]:
    """A checkpoint folder itself, or the checkpoint folders inside a training run's output folder."""
    if _is_checkpoint_folder(path):
        return [path]
    inside = [p for p in sorted(path.iterdir()) if p.is_dir() and _is_checkpoint_folder(p)]
    if not inside:
        raise FileNotFoundError(
            f"checkpoints: {path} is a folder but neither a save_pretrained checkpoint (config.json and "
            f"{' or '.join(_WEIGHT_FILES[::2])}) nor a folder holding such checkpoints (Trainer's checkpoint-N/)")
    return inside


def _load_folder(path: Path, loader: Callable[..., torch.nn.Module] | None) -> torch.nn.Module:
    if loader is not None:
        return loader(str(path))
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one bar per opening of a small checkpoint is noise
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"checkpoints: {path} could not be opened as a causal language model "
                         f"(AutoModelForCausalLM.from_pretrained): {error}. For another kind of model pass "
                         "model=your_module and a state dict per checkpoint") from error
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _hub(name: str, revision: str | None, loader: Callable[..., torch.nn.Module] | None) -> torch.nn.Module:
    if loader is not None:
        return loader(name, revision=revision)

    try:
        return load_checkpoint(name, revision=revision)
    except OSError as error:
        raise ValueError(f"checkpoints: {name!r} is not a local folder, and the hub could not serve it"
                         + (f" at revision {revision!r}" if revision else "") + f" ({error}). Check the name, "
                         "the network (or HF_HUB_OFFLINE=1 with the revision in the local cache), or pass a "
                         "folder") from error


def _step_of_revision(revision: str | None, position: int) -> int:
    if revision:
        match = re.search(r"(\d+)$", revision)
        if match:
            return int(match.group(1))
    return position


def _eval(module: Any, label: str) -> torch.nn.Module:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"checkpoints: the loader returned {type(module).__name__} for {label}; expected a "
                        "torch.nn.Module")
    return module.eval()


def load_checkpoints(
    checkpoints: Any,
    *,
    model: torch.nn.Module | None = None,
    steps: Sequence[int] | None = None,
    revisions: Sequence[str] | None = None,
    loader: Callable[..., torch.nn.Module] | None = None,
) -> list[Checkpoint]:
    """The checkpoints to attribute, sorted by step, each opened in eval mode and hashed.

    checkpoints: one of
      - folders (a path or a list): ``save_pretrained`` checkpoints, or a training run's output folder whose
        ``checkpoint-N/`` subfolders are taken (the step from ``trainer_state.json``, else from the name);
      - a hub name (``"EleutherAI/pythia-14m"``) with ``revisions`` (``["step1000", …]``; the step is the number
        at the end of each revision); ``"name@revision"`` strings work too;
      - state dicts (a list of mappings of tensors, or of ``.safetensors`` files) with ``model``, the module
        whose architecture they fit (loaded into a copy, never into ``model`` itself).
    steps:   training steps, one per checkpoint (default: read as above, else 0, 1, 2, …).
    loader:  ``loader(name_or_path, revision=None) -> nn.Module``, replacing ``from_pretrained`` (tests, custom
             classes). Returns a list of :class:`Checkpoint`; two checkpoints at the same step are an error.
    """
    if isinstance(checkpoints, (str, Path)) or isinstance(checkpoints, Mapping):
        checkpoints = [checkpoints]
    if isinstance(checkpoints, torch.nn.Module):
        raise TypeError("checkpoints: a module alone holds one set of weights; pass model=module and a list of "
                        "its state dicts (module.state_dict() saved during training), or checkpoint folders")
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("checkpoints: none given (accepted: folders, a hub name with revisions, or state dicts "
                         "with model=...)")
    found: list[tuple[int | None, str, torch.nn.Module]] = []
    if model is not None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        for k, entry in enumerate(checkpoints):
            label = f"state dict {k}"
            if isinstance(entry, (str, Path)):
                label, entry = str(entry), load_safetensors(entry)
            if not isinstance(entry, Mapping):
                raise TypeError(f"checkpoints[{k}]: with model=... each checkpoint is a state dict or a "
                                f".safetensors file; got {type(entry).__name__}")
            entry = {name: t.detach().clone() for name, t in entry.items()}
            try:
                _from_state(model, entry)
            except RuntimeError as error:
                raise ValueError(f"checkpoints[{k}] ({label}) does not fit model ({type(model).__name__}): "
                                 f"{error}. Fix: pass the state dicts saved from this architecture") from error
            found.append((None, label, partial(_from_state, model, entry)))
    elif revisions is not None:
        if len(checkpoints) != 1 or not isinstance(checkpoints[0], str):
            raise ValueError("revisions: give one hub name as checkpoints, e.g. checkpoints='EleutherAI/pythia-14m', "
                             "revisions=['step1000', 'step2000']")
        name = checkpoints[0]
        for k, revision in enumerate(revisions):
            found.append((_step_of_revision(revision, k), f"{name}@{revision}",
                          partial(_hub, name, revision, loader)))
    else:
        for k, entry in enumerate(checkpoints):
            if isinstance(entry, Mapping):
                raise TypeError(f"checkpoints[{k}] is a state dict: pass model=your_module as well")
            if not isinstance(entry, (str, Path)):
                raise TypeError(f"checkpoints[{k}]: {type(entry).__name__} (accepted: a folder, a hub name, or a "
                                "state dict with model=...)")
            path = Path(entry)
            if path.is_dir():
                for folder in _expand_folder(path):
                    found.append((checkpoint_step(folder), str(folder), partial(_load_folder, folder, loader)))
            elif path.exists() or str(entry).startswith((".", "/", "~")) or str(entry).count("/") > 1:
                raise FileNotFoundError(f"checkpoints[{k}]: {entry} is not a folder (accepted: a save_pretrained "
                                        "folder, a training run's folder of checkpoint-N/, or a hub name)")
            else:
                name, _, revision = str(entry).partition("@")
                found.append((_step_of_revision(revision, k) if revision else None, str(entry),
                              partial(_hub, name, revision or None, loader)))
    if steps is not None:
        steps = list(steps)
        if len(steps) != len(found):
            raise ValueError(f"steps: {len(steps)} given for {len(found)} checkpoints (one step per checkpoint)")
        found = [(int(s), label, m) for s, (_, label, m) in zip(steps, found)]
    elif any(s is None for s, _, _ in found):
        found = [(k if s is None else s, label, m) for k, (s, label, m) in enumerate(found)]
    result, shapes = [], None
    for s, label, opener in found:  # opened one at a time: hashed, its shapes compared, then let go
        module = _eval(opener(), label)
        state = module.state_dict()
        here = [(k, tuple(v.shape)) for k, v in state.items()]
        if shapes is not None and here != shapes[1]:
            raise ValueError(f"checkpoints: {label} has other parameters (names or shapes) than {shapes[0]}: "
                             "every checkpoint must be of the same architecture")
        shapes = shapes or (label, here)
        result.append(Checkpoint(int(s), label, weights_digest(state), opener))
        del module, state
    result.sort(key=lambda c: c.step)
    seen: dict[int, str] = {}
    for c in result:
        if c.step in seen:
            raise ValueError(f"checkpoints: {seen[c.step]} and {c.label} are both at step {c.step}; pass steps=[...] "
                             "(--steps) to tell them apart")
        seen[c.step] = c.label
    return result
