"""Which data to up-weight: the sequences the BIF marks as most helpful, a hand-chosen class, or random ones.

The BIF of a training sample i on a query f is −Cov(ℓ_i, f) under the localized posterior at a checkpoint
(the book's sign: **negative = up-weighting i lowers f, i helps**). With f the mean loss of the query's induction
tokens at the checkpoint where the induction window opens, the most negative BIF marks the sequences whose extra
weight should help the induction tokens most, to first order, at that moment.

- :func:`sequence_bif`: the BIF of every training sequence's mean loss on one query observable (a masked mean
  of per-token losses, e.g. the induction tokens of held-out sequences), from one localized-SGLD run at a
  checkpoint: forward passes over the candidates at every draw, nothing per pair.
- :func:`most_helpful`: the ``count`` samples with the most negative BIF (ties broken by index).
- :func:`selection_pools`: the three conditions' pools of equal size: "bif" (the most helpful), "class" (a
  random subset of a hand-chosen class) and "random" (a random subset of all samples).
- :func:`pool_mask`: a pool as the boolean mask :func:`~stagewise.steering.train_steered` draws from.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from stagewise.artifacts import cache_key, read_json, write_json
from stagewise.attribute import weights_digest
from stagewise.influence import bif, bif_stderr
from stagewise.lm import lm_loss_fn
from stagewise.sampling import sample

__all__ = ["SELECTIONS", "SequenceInfluence", "most_helpful", "pool_mask", "selection_pools", "sequence_bif"]

#: The selection conditions, in the order tables and figures show them.
SELECTIONS = ("bif", "class", "random")


def most_helpful(bif, count: int) -> np.ndarray:
    """Indices of the ``count`` samples with the most negative ``bif`` (n,), most helpful first.

    Ties keep the lower index first (a stable sort), so the choice is reproducible. ValueError for NaN or
    infinite values (name them before choosing) or a count outside 1 … n.
    """
    values = np.asarray(bif, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"bif: shape {values.shape} (accepted: one value per sample, shape (n,))")
    if not (isinstance(count, (int, np.integer)) and 1 <= count <= len(values)):
        raise ValueError(f"count = {count!r} (accepted: an integer from 1 to the {len(values)} samples)")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"bif holds {len(bad)} NaN or infinite value(s), the first at sample {bad[0]}; "
                         "a selection needs a finite BIF for every candidate")
    return np.argsort(values, kind="stable")[:count]


def selection_pools(bif, class_mask, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{"bif", "class", "random"}: three pools of ``count`` sample indices each (sorted), one per condition.

    bif: (n,) BIF of every sample on the query (negative = helps); its ``count`` most helpful
    (:func:`most_helpful`). class_mask: (n,) bool, the hand-chosen class; ``count`` of its members drawn without
    replacement. random: ``count`` of all n samples drawn without replacement. The two draws use
    ``numpy.random.default_rng(seed)``, so the pools are reproducible.
    """
    mask = np.asarray(class_mask)
    values = np.asarray(bif, dtype=float)
    if mask.dtype != bool or mask.shape != values.shape:
        raise ValueError(f"class_mask: {mask.dtype} of shape {mask.shape} (accepted: bool of shape {values.shape}, "
                         "one entry per sample of bif)")
    members = np.flatnonzero(mask)
    if not (isinstance(count, (int, np.integer)) and 1 <= count <= len(members)):
        raise ValueError(f"count = {count!r} (accepted: an integer from 1 to the class's {len(members)} members, so "
                         "that every pool has the same size)")
    rng = np.random.default_rng(seed)
    pools = {"bif": most_helpful(values, count),
             "class": rng.choice(members, size=count, replace=False),
             "random": rng.choice(len(values), size=count, replace=False)}
    return {name: np.sort(pool) for name, pool in pools.items()}


