"""Measurements across the checkpoints of a training run: induction scores and class × class influence.

:func:`track_induction` reads every head's prefix-matching score and the loss on second copies at each checkpoint
(:class:`InductionTrajectory`, whose :meth:`~InductionTrajectory.formation_step` dates the induction head).
:func:`class_influence` runs localized SGLD around each checkpoint on the training sequences, records the loss of
every token of a fixed set of query sequences at every draw, and reduces them to class × class BIF through the
group (bilinear) path; the per-token draws are kept for token × token heatmaps. Its results are cached next to the
run in ``influence-<key>/`` (tensors as safetensors, the rest as JSON; nothing pickled), the key hashing the
parameters, the sequences and the package's source code (:func:`stagewise.artifacts.cache_key`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from stagewise.artifacts import atomic_dir, cache_key, data_digest, load_safetensors, read_json, write_json, write_safetensors
from stagewise.curves import half_rise_step
from stagewise.influence import InfluenceTrajectory, bif_trajectory, group_bif, group_bif_stderr, token_bif
from stagewise.lm.induction import induction_scores
from stagewise.lm.model import HubCheckpoints, per_token_loss
from stagewise.lm.train import TrainedRun
from stagewise.sampling import SGLDConfig, module_loss_fn

__all__ = [
    "ClassInfluence",
    "InductionTrajectory",
    "class_influence",
    "lm_loss_fn",
    "track_induction",
]


def _check_steps(run: TrainedRun, steps: Sequence[int] | None) -> list[int]:
    chosen = list(run.checkpoint_steps if steps is None else steps)
    missing = [s for s in chosen if s not in run.checkpoint_steps]
    if not chosen or missing:
        raise ValueError(f"steps: {missing or 'none'} (accepted: a non-empty subset of the saved checkpoint steps "
                         f"{run.checkpoint_steps[0]} … {run.checkpoint_steps[-1]}, see run.checkpoint_steps)")
    return chosen


@dataclass
class InductionTrajectory:
    """Induction measurements at each checkpoint of a run.

    steps:             (K,) training steps.
    prefix_matching:   (K, layer, head) prefix-matching score of every head (0 … 1).
    second_copy_loss:  (K,) loss (nats per token) on the second copy of repeated random sequences.
    first_copy_loss:   (K,) loss on the first copy (unpredictable: stays near the entropy of the tokens).
    induction_token_loss: (K,) loss (nats per token) on the induction tokens of held-out text (the second copies
                       of its repeated spans), or None when no held-out text was given.
    """

    steps: np.ndarray
    prefix_matching: np.ndarray
    second_copy_loss: np.ndarray
    first_copy_loss: np.ndarray
    induction_token_loss: np.ndarray | None = None

    @property
    def best(self) -> np.ndarray:
        """(K,) the largest prefix-matching score over all heads at each checkpoint."""
        return self.prefix_matching.reshape(len(self.steps), -1).max(axis=1)

    def best_head(self) -> tuple[int, int]:
        """(layer, head) of the head with the highest score at the last checkpoint."""
        last = self.prefix_matching[-1]
        layer, head = np.unravel_index(int(np.argmax(last)), last.shape)
        return int(layer), int(head)

    def formation_step(self, threshold: float = 0.3) -> int | None:
        """The step at which the induction head forms, or None if no head's score ever reaches ``threshold``.

        Defined as the step where the best head's score crosses half-way from its plateau to its maximum
        (:func:`stagewise.curves.half_rise_step`), rounded to an integer.
        """
        if self.best.max() < threshold:
            return None
        step = half_rise_step(self.steps, self.best)
        return None if step is None else int(round(step))

    def to_frame(self):
        """Long table: step, layer, head, prefix_matching (plus the two copy losses per step)."""
        import pandas as pd

        k, layers, heads = self.prefix_matching.shape
        rows = [
            {"step": int(self.steps[i]), "layer": layer, "head": head,
             "prefix_matching": float(self.prefix_matching[i, layer, head]),
             "second_copy_loss": float(self.second_copy_loss[i]), "first_copy_loss": float(self.first_copy_loss[i]),
             "induction_token_loss": (float(self.induction_token_loss[i]) if self.induction_token_loss is not None
                                      else None)}
            for i in range(k) for layer in range(layers) for head in range(heads)
        ]
        return pd.DataFrame(rows)


def track_induction(
    run: TrainedRun,
    steps: Sequence[int] | None = None,
    token_ids: torch.Tensor | Sequence[int] | None = None,
    length: int = 16,
    num: int = 64,
    seed: int = 0,
    held_out_ids: torch.Tensor | None = None,
    induction_mask: torch.Tensor | None = None,
    sequences: torch.Tensor | None = None,
    progress: bool = True,
) -> InductionTrajectory:
    """Prefix-matching score of every head and second-copy loss at each checkpoint of ``run``.

    steps: checkpoints to read (default: all saved). token_ids, length, num, seed: the repeated random sequences,
    as in :func:`stagewise.lm.induction_scores` (the same sequences at every checkpoint).
    held_out_ids, induction_mask: (sequence, n_ctx) text the model was not trained on and its induction-class
    mask (``corpus.classes[6]``); when given, the mean loss on those tokens is recorded too.
    sequences: repeated sequences to score on instead of random tokens (see :func:`induction_scores`).
    """
    if (held_out_ids is None) != (induction_mask is None) or (
            held_out_ids is not None and (held_out_ids.shape != induction_mask.shape or not induction_mask[:, 1:].any())):
        raise ValueError("held_out_ids and induction_mask: give both or neither, with the same (sequence, n_ctx) "
                         "shape and at least one induction token after the first position")
    chosen = _check_steps(run, steps)
    n_ctx = getattr(run.load(chosen[0]).config, "n_ctx", None)
    if sequences is not None:
        length = sequences.shape[-1] // 2
    if not (isinstance(length, int) and length >= 2 and (n_ctx is None or 2 * length <= n_ctx)):
        raise ValueError(f"length = {length!r} (accepted: an integer from 2 to n_ctx / 2 = {n_ctx // 2 if n_ctx else '…'})")
    scores, token_losses = [], []
    for step in tqdm(chosen, desc="induction scores", disable=not progress):
        model = run.load(step)
        scores.append(induction_scores(model, length=length, num=num, seed=seed, token_ids=token_ids,
                                       sequences=sequences))
        if held_out_ids is not None:
            with torch.no_grad():
                losses = per_token_loss(model(input_ids=held_out_ids).logits, held_out_ids)
            token_losses.append(float(losses[induction_mask[:, 1:]].mean()))
    return InductionTrajectory(
        steps=np.array(chosen),
        prefix_matching=np.stack([s.prefix_matching.numpy() for s in scores]),
        second_copy_loss=np.array([s.second_copy_loss for s in scores]),
        first_copy_loss=np.array([s.first_copy_loss for s in scores]),
        induction_token_loss=np.array(token_losses) if held_out_ids is not None else None,
    )


def lm_loss_fn(model) -> tuple[dict, callable]:
    """(parameters, loss function) of a causal LM for the sampler.

    The loss function maps (parameters, token ids (batch, seq)) to per-token next-token losses (batch, seq − 1):
    the sampler's objective is their mean; recorded as observables, they are the per-token losses the BIF needs.
    """

    def per_token(forward, ids: torch.Tensor) -> torch.Tensor:
        return per_token_loss(forward(input_ids=ids).logits, ids)

    return module_loss_fn(model, per_token)


@dataclass
class ClassInfluence:
    """Class × class BIF across checkpoints, with the per-token draws behind it.

    trajectory:   :class:`~stagewise.influence.InfluenceTrajectory` with values (K, G, G): entry (k, g, h) is
                  the BIF of class g's tokens on class h's tokens at ``steps[k]`` (negative: g helps h).
    class_names:  the G class names.
    token_losses: (K, chain, draw, query, seq − 1) per-token losses of the query sequences at every draw
                  (entry t is the loss of token t + 1).
    query_ids:    (query, seq) the query sequences.
    cached:       whether the result was reopened from the cache.
    seconds:      how long the sampling took when it ran.
    """

    trajectory: InfluenceTrajectory
    class_names: tuple[str, ...]
    token_losses: torch.Tensor
    query_ids: torch.Tensor
    cached: bool = False
    seconds: float | None = None

    @property
    def steps(self) -> np.ndarray:
        return self.trajectory.steps.numpy()

    def pair(self, source: str, target: str) -> np.ndarray:
        """(K,) BIF of class ``source`` on class ``target`` at each checkpoint."""
        g, h = self.class_names.index(source), self.class_names.index(target)
        return self.trajectory.values[:, g, h].numpy()

    def pair_stderr(self, source: str, target: str) -> np.ndarray:
        g, h = self.class_names.index(source), self.class_names.index(target)
        return self.trajectory.stderr[:, g, h].numpy()

    def token_matrix(self, step: int, query: int = 0) -> np.ndarray:
        """(seq − 1, seq − 1) token × token BIF within query sequence ``query`` at checkpoint ``step``."""
        k = int(np.flatnonzero(self.steps == step)[0]) if step in self.steps else None
        if k is None:
            raise ValueError(f"step = {step} (accepted: one of the sampled steps {self.steps.tolist()})")
        if not 0 <= query < self.token_losses.shape[3]:
            raise ValueError(f"query = {query} (accepted: 0 … {self.token_losses.shape[3] - 1})")
        return token_bif(self.token_losses[k, :, :, query : query + 1])[0, :, 0, :].numpy()

    def peak_steps(self, since: int = 0) -> dict[str, int]:
        """For every class pair "g→h", the step at which |BIF| is largest (among the sampled steps ≥ ``since``)."""
        keep = self.steps >= since
        if not keep.any():
            raise ValueError(f"since = {since} (accepted: at most the last sampled step {int(self.steps[-1])})")
        values = self.trajectory.values.numpy()[keep]
        steps = self.steps[keep]
        out = {}
        for g, a in enumerate(self.class_names):
            for h, b in enumerate(self.class_names):
                column = np.abs(values[:, g, h])
                if np.isfinite(column).any():
                    out[f"{a}→{b}"] = int(steps[int(np.nanargmax(column))])
        return out

    def with_chains(self, other: "ClassInfluence", classes: torch.Tensor) -> "ClassInfluence":
        """This result and ``other`` as one: ``other`` holds more chains at the same checkpoints, with the same
        queries and draws per chain (another seed), and the class × class BIF and its ESS-based errors are
        recomputed from all the chains side by side. ``classes``: (G, query, seq) as for :func:`class_influence`.
        ``cached`` is True only when both were; ``seconds`` is their sum."""
        if (not torch.equal(self.trajectory.steps, other.trajectory.steps)
                or self.token_losses.shape[2:] != other.token_losses.shape[2:]
                or tuple(self.class_names) != tuple(other.class_names)):
            raise ValueError("other: the same checkpoints, classes, queries and draws per chain are needed (got "
                             f"steps {other.steps.tolist()} and losses {tuple(other.token_losses.shape)} against "
                             f"{self.steps.tolist()} and {tuple(self.token_losses.shape)})")
        if tuple(classes.shape) != (len(self.class_names), *self.query_ids.shape):
            raise ValueError(f"classes {tuple(classes.shape)} (accepted: ({len(self.class_names)}, "
                             f"{', '.join(map(str, self.query_ids.shape))}), the masks the results were made with)")
        losses = torch.cat([self.token_losses, other.token_losses], dim=1)
        groups = classes[:, :, 1:].to(losses.device)
        values = torch.stack([group_bif(losses[k], groups, losses[k], groups) for k in range(len(losses))])
        errors = torch.stack([group_bif_stderr(losses[k], groups, losses[k], groups) for k in range(len(losses))])
        trajectory = InfluenceTrajectory(self.trajectory.steps, values.to(self.trajectory.values.dtype),
                                         errors.to(self.trajectory.stderr.dtype), None)
        return ClassInfluence(trajectory, self.class_names, losses, self.query_ids,
                              cached=self.cached and other.cached,
                              seconds=(self.seconds or 0.0) + (other.seconds or 0.0))

    def normalized(self) -> np.ndarray:
        """(K, G, G) correlation form: BIF(g, h) / √(BIF(g, g)·BIF(h, h)) = −Corr(class-mean losses of g and h).

        Removes the scale of each class (a class of few tokens has a noisier mean loss, hence larger
        covariances), leaving how strongly two classes' losses move together, in [−1, 1].
        """
        values = self.trajectory.values.numpy()
        diagonal = np.sqrt(np.abs(np.diagonal(values, axis1=1, axis2=2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            return values / (diagonal[:, :, None] * diagonal[:, None, :])


def _influence_key(digests: Sequence[str], steps, train_ids, query_ids, classes, class_names,
                   config: SGLDConfig) -> str:
    # keyed by the weights themselves (their hashes), never by a folder's name: changed checkpoints recompute
    return cache_key({"weights": list(digests), "steps": [int(s) for s in steps], "sgld": asdict(config),
                      "class_names": list(class_names)}, train_ids, query_ids, classes)


def _weights_digest(model) -> str:
    state = model.state_dict()
    names = sorted(state)
    return data_digest(json.dumps(names), *[state[k] for k in names])


def _check_run(run) -> None:
    if isinstance(run, (str, Path)):
        raise TypeError(f"run = {str(run)!r}: a folder is not a run object. For save_pretrained checkpoints "
                        "(Trainer's checkpoint-N folders) use stagewise.attribute.influence(folders, data, queries, "
                        "token_classes=...), or pass an object with checkpoint_steps and load(step) (TrainedRun, "
                        "HubCheckpoints)")
    if not (hasattr(run, "checkpoint_steps") and callable(getattr(run, "load", None))):
        raise TypeError(f"run: {type(run).__name__} has no checkpoint_steps and load(step); accepted: a TrainedRun "
                        "(stagewise.lm.train), HubCheckpoints, or an object with both")


_TENSORS, _RECORD = "tensors.safetensors", "result.json"


def _save_influence(path: Path, result: "ClassInfluence") -> None:
    if path.exists():  # an unreadable entry (files removed by hand): replace it
        shutil.rmtree(path)
    with atomic_dir(path) as work:
        trajectory = result.trajectory
        write_safetensors(work / _TENSORS, {"steps": trajectory.steps, "values": trajectory.values,
                                            "stderr": trajectory.stderr, "token_losses": result.token_losses})
        write_json({"class_names": list(result.class_names), "seconds": result.seconds}, work / _RECORD)


def _load_influence(path: Path, query_ids: torch.Tensor) -> "ClassInfluence | None":
    """The cached result in folder ``path``, or None (a miss) when it is absent or unreadable."""
    record = read_json(path / _RECORD)
    if not isinstance(record, dict):
        return None
    try:
        saved = load_safetensors(path / _TENSORS)
        trajectory = InfluenceTrajectory(saved["steps"], saved["values"], saved["stderr"], None)
        return ClassInfluence(trajectory, tuple(record["class_names"]), saved["token_losses"], query_ids,
                              cached=True, seconds=record.get("seconds"))
    except (OSError, KeyError, ValueError):  # a missing file or tensor, a corrupt file
        return None


def class_influence(
    run: TrainedRun,
    train_ids: torch.Tensor,
    query_ids: torch.Tensor,
    classes: torch.Tensor,
    class_names: Sequence[str],
    config: SGLDConfig,
    steps: Sequence[int] | None = None,
    checkpoints_per_pass: int = 8,
    cache: bool = True,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> ClassInfluence:
    """Class × class BIF at each checkpoint of ``run`` from localized SGLD on ``train_ids``.

    train_ids:   (n, seq) training sequences (the sampler draws ``config.batch_size`` of them per chain and step).
    query_ids:   (query, seq) sequences whose per-token losses are recorded at every draw.
    classes:     (G, query, seq) bool class membership of the query tokens (as :func:`make_corpus` returns);
                 the first position of each sequence is dropped (it is never predicted).
    config:      the sampler settings, the same at every checkpoint (nβ, γ, ε, chains, draws, batch size, seed).
    steps:       checkpoints to sample around (default: all saved).
    checkpoints_per_pass: checkpoints whose chains run together in one batched pass (memory × this number).
    cache:       reuse a result saved under the same weights (their hashes), data and parameters, and save new
                 ones: in ``cache_dir`` when given, else in the run's own cache folder for the package's runs
                 (TrainedRun, HubCheckpoints); another run object's folders are never written to (no cache then).
    """
    _check_run(run)
    chosen = _check_steps(run, steps)
    if query_ids.dim() != 2 or train_ids.dim() != 2:
        raise ValueError(f"train_ids {tuple(train_ids.shape)} and query_ids {tuple(query_ids.shape)}: "
                         "both must be (sequence, token) tensors")
    if tuple(classes.shape[1:]) != tuple(query_ids.shape) or classes.shape[0] != len(class_names):
        raise ValueError(f"classes {tuple(classes.shape)} (accepted: ({len(class_names)}, "
                         f"{', '.join(map(str, query_ids.shape))}), one mask per class name over the query tokens)")
    if not (isinstance(checkpoints_per_pass, int) and checkpoints_per_pass >= 1):
        raise ValueError(f"checkpoints_per_pass = {checkpoints_per_pass!r} (accepted: an integer ≥ 1)")

    home = Path(cache_dir) if cache_dir is not None else (run.path if isinstance(run, (TrainedRun, HubCheckpoints))
                                                          else None)
    cache = cache and home is not None
    path = None
    if cache:  # every chosen checkpoint is opened once to hash its weights
        digests = [_weights_digest(run.load(step)) for step in chosen]
        path = home / f"influence-{_influence_key(digests, chosen, train_ids, query_ids, classes, class_names, config)}"
    cached = _load_influence(path, query_ids) if cache else None
    if cached is not None:
        return cached
    started = time.perf_counter()
    groups = classes[:, :, 1:]
    template = run.load(chosen[0])
    _, loss_fn = lm_loss_fn(template)
    pieces, token_losses = [], []
    passes = [chosen[i:i + checkpoints_per_pass] for i in range(0, len(chosen), checkpoints_per_pass)]
    for part in tqdm(passes, desc=f"SGLD ({len(chosen)} checkpoints)", disable=not progress):
        checkpoints = [(step, lm_loss_fn(run.load(step))[0]) for step in part]
        trajectory = bif_trajectory(loss_fn, checkpoints, train_ids, query_ids, config, groups=groups,
                                    keep_traces=True, batch_checkpoints=True, progress=progress)
        pieces.append(trajectory)
        token_losses += [trace.losses.float() for trace in trajectory.traces]
    combined = InfluenceTrajectory(torch.cat([p.steps for p in pieces]), torch.cat([p.values for p in pieces]),
                                   torch.cat([p.stderr for p in pieces]), None)
    result = ClassInfluence(combined, tuple(class_names), torch.stack(token_losses), query_ids,
                            seconds=time.perf_counter() - started)
    if cache:
        _save_influence(path, result)
    return result

