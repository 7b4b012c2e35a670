"""Known-answer models: small models whose exact answers (learning coefficients, covariances, influence) are
known, to check the sampler and the estimators against.

- :mod:`.slt`:        chapter 1: normal-crossing and regular potentials, a two-minima potential, exact finite-nβ
                      free energies by quadrature, reduced-rank regression (λ from :func:`stagewise.llc.rrr_llc`).
- :mod:`.bif`:        chapter 2: linear regression (exact Gaussian BIF), logistic regression (regular: BIF ≈ damped
                      classical IF), a rank-one network (degenerate: the classical IF diverges).
- :mod:`.phases`:     chapter 5: the law-of-total-covariance split of the BIF into within- and between-phase terms,
                      and two models with two phases.
- :mod:`.quadrature`: trapezoid axes and 2-D grids shared by the exact answers.
"""

from . import bif, phases, quadrature, slt

__all__ = ["bif", "phases", "quadrature", "slt"]
