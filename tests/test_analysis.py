"""stagewise.analysis on known answers: correlations, MDS, Procrustes, LLC tables, labels."""

import numpy as np
import pytest
import torch

from stagewise import analysis, toy
from stagewise.sampling import SGLDConfig
from stagewise.models.slt import sum_of_squares


# ---- agreement of trajectories ---------------------------------------------------------------------------

def _trajectories(seed=0, checkpoints=12, n=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(checkpoints, n, n)), rng.normal(size=(checkpoints, n, n))


def test_off_diagonal_pairs():
    assert analysis.off_diagonal_pairs(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    with pytest.raises(ValueError, match="n = 1"):
        analysis.off_diagonal_pairs(1)


def test_pair_correlations_of_known_vectors():
    t = np.linspace(0, 1, 9)
    x = np.zeros((9, 2, 2))
    y = np.zeros((9, 2, 2))
    x[:, 0, 1], y[:, 0, 1] = t, 3 * t + 2  # an affine copy: +1
    x[:, 1, 0], y[:, 1, 0] = t, -t  # a mirror: −1
    np.testing.assert_allclose(analysis.pair_correlations(x, y), [1.0, -1.0], atol=1e-12)


def test_pair_correlations_match_numpy_and_take_pairs():
    x, y = _trajectories()
    pairs = analysis.off_diagonal_pairs(4)
    expected = [np.corrcoef(x[:, i, j], y[:, i, j])[0, 1] for i, j in pairs]
    np.testing.assert_allclose(analysis.pair_correlations(x, y), expected, atol=1e-12)
    np.testing.assert_allclose(analysis.pair_correlations(x, y, pairs=[(2, 1)]), [expected[pairs.index((2, 1))]])


def test_pair_correlation_of_a_constant_trajectory_is_nan():
    x, y = _trajectories()
    x[:, 0, 1] = 1.0
    assert np.isnan(analysis.pair_correlations(x, y, pairs=[(0, 1)])[0])
    with pytest.raises(ValueError, match="checkpoint, N, N"):
        analysis.pair_correlations(x[0], y[0])


def test_agreement_with_itself_and_its_negative():
    x, _ = _trajectories()
    steps = np.arange(len(x)) * 25
    same = analysis.agreement(x, x, steps)
    np.testing.assert_allclose(same.rank_corr, 1.0)
    assert same.sign_agreement == 1.0 and not same.peak_offsets.any()
    opposite = analysis.agreement(-x, x, steps)
    np.testing.assert_allclose(opposite.rank_corr, -1.0)
    assert opposite.sign_agreement == 0.0 and not opposite.peak_offsets.any()


def test_agreement_on_known_entries():
    steps = np.array([0, 10, 20])
    y = np.zeros((3, 2, 2))
    x = np.zeros((3, 2, 2))
    y[:, 0, 1] = [0.0, 1.0, 5e-4]  # counted only at step 10 (≥ 10% of its largest |y|)
    y[:, 1, 0] = [-2.0, 0.0, 0.0]  # counted only at step 0
    x[:, 0, 1] = [2.0, 1.0, 1.0]  # right sign where counted; peaks at step 0, y at 10: offset −10
    x[:, 1, 0] = [1.0, 2.0, 3.0]  # wrong sign where counted; peaks at step 20, y at 0: offset +20
    scores = analysis.agreement(x, y, steps)
    assert scores.sign_agreement == pytest.approx(0.5)  # 1 of the 2 counted entries
    np.testing.assert_array_equal(scores.peak_offsets, [-10, 20])
    # ranks: step 0 x (2, 1) vs y (0, −2): +1; step 10 x (1, 2) vs y (1, 0): −1; step 20: y all but zero
    np.testing.assert_allclose(scores.rank_corr, [1.0, -1.0, np.nan])


def test_agreement_checks_its_steps():
    x, y = _trajectories()
    with pytest.raises(ValueError, match="steps: one per checkpoint"):
        analysis.agreement(x, y, np.arange(3))


def test_gradient_alignment_of_a_linear_model():
    # ℓ_i(w) = ½(x_i·w − y_i)²: ∇ℓ_i = r_i x_i with the residual r_i, so −∇ℓ_i·∇ℓ_j = −r_i r_j x_i·x_j
    torch.manual_seed(0)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    ws = torch.randn(2, 3, dtype=torch.float64)
    result = analysis.gradient_alignment(lambda p, b: 0.5 * (b[0] @ p["w"] - b[1]) ** 2, {"w": ws}, (x, y))
    for s in range(2):
        r = x @ ws[s] - y
        torch.testing.assert_close(result[s], -(r[:, None] * r[None]) * (x @ x.T))


# ---- geometry --------------------------------------------------------------------------------------------

def _random_rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_classical_mds_recovers_points_up_to_rotation():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(7, 3)) * [3.0, 2.0, 1.0]  # three distinct spreads: a well-defined top 3
    points -= points.mean(0)
    embedded = analysis.classical_mds(points @ _random_rotation(3, 2) + 5.0, 3)  # moved and shifted
    distance = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distance(embedded), distance(points), atol=1e-10)
    np.testing.assert_allclose(embedded.mean(0), 0, atol=1e-10)
    rotation = analysis.procrustes_rotation(embedded, points)
    np.testing.assert_allclose(embedded @ rotation, points, atol=1e-10)


