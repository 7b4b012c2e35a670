"""Training a small language model with AdamW and keeping many checkpoints, cached by the run's parameters.

:func:`train` trains a model built from a transformers config (the attention-only model or GPT-NeoX) on a
(sequence, n_ctx) tensor of token ids and saves a checkpoint at every step of :func:`checkpoint_steps` with
``save_pretrained``. Two recipes for each of its schedules:

- the learning rate (:func:`lr_factor`): linear warm-up, then held ("constant"), or then a cosine decay to
  ``final_lr`` of the peak at the last step ("cosine": Pythia's, which decays to 10%);
- the checkpoints (:func:`checkpoint_steps`): log-spaced over the run plus evenly spaced inside an expected
  transition window ("log_dense"), or Pythia's log-then-linear list, step 0, the powers of two below the linear
  spacing, then every ``steps / linear_checkpoints`` steps ("pythia": 1, 2, 4, …, 512, then every 1,000 of
  143,000 steps in Pythia).
 A run lives in
``cache_dir/run-<key>``, the key hashing every parameter, the data and the package's source code
(:func:`stagewise.artifacts.cache_key`: a change to any module of stagewise trains afresh). It is written into a
temporary folder and renamed when complete (:func:`stagewise.artifacts.atomic_dir`), so a folder that exists is a
finished run and calling :func:`train` again only reopens it.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from stagewise.artifacts import atomic_dir, cache_key, read_json, write_json
from stagewise.config import Interval, Satisfies, check_fields
from stagewise.lm.model import load_checkpoint
from stagewise.sampling import resolve_device

__all__ = ["CHECKPOINT_SCHEDULES", "LR_SCHEDULES", "TrainConfig", "TrainedRun", "checkpoint_steps", "lr_factor",
           "train"]

LR_SCHEDULES = ("constant", "cosine")
CHECKPOINT_SCHEDULES = ("log_dense", "pythia")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (each checked when the config is made).

    steps:             optimizer steps (≥ 1).
    lr:                AdamW's peak learning rate (> 0), reached after ``warmup`` steps.
    warmup:            steps of linear learning-rate warm-up from lr / warmup (≥ 0; 0 = none).
    lr_schedule:       after warm-up, "constant" (lr held) or "cosine" (decay to final_lr · lr at the last step).
    final_lr:          with "cosine", the last step's learning rate as a fraction of lr (in [0, 1]; Pythia: 0.1).
    weight_decay:      AdamW weight decay (≥ 0).
    batch_size:        sequences per step, drawn with replacement (≥ 1).
    checkpoint_schedule: "log_dense" or "pythia" (see the module); step 0 and the last step are always kept.
    log_checkpoints:   "log_dense": checkpoints log-spaced over 1 … steps (≥ 1).
    transition:        "log_dense": (first, last) step of a window where checkpoints are denser, or None.
    dense_checkpoints: "log_dense": checkpoints evenly spaced inside ``transition`` (≥ 0); "pythia": the number
                       of linearly spaced checkpoints (≥ 1), every steps / dense_checkpoints steps.
    seed:              seed of the initialization and of the batch draws (≥ 0).
    """

    steps: int = 6000
    lr: float = 1e-2
    warmup: int = 300
    lr_schedule: str = "constant"
    final_lr: float = 0.1
    weight_decay: float = 0.01
    batch_size: int = 32
    log_checkpoints: int = 16
    transition: tuple[int, int] | None = (2000, 5000)
    dense_checkpoints: int = 16
    checkpoint_schedule: str = "log_dense"
    seed: int = 0

    def __post_init__(self) -> None:
        window = self.transition
        count, index = Interval(ge=1, integer=True), Interval(ge=0, integer=True)
        check_fields(self, {
            "steps": count, "warmup": index, "batch_size": count, "log_checkpoints": count,
            "dense_checkpoints": index, "seed": index,
            "lr": Interval(gt=0),
            "weight_decay": Interval(ge=0), "final_lr": Interval(ge=0, le=1),
            "lr_schedule": Satisfies(lambda v: v in LR_SCHEDULES, " or ".join(map(repr, LR_SCHEDULES))),
            "checkpoint_schedule": Satisfies(lambda v: v in CHECKPOINT_SCHEDULES,
                                             " or ".join(map(repr, CHECKPOINT_SCHEDULES))),
            "transition": Satisfies(lambda _: window is None or (len(window) == 2 and 0 <= window[0] <= window[1]),
                                    "None or (first, last) with 0 ≤ first ≤ last"),
        })


