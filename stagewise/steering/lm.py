"""Steering a small language model: training with induction-pattern sequences up-weighted on a schedule.

The training loop is :func:`stagewise.lm.train`'s (AdamW, linear warm-up then a constant learning rate, batches
of ``batch_size`` training sequences drawn with replacement, the model built from a transformers config) with
one addition: at step t, ``extra[t]`` further sequences are drawn from a *boost pool* (the corpus' sequences that
hold a repeated span, i.e. induction tokens) and added to the batch. The objective is

    L_t = (1/B)·[Σ_{b ∈ batch} ℓ̄_b + Σ_{e ∈ extra} ℓ̄_e]      (ℓ̄: mean next-token loss of a sequence, nats)

with the divisor B kept whatever the extra count (as the toy model keeps its divisor N): extra sequences add
weight to induction-pattern data and take none from the rest. The base batches come from one generator and the
extra draws from another, both seeded by ``seed``, so runs that differ only in their schedule start from the same
initialization and see the same base batches (a paired design: the schedule is the only difference).

Instead of saving checkpoints the loop measures the induction head in place every ``eval_every`` steps
(:func:`stagewise.lm.induction_scores` on a fixed probe of repeated sequences): every head's prefix-matching
score and the loss on the probe's second copies. Runs are cached as JSON by their settings, the data and the
package's source code (:func:`stagewise.artifacts.cache_key`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from stagewise.artifacts import atomic_dir, cache_key, read_json, write_json
from stagewise.config import ConfigError, Interval, Optional, check_fields
from stagewise.curves import first_crossing
from stagewise.lm import induction_scores, load_checkpoint, per_token_loss

__all__ = ["SteeredRun", "SteeringConfig", "train_steered"]


@dataclass(frozen=True)
class SteeringConfig:
    """Settings of one steered training run (each checked when the config is made).

    steps:        optimizer steps (≥ 1).
    lr:           AdamW learning rate after warm-up (> 0).
    warmup:       steps of linear warm-up from lr / warmup (≥ 0; 0 = none).
    weight_decay: AdamW weight decay (≥ 0).
    batch_size:   base training sequences per step, drawn with replacement (≥ 1); also the loss divisor B.
    eval_every:   steps between two induction measurements (≥ 1); step 0 and the last step are measured too.
    seed:         seed of the initialization, the base batches and the extra draws (≥ 0).
    stop_above:   stop after the first measurement at which the best head's prefix-matching score reaches this
                  level (None: train all ``steps``). Up to that measurement the run is the same as without it (the
                  same draws), so its first crossing of any level ≤ ``stop_above`` is too: a study that needs only
                  the crossing step saves the rest of the training.
    """

    steps: int = 2000
    lr: float = 1e-2
    warmup: int = 100
    weight_decay: float = 0.01
    batch_size: int = 16
    eval_every: int = 50
    seed: int = 0
    stop_above: float | None = None

    def __post_init__(self) -> None:
        count, index = Interval(ge=1, integer=True), Interval(ge=0, integer=True)
        check_fields(self, {
            "steps": count, "warmup": index, "batch_size": count, "eval_every": count, "seed": index,
            "lr": Interval(gt=0),
            "weight_decay": Interval(ge=0),
            "stop_above": Optional(Interval(gt=0, le=1)),
        })

    def eval_steps(self) -> list[int]:
        """Steps after which the induction head is measured: 0, every ``eval_every``, and the last."""
        return sorted({*range(0, self.steps + 1, self.eval_every), self.steps})


@dataclass
class SteeredRun:
    """What one steered run records.

    steps:            (K,) measured steps (after that many optimizer steps; fewer than ``config.eval_steps()`` when
                      the run stopped early, see :attr:`SteeringConfig.stop_above`).
    prefix_matching:  (K, layer, head) prefix-matching score of every head on the probe (0 … 1).
    second_copy_loss: (K,) loss on the probe's second copies (nats per token; only copying predicts them).
    first_copy_loss:  (K,) loss on the probe's first copies (nats per token).
    train_loss:       (T,) the objective L_t of every step trained (nats; includes the extra sequences' weight).
    extra:            (T,) extra boost-pool sequences added at each step (the schedule that was followed).
    boost_seen:       (T,) sequences of the step's batch that belong to the boost pool, base draws included.
    seconds:          training time when it ran (None: unknown); cached: reopened from the cache.
    """

    steps: np.ndarray
    prefix_matching: np.ndarray
    second_copy_loss: np.ndarray
    first_copy_loss: np.ndarray
    train_loss: np.ndarray
    extra: np.ndarray
    boost_seen: np.ndarray
    seconds: float | None = None
    cached: bool = False
    base_batches: np.ndarray | None = field(default=None, repr=False)  # (T, B) indices; not cached
    path: Path | None = None  # the run's folder when it saved checkpoints
    checkpoint_steps: list[int] = field(default_factory=list)

    def load(self, step: int):
        """The model saved at ``step`` (eval mode): with ``path`` and ``checkpoint_steps`` this run stands in for a
        :class:`stagewise.lm.TrainedRun` (e.g. for :func:`stagewise.lm.class_influence`)."""
        if self.path is None or step not in self.checkpoint_steps:
            raise KeyError(f"no checkpoint at step {step}; saved steps: {self.checkpoint_steps}")
        with _quiet_progress():
            return load_checkpoint(self.path / f"checkpoint-{step:07d}")

    @property
    def best(self) -> np.ndarray:
        """(K,) the largest prefix-matching score over all heads at each measured step."""
        return self.prefix_matching.reshape(len(self.steps), -1).max(axis=1)

    def crossing(self, threshold: float) -> float:
        """The step at which :attr:`best` first reaches ``threshold`` (:func:`stagewise.curves.first_crossing`;
        NaN: never)."""
        return first_crossing(self.steps, self.best, threshold)

    def to_json(self) -> dict:
        return {"steps": self.steps.tolist(), "prefix_matching": self.prefix_matching.tolist(),
                "second_copy_loss": self.second_copy_loss.tolist(), "first_copy_loss": self.first_copy_loss.tolist(),
                "train_loss": self.train_loss.tolist(), "extra": self.extra.tolist(),
                "boost_seen": self.boost_seen.tolist(), "seconds": self.seconds,
                "checkpoint_steps": list(self.checkpoint_steps)}

    @classmethod
    def from_json(cls, record: dict, cached: bool = True, path: Path | None = None) -> "SteeredRun":
        arrays = {k: np.asarray(record[k]) for k in ("steps", "prefix_matching", "second_copy_loss",
                                                     "first_copy_loss", "train_loss", "extra", "boost_seen")}
        return cls(**arrays, seconds=record.get("seconds"), cached=cached, path=path,
                   checkpoint_steps=list(record.get("checkpoint_steps", [])))


def _check_inputs(train_ids: torch.Tensor, boost: torch.Tensor, extra: np.ndarray, config: SteeringConfig,
                  probe: torch.Tensor) -> np.ndarray:
    if train_ids.dim() != 2 or train_ids.shape[0] < 1:
        raise ConfigError(f"train_ids {tuple(train_ids.shape)} (accepted: a (sequence, n_ctx) tensor of token ids)")
    if boost.dtype != torch.bool or boost.shape != train_ids.shape[:1] or not bool(boost.any()):
        raise ConfigError(f"boost: {tuple(boost.shape)} {boost.dtype} (accepted: a bool mask over the "
                          f"{train_ids.shape[0]} training sequences with at least one True)")
    extra = np.asarray(extra)
    if extra.shape != (config.steps,) or extra.dtype.kind not in "iu" or (extra < 0).any():
        raise ConfigError(f"extra: shape {extra.shape}, dtype {extra.dtype} (accepted: {config.steps} integers "
                          "≥ 0, the extra sequences of every step)")
    if probe.dim() != 2 or probe.shape[1] % 2 or probe.shape[1] > train_ids.shape[1]:
        raise ConfigError(f"probe {tuple(probe.shape)} (accepted: (num, 2L) repeated sequences, 2L ≤ n_ctx = "
                          f"{train_ids.shape[1]})")
    return extra.astype(np.int64)


def train_steered(
    model_config: PretrainedConfig,
    train_ids: torch.Tensor,
    boost: torch.Tensor,
    extra,
    config: SteeringConfig,
    probe: torch.Tensor,
    cache_dir: str | Path | None = None,
    keep_batches: bool = False,
    save_steps=(),
) -> SteeredRun:
    """Train from ``model_config`` on ``train_ids`` with ``extra[t]`` boost-pool sequences added at step t.

    train_ids: (n, n_ctx) training sequences. boost: (n,) bool, the boost pool (induction-pattern sequences).
    extra: (steps,) integers ≥ 0 (e.g. :func:`stagewise.steering.window_schedule`). probe: (num, 2L) repeated
    sequences for the induction measurements (e.g. :func:`stagewise.lm.repeated_name_sequences`).
    cache_dir: folder of cached runs (None: no cache). keep_batches: keep the base batch indices (T, B) in the
    result (for tests; never cached). save_steps: measured steps (of ``config.eval_steps()``) at which to save
    the model with ``save_pretrained`` into the run's folder ``cache_dir/steered-<key>/`` (needs ``cache_dir``).
    """
    extra = _check_inputs(train_ids, boost, extra, config, probe)
    save_steps = sorted({int(s) for s in save_steps})
    if save_steps and (cache_dir is None or keep_batches or not set(save_steps) <= set(config.eval_steps())):
        raise ConfigError(f"save_steps = {save_steps} (accepted: measured steps {config.eval_steps()[:3]} … every "
                          f"eval_every = {config.eval_every}, with a cache_dir and keep_batches=False)")
    described = json.loads(model_config.to_json_string(use_diff=False))
    described.pop("transformers_version", None)
    path = None
    if cache_dir is not None and not keep_batches:
        key = cache_key({"model": described, "train": asdict(config), "extra": extra.tolist(),
                         "save_steps": save_steps}, train_ids, boost, probe)
        path = Path(cache_dir) / f"steered-{key}"
        record = read_json(path / "run.json")
        if isinstance(record, dict):
            return SteeredRun.from_json(record, path=path)
    with atomic_dir(path) if path is not None else contextlib.nullcontext() as work:  # no folder if stopped
        run = _train_loop(model_config, train_ids, boost, extra, config, probe, keep_batches, save_steps, work)
        run.path = path
        if work is not None:
            write_json(run.to_json(), work / "run.json")
    return run


@contextlib.contextmanager
def _quiet_progress():
    """No progress bar per checkpoint saved or loaded (a chapter saves dozens); the setting is restored."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _train_loop(model_config, train_ids, boost, extra, config: SteeringConfig, probe, keep_batches: bool,
                save_steps: list[int], work: Path | None) -> SteeredRun:
    started = time.perf_counter()
    pool = torch.nonzero(boost).flatten()
    torch.manual_seed(config.seed)
    # a copy: building a model writes into its config, which is part of the cache key
    model = AutoModelForCausalLM.from_config(copy.deepcopy(model_config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = config.warmup
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup) if warmup else 1.0)
    base_draws = torch.Generator().manual_seed(config.seed)
    extra_draws = torch.Generator().manual_seed(config.seed + 1_000_003)  # its own stream: base batches stay paired
    measured = set(config.eval_steps())
    scores, losses, batches = [], [], []
    boost_seen = np.zeros(config.steps, dtype=np.int64)

    def measure(step: int) -> None:
        model.eval()
        scores.append(induction_scores(model, sequences=probe))
        if step in save_steps:
            with _quiet_progress():
                model.save_pretrained(work / f"checkpoint-{step:07d}")
        model.train()

    model.train()
    measure(0)
    n = train_ids.shape[0]
    for step in range(config.steps):
        index = torch.randint(0, n, (config.batch_size,), generator=base_draws)
        if extra[step]:
            index = torch.cat([index, pool[torch.randint(0, len(pool), (int(extra[step]),), generator=extra_draws)]])
        if keep_batches:
            batches.append(index[: config.batch_size].numpy())
        boost_seen[step] = int(boost[index].sum())
        ids = train_ids[index]
        per_sequence = per_token_loss(model(input_ids=ids).logits, ids).mean(dim=-1)
        loss = per_sequence.sum() / config.batch_size
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step + 1 in measured:
            measure(step + 1)
            if config.stop_above is not None and float(scores[-1].prefix_matching.max()) >= config.stop_above:
                break
    return SteeredRun(
        steps=np.array(config.eval_steps()[:len(scores)]),
        prefix_matching=np.stack([s.prefix_matching.numpy() for s in scores]),
        second_copy_loss=np.array([s.second_copy_loss for s in scores]),
        first_copy_loss=np.array([s.first_copy_loss for s in scores]),
        train_loss=np.array(losses), extra=extra, boost_seen=boost_seen[:len(losses)],
        seconds=time.perf_counter() - started,
        base_batches=np.stack(batches) if keep_batches else None,
        checkpoint_steps=[s for s in save_steps if s in config.eval_steps()[:len(scores)]],
    )