def test_classical_mds_of_a_square_and_a_line():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    embedded = analysis.classical_mds(square, 2)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), np.sqrt(0.5))  # corners around the centre
    line = np.array([[0.0], [1.0], [3.0]])
    first = analysis.classical_mds(line, 1)[:, 0]
    np.testing.assert_allclose(np.abs(first - first[0]), [0, 1, 3], atol=1e-12)
    with pytest.raises(ValueError, match="dim = 5"):
        analysis.classical_mds(line, 5)


def test_procrustes_recovers_a_known_rotation_and_pads():
    rng = np.random.default_rng(3)
    moving = rng.normal(size=(10, 4))
    rotation = _random_rotation(4, 4)
    found = analysis.procrustes_rotation(moving, moving @ rotation)
    np.testing.assert_allclose(found, rotation, atol=1e-10)
    # a fixed frame of fewer coordinates: planar points, rotated out of their plane in 4-d, are brought back
    planar = rng.normal(size=(10, 2))
    lifted = np.pad(planar, ((0, 0), (0, 2))) @ rotation
    back = analysis.procrustes_rotation(lifted, planar)
    np.testing.assert_allclose(back.T @ back, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(lifted @ back, np.pad(planar, ((0, 0), (0, 2))), atol=1e-10)
    with pytest.raises(ValueError, match="k ≤ d"):
        analysis.procrustes_rotation(moving[:, :2], moving)


def test_readable_modes_keep_the_svd_and_live_on_subtrees():
    data = toy.hierarchical_dataset()
    basis = analysis.readable_modes(toy.mode_basis(data))
    torch.testing.assert_close(basis.u @ torch.diag(basis.s) @ basis.v.T, data.input_output_correlation())
    torch.testing.assert_close(basis.v.T @ basis.v, torch.eye(len(basis.s), dtype=basis.v.dtype))
    loaded = basis.v.abs() > 1e-6  # (items, modes)
    # modes 3 and 4 (the class level) each load on one kingdom's four items; modes 5–8 on two items each
    assert loaded[:, 2:4].sum(0).tolist() == [4, 4] and loaded[:, 4:].sum(0).tolist() == [2, 2, 2, 2]
    first = loaded.double().argmax(0)
    assert (basis.v[first, torch.arange(8)] > 0).all()  # each mode's first item is positive


# ---- LLC tables ------------------------------------------------------------------------------------------

def test_llc_table_on_a_regular_quadratic():
    # 4 chains × 2,000 draws: the loss decorrelates over ~25 steps, so the standard error is about 0.08
    config = SGLDConfig(num_chains=4, num_draws=2000, num_burnin=200, localization=1.0, seed=0)
    case = analysis.KnownLLC("quadratic", sum_of_squares(2), torch.zeros(2, dtype=torch.float64), truth=1.0,
                             nbeta=1000.0, step_size=2e-5, num_params=2)
    [row] = analysis.llc_table([case], config)
    assert row["name"] == "quadratic" and row["nbeta"] == 1000.0 and row["params"] == 2
    assert row["rel_error"] == pytest.approx(abs(row["estimate"] - 1.0))
    assert abs(row["estimate"] - 1.0) < max(4 * row["stderr"], 0.05)  # λ = d/2 = 1, within its error bar
    assert 0.02 < row["stderr"] < 0.2
    direct = analysis.sampled_llc(case.loss, case.w_star, config=config, nbeta=1000.0, step_size=2e-5)
    assert direct.estimate == row["estimate"]  # the same seed gives the same chains


def test_spread_over_seeds():
    spread = analysis.spread_over_seeds({2: 0.1, 0: 0.05, 1: 0.3})
    assert spread == {"mean": pytest.approx(0.15), "min": 0.05, "max": 0.3, "seeds": [0, 1, 2],
                      "values": [0.05, 0.3, 0.1]}
    with pytest.raises(ValueError, match="at least one"):
        analysis.spread_over_seeds({})


# ---- labels ----------------------------------------------------------------------------------------------

def test_token_labels_mark_spaces_and_newlines():
    class Tokenizer:
        def convert_ids_to_tokens(self, ids):
            return [["Ġcat", "a b", "\n"][i] for i in ids]

    assert analysis.token_labels(Tokenizer(), torch.tensor([0, 1, 2])) == ["␣cat", "a␣b", "⏎"]


def test_known_llc_cases_are_chapter_1s_five_models_with_their_answers():
    from stagewise.analysis import known_llc_cases
    from stagewise.llc import rrr_llc
    from stagewise.models.slt import make_grid

    settings = dict(nbeta=1e4, step_size=1e-4, regular_step_size=2e-6, rrr_nbeta=1e3, rrr_step_size=2e-4,
                    localization=1.0, grid=make_grid())
    cases = known_llc_cases(**settings, data_seed=0)
    assert [c.truth for c in cases] == [1.0, 0.25, rrr_llc(2, 2, 2), rrr_llc(3, 1, 2), rrr_llc(4, 2, 3)]
    assert [c.step_size for c in cases] == [2e-6, 1e-4, 2e-4, 2e-4, 2e-4]
    assert [c.nbeta for c in cases] == [1e4, 1e4, 1e3, 1e3, 1e3]
    regular, crossing = cases[:2]
    # quadrature at finite nβ: E[nβ·K] is close to λ for the regular case (d/2 = 1), and above 1/4 - 0 for w1²w2⁴
    assert abs(regular.exact_finite_nbeta - 1.0) < 0.01 and 0.2 < crossing.exact_finite_nbeta < 0.3
    assert all(c.data is None for c in cases[:2]) and all(c.batch_size == 64 for c in cases[2:])
    other = known_llc_cases(**settings, data_seed=1)
    assert not torch.equal(cases[2].data[0], other[2].data[0])  # the regressions' data follow data_seed
    assert torch.equal(cases[2].data[0], known_llc_cases(**settings, data_seed=0)[2].data[0])


def test_relative_error_is_the_relative_frobenius_norm():
    from stagewise.analysis import relative_error

    truth = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    assert relative_error(truth + torch.tensor([[0.0, 1.0], [0.0, 0.0]]), truth) == pytest.approx(0.2)
    assert relative_error(truth, truth) == 0.0
    with pytest.raises(ValueError, match="the same shape"):
        relative_error(torch.zeros(3), truth)
