"""stagewise: Bayesian influence functions and stagewise data attribution.

A companion package to *Influence Dynamics and Stagewise Data Attribution*
(Lee, Smith, Adam, Hoogland; arXiv 2510.12071).
"""

__version__ = "0.1.0"
