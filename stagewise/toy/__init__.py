"""The toy model of the paper: a deep linear network learning a hierarchy, stage by stage.

Lee et al. 2025 (arXiv:2510.12071), the hierarchical toy model; chapters 3 and 4 of the book. By job:

- :mod:`.data`:     the hierarchy of Saxe et al. (2019): 8 items (one-hot), 15 tree-node features; the
                    branching-diffusion variant with ``stochastic=True``.
- :mod:`.dln`:      the deep linear network W_L ⋯ W_1 (default W₁ 16×8, W₂ 15×16, init N(0, 1e-3²)) and
                    full-batch gradient descent on (1/N)·Σ_i β_i·½‖y_i − W x_i‖² with checkpoints; runs with
                    different per-item weights β are a leading batch dimension.
- :mod:`.ablation`: leave-one-out, time-window ablations and finite-difference influence of the actual training,
                    each one batched run.
- :mod:`.theory`:   Saxe's mode dynamics: mode strengths, predicted stage steps (observed ones are read from
                    the loss by :func:`stagewise.curves.loss_transitions`).
- :mod:`.influence`: analytic influence from the mode dynamics, and the BIF over the checkpoints of a run.

Influence is in one sign convention throughout, the BIF's (see the book's notation page, book/notation.md):
**negative = i helps j**. LOO Δ_ij(t) = ℓ_j(t; all data) − ℓ_j(t; β_i = 0); analytic dℓ_j(t)/dβ_i at β = 1;
BIF −Cov(ℓ_i, ℓ_j) under the localized posterior. Time is in gradient-descent steps throughout
(continuous-time formulas use t = step, rate = lr).

Every public name is re-exported here: ``from stagewise import toy; toy.train(...)``.
"""

from ..config import ConfigError
from .ablation import LOOResult, WindowAblation, finite_difference_influence, leave_one_out, window_ablation
from .data import (GROUPS, ITEMS, NODES, Data, HierarchicalData, HierarchyConfig, as_batch, hierarchical_dataset,
                   item_indices)
from .dln import (BetaSchedule, DLNConfig, TrainConfig, TrainingRun, end_to_end, init_params, layer_names,
                  per_item_losses, train, train_runs)
from .influence import PLAIN_SGLD, analytic_influence, bif_loss_fn, toy_bif_trajectory
from .theory import (ModeBasis, effective_initial_strength, mode_basis, mode_strength, mode_strength_derivatives,
                     predicted_stage_steps)

__all__ = [
    # data
    "ITEMS",
    "NODES",
    "GROUPS",
    "HierarchyConfig",
    "HierarchicalData",
    "hierarchical_dataset",
    "Data",
    "as_batch",
    "item_indices",
    # network and training
    "DLNConfig",
    "init_params",
    "layer_names",
    "end_to_end",
    "per_item_losses",
    "TrainConfig",
    "TrainingRun",
    "BetaSchedule",
    "train",
    "train_runs",
    "ConfigError",
    # ablations
    "LOOResult",
    "leave_one_out",
    "WindowAblation",
    "window_ablation",
    "finite_difference_influence",
    # mode theory and stages
    "ModeBasis",
    "mode_basis",
    "effective_initial_strength",
    "mode_strength",
    "mode_strength_derivatives",
    "predicted_stage_steps",
    # influence
    "analytic_influence",
    "bif_loss_fn",
    "PLAIN_SGLD",
    "toy_bif_trajectory",
]
