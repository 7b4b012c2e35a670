"""The BIF at every checkpoint of a training run: one sampler run per checkpoint, labelled (step, i, j) out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..sampling import SamplerDivergence, sample, sample_many
from .core import bif
from .groups import group_bif, group_bif_stderr
from .stderr import bif_stderr

__all__ = ["InfluenceTrajectory", "bif_trajectory"]


@dataclass
class InfluenceTrajectory:
    """Influence at every checkpoint, labelled (step, i, j).

    steps:   training step of each checkpoint, shape (S,).
    values:  BIF (or group BIF) at each checkpoint, shape (S, I, J); sign as in :func:`bif`.
    stderr:  Monte Carlo standard error of each value, shape (S, I, J): :func:`bif_stderr` or
             :func:`group_bif_stderr` (ESS-based; defined with one chain; NaN with fewer than 4 draws).
    traces:  the :class:`~stagewise.sampling.SampleTrace` of each checkpoint (for diagnostics), or None.
    """

    steps: torch.Tensor
    values: torch.Tensor
    stderr: torch.Tensor
    traces: list | None = None

    def pair(self, i: int, j: int) -> torch.Tensor:
        """The trajectory of one (i, j) entry over the checkpoints, shape (S,)."""
        return self.values[:, i, j]

    def to_frame(self, names_i: Sequence[str] | None = None, names_j: Sequence[str] | None = None):
        """A long pandas table with columns step, i, j, bif, stderr."""
        import pandas as pd

        s, ni, nj = self.values.shape
        names_i = list(names_i) if names_i is not None else list(range(ni))
        names_j = list(names_j) if names_j is not None else list(range(nj))
        rows = [
            (int(self.steps[k]), names_i[a], names_j[b], float(self.values[k, a, b]), float(self.stderr[k, a, b]))
            for k in range(s)
            for a in range(ni)
            for b in range(nj)
        ]
        return pd.DataFrame(rows, columns=["step", "i", "j", "bif", "stderr"])


def bif_trajectory(
    loss_fn: Callable,
    checkpoints: Sequence[tuple[int, object]],
    data,
    observables,
    config,
    *,
    train: Sequence[int] | None = None,
    query: Sequence[int] | None = None,
    normalized: bool = False,
    groups: torch.Tensor | None = None,
    keep_traces: bool = False,
    batch_checkpoints: bool = False,
    progress: bool = True,
    **sample_kwargs,
) -> InfluenceTrajectory:
    """BIF at every checkpoint of a training run: one call, labelled (step, i, j) out.

    checkpoints: a list of (step, params) pairs (params as for :func:`stagewise.sampling.sample`).
    data, observables, config: as for :func:`~stagewise.sampling.sample` (the same config, hence the same seed,
    at every checkpoint). ``train`` / ``query`` select rows / columns among the observables (default: all).
    ``groups``: bool (G, sample, ...) masks or integer labels (sample, ...) over the observables → group × group
    influence (:func:`group_bif`, errors :func:`group_bif_stderr`) instead of sample × sample; with ``train`` /
    ``query`` the rows' groups hold only the tokens of the ``train`` samples and the columns' only those of the
    ``query`` samples (a group with none of them gives NaN). ``normalized`` applies to sample × sample only. Values
    and errors are on the traces' device (``config.trace_device``, the CPU by default).
    Sign as in :func:`bif`. Each checkpoint's sampler run is independent, so a divergence names its step.
    ``batch_checkpoints=True`` runs all checkpoints' chains in one batched pass
    (:func:`~stagewise.sampling.sample_many`): much faster for small models, K times the memory.
    """
    from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks

    if not checkpoints:
        raise ValueError("checkpoints must hold at least one (step, params) pair")
    if batch_checkpoints:
        try:
            all_traces = sample_many(loss_fn, [p for _, p in checkpoints], data, observables, config,
                                     progress=progress, **sample_kwargs)
        except SamplerDivergence as error:
            steps_named = sorted({int(checkpoints[c // config.num_chains][0]) for c in error.chains})
            raise SamplerDivergence(error.chains, error.step, f"{error.reason} (checkpoint steps {steps_named})",
                                    error.trace) from error
    steps, values, errors, traces = [], [], [], []
    for index, (step, params) in enumerate(tqdm(checkpoints, desc="checkpoints",
                                                disable=not progress or batch_checkpoints)):
        if batch_checkpoints:
            trace = all_traces[index]
        else:
            try:
                trace = sample(loss_fn, params, data, observables, config, progress=False, **sample_kwargs)
            except SamplerDivergence as error:
                raise SamplerDivergence(error.chains, error.step, f"{error.reason} at checkpoint step {step}",
                                        error.trace) from error
        losses = trace.losses
        enough = losses.shape[1] >= 4  # the ESS-based errors need 4 draws per chain
        if groups is not None:
            rows, cols, count = _group_sides(groups.to(losses.device), losses.shape[2], train, query)
            value = group_bif(losses, rows, losses, cols, num_groups=count)
            stderr = group_bif_stderr(losses, rows, losses, cols, num_groups=count) if enough else value * math.nan
        else:
            a = losses if train is None else losses[:, :, list(train)]
            b = losses if query is None else losses[:, :, list(query)]
            value = bif(a, b, normalized=normalized)
            stderr = bif_stderr(a, b, normalized=normalized) if enough else value * math.nan
        steps.append(int(step))
        values.append(value)
        errors.append(stderr)
        if keep_traces:
            traces.append(trace)
    return InfluenceTrajectory(torch.tensor(steps), torch.stack(values), torch.stack(errors),
                               traces if keep_traces else None)


def _group_sides(groups: torch.Tensor, num_samples: int, train, query):
    """(row groups, column groups, G or None) for the group path: the groups restricted to the train and to the
    query samples (labels of other samples set to −1, masks cleared there); G is fixed from all labels so that
    both sides have the same groups."""
    masks = groups.dtype == torch.bool
    count = None if masks else int(groups.max()) + 1

    def restrict(chosen):
        if chosen is None:
            return groups
        keep = torch.zeros(num_samples, dtype=torch.bool, device=groups.device)
        keep[list(chosen)] = True
        if masks:
            return groups & keep.reshape(1, -1, *[1] * (groups.dim() - 2))
        return torch.where(keep.reshape(-1, *[1] * (groups.dim() - 1)), groups, torch.full_like(groups, -1))

    return restrict(train), restrict(query), count
