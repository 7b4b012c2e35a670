"""The hierarchical data set: 8 items, 15 features, one per node of a depth-3 binary tree (Saxe et al. 2019).

Items are one-hot inputs in the order dog, cat, sparrow, robin | rose, lily, oak, pine; feature f of item i is 1
if i lies under node f (living thing; animal, plant; mammal, bird, flower, tree; the 8 leaves). Σ_yx = YᵀX/8 has
singular values √15/8 = 0.484, √7/8 = 0.331, √3/8 = 0.2165 (×2), 1/8 = 0.125 (×4): four learning stages.
``stochastic=True`` samples ±1 features by branching diffusion instead, which breaks the degeneracies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..config import Interval, OneOf, check_fields

ITEMS = ("dog", "cat", "sparrow", "robin", "rose", "lily", "oak", "pine")
# One name per node of the depth-3 tree, in breadth-first order (the feature order of the deterministic data).
NODES = ("living thing", "animal", "plant", "mammal", "bird", "flower", "tree", *ITEMS)
# Items under each internal node (indices into ITEMS), for plotting and grouping.
GROUPS = {
    "animal": (0, 1, 2, 3),
    "plant": (4, 5, 6, 7),
    "mammal": (0, 1),
    "bird": (2, 3),
    "flower": (4, 5),
    "tree": (6, 7),
}


@dataclass(frozen=True)
class HierarchyConfig:
    """The hierarchical data set.

    depth:        depth of the binary tree; 2**depth items (≥ 1; names are the paper's only for depth 3).
    stochastic:   False: one 0/1 feature per tree node (deterministic, degenerate singular values);
                  True: ±1 features sampled by branching diffusion (Saxe et al. 2019).
    num_features: features sampled in the stochastic variant (≥ 1; ignored otherwise).
    flip_prob:    probability that a feature flips sign at each branch, stochastic variant (in [0, 0.5]).
    seed:         seed of the stochastic variant (≥ 0).
    normalize:    stochastic variant: scale the ±1 features by √((depth + 1)/num_features), so that
                  ‖y_i‖² = depth + 1 as in the deterministic data and the default learning rate stays stable.
    """

    depth: int = 3
    stochastic: bool = False
    num_features: int = 1000
    flip_prob: float = 0.15
    seed: int = 0
    normalize: bool = True

    def __post_init__(self) -> None:
        check_fields(self, {
            "depth": Interval(ge=1, le=10, integer=True),
            "stochastic": OneOf(True, False),
            "num_features": Interval(ge=1, integer=True),
            "flip_prob": Interval(ge=0, le=0.5),
            "seed": Interval(ge=0, integer=True),
            "normalize": OneOf(True, False),
        })


@dataclass
class HierarchicalData:
    """Inputs (N, N) one-hot, targets (N, P), with names and tree metadata.

    items:    item names, in the order of the rows.
    features: feature names (tree nodes for the deterministic data; "f0", … for the stochastic one).
    groups:   internal node → indices of the items under it (depth 3: animal, plant, mammal, bird, flower, tree).
    levels:   for each tree level 0 … depth, the tuple of item-index groups at that level.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    items: tuple[str, ...]
    features: tuple[str, ...]
    groups: dict[str, tuple[int, ...]]
    levels: tuple[tuple[tuple[int, ...], ...], ...]
    config: HierarchyConfig = field(default_factory=HierarchyConfig)

    @property
    def num_items(self) -> int:
        return self.inputs.shape[0]

    @property
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), the full batch as :func:`~stagewise.toy.bif_loss_fn` and the sampler take it."""
        return self.inputs, self.targets

    def input_output_correlation(self) -> torch.Tensor:
        """Σ_yx = YᵀX/N, shape (P, N)."""
        return self.targets.T @ self.inputs / self.num_items

    def singular_values(self) -> torch.Tensor:
        """Singular values of Σ_yx, descending."""
        return torch.linalg.svdvals(self.input_output_correlation())


#: What every toy function accepts as data: a :class:`HierarchicalData` or an (inputs (N, d_in), targets (N, P)) pair.
Data = HierarchicalData | tuple[torch.Tensor, torch.Tensor]


def as_batch(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (N, d_in), targets (N, P)) of either form of :data:`Data`."""
    return data.batch if isinstance(data, HierarchicalData) else data


def item_indices(items: Sequence[int] | None, n: int, name: str = "items") -> tuple[int, ...]:
    """``items`` as a tuple of item indices (default: all n); raises naming ``name`` unless each is in 0 … n − 1."""
    if items is None:
        return tuple(range(n))
    out = tuple(int(i) for i in items)
    if not all(0 <= i < n for i in out):
        raise ValueError(f"{name} = {list(items)!r}: accepted values are item indices in 0 … {n - 1}")
    return out


def hierarchical_dataset(config: HierarchyConfig | None = None, **overrides) -> HierarchicalData:
    """The hierarchy of the paper's toy model (Lee et al. 2025, arXiv:2510.12071, the hierarchical toy model).

    Keyword overrides build the config, e.g. ``stochastic=True``.
    """
    if config is not None and overrides:
        raise TypeError("pass either a HierarchyConfig or keyword overrides, not both")
    config = config or HierarchyConfig(**overrides)
    n = 2**config.depth
    # Items under node k of level l: the contiguous block [k·n/2^l, (k+1)·n/2^l).
    levels = tuple(
        tuple(tuple(range(k * n // 2**lvl, (k + 1) * n // 2**lvl)) for k in range(2**lvl))
        for lvl in range(config.depth + 1)
    )
    items = ITEMS if config.depth == 3 else tuple(f"item{i}" for i in range(n))
    if config.depth == 3:
        groups = dict(GROUPS)
    else:
        groups = {f"node{lvl}.{k}": g for lvl in range(1, config.depth) for k, g in enumerate(levels[lvl])}
    inputs = torch.eye(n, dtype=torch.float64)
    if not config.stochastic:
        nodes = [g for level in levels for g in level]
        targets = torch.zeros(n, len(nodes), dtype=torch.float64)
        for f, members in enumerate(nodes):
            targets[list(members), f] = 1.0
        features = NODES if config.depth == 3 else tuple(f"node{f}" for f in range(len(nodes)))
    else:
        g = torch.Generator().manual_seed(config.seed)
        values = torch.where(torch.rand(1, config.num_features, generator=g) < 0.5, -1.0, 1.0).double()
        for _ in range(config.depth):
            # Each node hands its value to two children, each flipping it independently with flip_prob.
            values = values.repeat_interleave(2, dim=0)
            flips = torch.rand(values.shape, generator=g) < config.flip_prob
            values = torch.where(flips, -values, values)
        targets = values * math.sqrt((config.depth + 1) / config.num_features) if config.normalize else values
        features = tuple(f"f{f}" for f in range(config.num_features))
    return HierarchicalData(inputs, targets, items, features, groups, levels, config)
