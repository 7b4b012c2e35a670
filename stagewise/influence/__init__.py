"""Bayesian influence functions from recorded losses, and the classical (damped) influence function.

Sign convention (the paper's: Lee, Smith, Adam & Hoogland 2025, arXiv 2510.12071; the book's Notation page,
book/notation.md, "The Bayesian influence function and its sign"), used in every function here:

    BIF(z_i, z_j) = −Cov(ℓ_i(w), ℓ_j(w))   over the (localized, tempered) posterior.

**Negative BIF: up-weighting training sample i lowers query j's loss (i helps j); positive: i harms j.**
The *normalized* BIF is −corr(ℓ_i, ℓ_j) ∈ [−1, 1]. (devinterp 2.0.1's ``bif()`` returns +corr: the opposite
sign.)

All estimators take the (chain, draw, sample[, token]) loss arrays recorded by :func:`stagewise.sampling.sample`
and pool chains × draws into one sample of size C·T ("stacked"), with covariance divisor C·T − 1.

Modules, by job:

    core         input checks of loss arrays, the pooled covariance, :func:`bif`
    stderr       Monte Carlo standard errors of the BIF (:func:`bif_stderr`)
    tokens       the per-token BIF (:func:`token_bif`), refused when it cannot fit in memory
    groups       group-mean losses and the group × group BIF and its error, a block of tokens at a time
    classical    the damped classical influence function, for comparison
    trajectory   the BIF at every checkpoint of a training run (:func:`bif_trajectory`)
"""

from .classical import classical_influence
from .core import bif
from .groups import group_bif, group_bif_stderr, group_means
from .stderr import bif_stderr
from .tokens import TOKEN_BIF_MAX_FRACTION, token_bif
from .trajectory import InfluenceTrajectory, bif_trajectory

__all__ = [
    "InfluenceTrajectory",
    "bif",
    "bif_trajectory",
    "bif_stderr",
    "group_bif",
    "group_bif_stderr",
    "group_means",
    "token_bif",
    "classical_influence",
]