def pool_mask(indices, n: int) -> torch.Tensor:
    """(n,) bool mask that is True at ``indices`` (the pool the extra sequences are drawn from)."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0 or indices.min() < 0 or indices.max() >= n:
        raise ValueError(f"indices: {len(np.atleast_1d(indices))} values (accepted: a non-empty list of indices in "
                         f"0 … {n - 1})")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.as_tensor(indices)] = True
    return mask


@dataclass
class SequenceInfluence:
    """The BIF of every candidate sequence on one query observable at one checkpoint.

    values:  (n,) −Cov(mean loss of sequence i, query observable) (nats²; negative = i helps the query).
    stderr:  (n,) its ESS-based Monte Carlo standard error (:func:`stagewise.influence.bif_stderr`).
    query_variance: the query observable's posterior variance (nats², = −BIF of the query on itself).
    draws:   chains × draws pooled. seconds: the sampling time.
    reliability: how reproducible the ranking is: the correlation over candidates between the BIFs of the first
             and the second half of the chains, stepped up to the whole budget by Spearman–Brown (2r/(1 + r));
             NaN with one chain. 1: the budget ranks the candidates as an infinite one would; 0: noise alone.
    """

    values: np.ndarray
    stderr: np.ndarray
    query_variance: float
    draws: int
    seconds: float
    reliability: float = float("nan")


def sequence_bif(model, train_ids: torch.Tensor, query_ids: torch.Tensor, query_mask: torch.Tensor, config,
                 candidates: torch.Tensor | None = None, cache_dir: str | Path | None = None) -> SequenceInfluence:
    """BIF of each candidate sequence's mean next-token loss on the mean loss of the query's masked tokens.

    model: a causal LM at the checkpoint (w*). train_ids: (n, seq) training sequences, which the sampler draws its
    mini-batches from. query_ids: (q, seq) query sequences; query_mask: (q, seq) bool, the tokens whose mean loss
    is the query observable (e.g. ``corpus.classes[6]`` of held-out sequences: the induction tokens; position 0
    is never predicted and is ignored). candidates: (m, seq) the sequences to score (default: ``train_ids``).
    config: the :class:`~stagewise.sampling.SGLDConfig` of the localized posterior. cache_dir: keep the result
    there as JSON, keyed by the weights, the sequences, the settings and the package's code (None: no cache).
    """
    candidates = train_ids if candidates is None else candidates
    if query_ids.dim() != 2 or candidates.dim() != 2 or query_ids.shape[1] != candidates.shape[1]:
        raise ValueError(f"candidates {tuple(candidates.shape)} and query_ids {tuple(query_ids.shape)} (accepted: "
                         "(sequence, token) tensors of the same length)")
    if query_mask.dtype != torch.bool or query_mask.shape != query_ids.shape or not bool(query_mask[:, 1:].any()):
        raise ValueError(f"query_mask: {query_mask.dtype} {tuple(query_mask.shape)} (accepted: bool of the query's "
                         f"shape {tuple(query_ids.shape)} with at least one token after position 0)")
    path = None
    if cache_dir is not None:
        key = cache_key({"sgld": asdict(config), "weights": weights_digest(model.state_dict())}, train_ids,
                        query_ids, query_mask, candidates)
        path = Path(cache_dir) / f"sequence-bif-{key}.json"
        record = read_json(path)
        if isinstance(record, dict):
            return SequenceInfluence(np.asarray(record["values"]), np.asarray(record["stderr"]),
                                     record["query_variance"], record["draws"], record["seconds"],
                                     record.get("reliability", float("nan")))
    params, loss_fn = lm_loss_fn(model)
    m = candidates.shape[0]
    ids = torch.cat([candidates, query_ids])
    weights = torch.cat([torch.ones(m, candidates.shape[1] - 1), query_mask[:, 1:].float()])

    def masked_sums(p, batch):  # (rows,) Σ_t weight·ℓ_t: a candidate's total loss, a query's induction loss
        rows, mask = batch
        return (loss_fn(p, rows) * mask).sum(dim=-1)

    started = time.perf_counter()
    trace = sample(loss_fn, params, train_ids, (ids, weights), config, observable_fn=masked_sums, progress=False)
    sums = trace.losses.double()  # (chain, draw, rows)
    train = sums[:, :, :m] / (candidates.shape[1] - 1)
    query = sums[:, :, m:].sum(dim=-1, keepdim=True) / weights[m:].sum()
    values = bif(train, query)[:, 0]
    errors = bif_stderr(train, query)[:, 0]
    variance = float(-bif(query, query)[0, 0])
    reliability = float("nan")
    half = sums.shape[0] // 2
    if half >= 1:
        first, second = (bif(train[part], query[part])[:, 0].numpy() for part in (slice(None, half),
                                                                                  slice(half, None)))
        r = float(np.corrcoef(first, second)[0, 1])
        reliability = 2 * r / (1 + r) if r > -1 else float("nan")
    result = SequenceInfluence(values.numpy(), errors.numpy(), variance, int(sums.shape[0] * sums.shape[1]),
                               time.perf_counter() - started, reliability)
    if path is not None:
        write_json({"values": result.values.tolist(), "stderr": result.stderr.tolist(),
                    "query_variance": variance, "draws": result.draws, "seconds": result.seconds,
                    "reliability": reliability}, path)
    return result
