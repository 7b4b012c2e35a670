"""Shared test set-up."""

import pytest
import torch

# The models under test are tiny: on a 2-core machine, intra-op threads cost far more than they save
# (a reduced-rank regression step measured 10x slower with 2 threads on a loaded machine).
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    """The hierarchical data of chapters 3-4 (tests/toy/test_toy_*.py)."""
    from stagewise import toy

    return toy.hierarchical_dataset()


@pytest.fixture(scope="module")
def init():
    """The seeded initialization of the deep linear network (tests/toy/test_toy_*.py)."""
    from stagewise import toy

    return toy.init_params()