def checkpoint_steps(config: TrainConfig) -> list[int]:
    """Steps after which a checkpoint is saved (step 0 and the last step always).

    "log_dense": log-spaced over 1 … steps, plus evenly spaced inside the transition window. "pythia": the
    powers of two below the linear spacing, then every ``round(steps / dense_checkpoints)`` steps.
    """
    steps = {0, config.steps}
    if config.checkpoint_schedule == "pythia":
        every = max(1, round(config.steps / max(config.dense_checkpoints, 1)))
        steps |= {2**k for k in range(every.bit_length()) if 2**k < every}
        steps |= set(range(every, config.steps + 1, every))
        return sorted(s for s in steps if s <= config.steps)
    n = config.log_checkpoints
    steps |= {round(math.exp(math.log(config.steps) * k / max(n - 1, 1))) for k in range(n)}
    if config.transition is not None and config.dense_checkpoints:
        first, last = config.transition
        m = config.dense_checkpoints
        steps |= {round(first + (last - first) * k / max(m - 1, 1)) for k in range(m)}
    return sorted(s for s in steps if s <= config.steps)


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (1 … steps) as a fraction of ``config.lr``.

    Warm-up: step / warmup for step ≤ warmup. Then 1 ("constant"), or ("cosine") final + (1 − final)·(1 +
    cos(π·p))/2 with p = (step − warmup) / (steps − warmup), from 1 after the warm-up to ``final_lr`` at the
    last step.
    """
    if not (isinstance(step, int) and 1 <= step <= config.steps):
        raise ValueError(f"step = {step!r} (accepted: an integer 1 … steps = {config.steps})")
    warmup = config.warmup
    if step <= warmup:
        return step / warmup
    if config.lr_schedule == "constant" or config.steps == warmup:
        return 1.0
    progress = (step - warmup) / (config.steps - warmup)
    return config.final_lr + (1 - config.final_lr) * (1 + math.cos(math.pi * progress)) / 2


@dataclass
class TrainedRun:
    """A finished run: its folder, checkpoint steps, training loss (nats, mean over the batch, per step), whether
    it was reopened from the cache, and the seconds its training took when it ran."""

    path: Path
    checkpoint_steps: list[int]
    losses: list[float]
    cached: bool
    seconds: float | None = None

    def checkpoint_path(self, step: int) -> Path:
        if step not in self.checkpoint_steps:
            raise KeyError(f"no checkpoint at step {step}; saved steps: {self.checkpoint_steps}")
        return self.path / f"checkpoint-{step:07d}"

    def load(self, step: int) -> PreTrainedModel:
        """The model at ``step`` (eval mode)."""
        return load_checkpoint(self.checkpoint_path(step))


def _described(model_config: PretrainedConfig) -> dict:
    """The model config as JSON data (transformers' own serialization), without the transformers version."""
    described = json.loads(model_config.to_json_string(use_diff=False))
    described.pop("transformers_version", None)
    return described


def _run_key(model_config: PretrainedConfig, config: TrainConfig, data: torch.Tensor, device: torch.device) -> str:
    parameters = {"model": _described(model_config), "train": asdict(config)}
    if device.type != "cpu":  # another device computes other weights; CPU runs keep the keys they always had
        parameters["device"] = device.type
    return cache_key(parameters, data)


def train(
    model_config: PretrainedConfig,
    data: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    cache_dir: str | Path = ".cache/lm",
    tokenizer=None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> TrainedRun:
    """Train a causal LM from ``model_config`` on ``data`` (sequence, n_ctx) token ids with AdamW; cached.

    Saves ``checkpoint-<step>`` folders (``save_pretrained``), ``run.json`` (parameters, checkpoint steps,
    losses) and, when given, the tokenizer (``tokenizer/``) in ``cache_dir/run-<key>``. A finished run with the
    same parameters and data is reopened, not retrained (``TrainedRun.cached``). ``device`` ("cpu", "cuda",
    "cuda:N", "mps", "auto") is where the model trains; the batches are drawn on the CPU from the seed, so the
    batch order is the same on every device, and the losses stay on the device until the run ends (no host
    synchronisation per step). A run on another device than the CPU has a key of its own.
    """
    device = resolve_device(device, torch.device("cpu"))  # a device this machine lacks: ConfigError, now
    final = Path(cache_dir) / f"run-{_run_key(model_config, config, data, device)}"
    record = read_json(final / "run.json")
    if isinstance(record, dict):
        return TrainedRun(final, record["checkpoint_steps"], record["losses"], cached=True,
                          seconds=record.get("seconds"))
    started = time.perf_counter()
    with atomic_dir(final) as work:  # a run interrupted here leaves no run-<key> folder behind
        torch.manual_seed(config.seed)
        # a copy: building a model writes into its config, and the caller's config is part of the cache key
        model = AutoModelForCausalLM.from_config(copy.deepcopy(model_config)).to(device)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        # LambdaLR's k counts the steps taken: step k + 1 runs at lr_factor(k + 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: lr_factor(min(k + 1, config.steps), config))
        generator = torch.Generator().manual_seed(config.seed)
        saves = checkpoint_steps(config)
        losses = torch.empty(config.steps, device=device)

        def save(step: int) -> None:
            model.save_pretrained(work / f"checkpoint-{step:07d}")

        save(0)
        for step in tqdm(range(1, config.steps + 1), desc="training", disable=not progress):
            batch = data[torch.randint(0, data.shape[0], (config.batch_size,), generator=generator)].to(device)
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses[step - 1] = loss.detach()
            if step in saves:
                save(step)
        if tokenizer is not None:
            tokenizer.save_pretrained(work / "tokenizer")
        losses = losses.tolist()
        seconds = time.perf_counter() - started
        write_json({"model": _described(model_config), "train": asdict(config), "checkpoint_steps": saves,
                    "losses": losses, "seconds": seconds}, work / "run.json")
    return TrainedRun(final, saves, losses, cached=False, seconds=seconds)
