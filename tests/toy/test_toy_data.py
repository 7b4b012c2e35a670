"""Known-answer tests of the hierarchical data (stagewise/toy/data.py)."""

import math

import torch

from stagewise import toy

DOG, CAT, SPARROW, LILY = 0, 1, 2, 5

# The fixture `data` (the hierarchy) comes from tests/conftest.py.


def test_dataset_shape_values_and_metadata(data):
    assert data.inputs.shape == (8, 8) and data.targets.shape == (8, 15)
    assert torch.equal(data.inputs, torch.eye(8, dtype=torch.float64))
    assert data.items == ("dog", "cat", "sparrow", "robin", "rose", "lily", "oak", "pine")
    assert data.features[:7] == ("living thing", "animal", "plant", "mammal", "bird", "flower", "tree")
    # Every item lies under 4 nodes: root, its kingdom, its class, its own leaf.
    assert torch.equal(data.targets.sum(1), torch.full((8,), 4.0, dtype=torch.float64))
    dog = torch.zeros(15, dtype=torch.float64)
    dog[[0, 1, 3, 7]] = 1
    lily = torch.zeros(15, dtype=torch.float64)
    lily[[0, 2, 5, 12]] = 1
    assert torch.equal(data.targets[DOG], dog) and torch.equal(data.targets[LILY], lily)
    assert data.groups["bird"] == (2, 3) and data.groups["plant"] == (4, 5, 6, 7)
    assert data.levels[1] == ((0, 1, 2, 3), (4, 5, 6, 7))


def test_singular_values_are_the_papers(data):
    # One-hot inputs, one 0/1 feature per tree node: Σ_yx = YᵀX/8 has s = √15/8, √7/8, √3/8 (×2), 1/8 (×4),
    # i.e. 0.484, 0.331, 0.2165 (×2), 0.125 (×4), exactly the paper's numbers (Lee et al. 2025, the hierarchical toy model).
    expected = torch.tensor([15, 7, 3, 3, 1, 1, 1, 1], dtype=torch.float64).sqrt() / 8
    torch.testing.assert_close(data.singular_values(), expected, rtol=0, atol=1e-12)
    assert [round(float(v), 4) for v in expected] == [0.4841, 0.3307, 0.2165, 0.2165, 0.125, 0.125, 0.125, 0.125]
    assert [len(b) for b in toy.mode_basis(data).blocks] == [1, 1, 2, 4]


def test_stochastic_variant_breaks_degeneracies():
    a = toy.hierarchical_dataset(stochastic=True, num_features=500, seed=3)
    b = toy.hierarchical_dataset(stochastic=True, num_features=500, seed=3)
    assert torch.equal(a.targets, b.targets) and a.targets.shape == (8, 500)
    # ±1 features, scaled by √(4/500) so that ‖y_i‖² = 4 as in the deterministic data.
    torch.testing.assert_close(a.targets.abs(), torch.full((8, 500), math.sqrt(4 / 500), dtype=torch.float64))
    raw = toy.hierarchical_dataset(stochastic=True, num_features=500, seed=3, normalize=False)
    assert set(raw.targets.unique().tolist()) == {-1.0, 1.0}
    s = a.singular_values()
    assert float((s[:-1] - s[1:]).min()) > 1e-3 * float(s[0])  # no two singular values coincide
    # Items of the same class share more features than items of different kingdoms.
    agree = (raw.targets @ raw.targets.T) / 500
    assert agree[DOG, CAT] > agree[DOG, SPARROW] > agree[DOG, LILY]
