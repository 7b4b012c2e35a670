"""Known-answer tests of Saxe's mode dynamics and the stages (stagewise/toy/theory.py)."""

import torch

from stagewise import toy
from stagewise.curves import loss_transitions

# The fixtures `data` (the hierarchy) and `init` (the seeded initialization) come from tests/conftest.py.


def test_stage_steps_predicted_and_observed(data, init):
    run = toy.train(init, data)
    a0 = toy.effective_initial_strength(init, data)
    predicted = toy.predicted_stage_steps(data, 0.05, a0)
    observed = torch.as_tensor(loss_transitions(run.loss.numpy()))
    # Four stages (s = 0.484, 0.331, 0.2165, 0.125); measured ≈ 273, 379, 546, 927 vs predicted ≈ 284, 393, 568, 943.
    assert observed.numel() == 4
    torch.testing.assert_close(observed.double(), predicted, rtol=0.06, atol=0)
    assert 200 <= observed[0] <= 300 and 350 <= observed[1] <= 500


def test_mode_dynamics_match_gd_of_an_aligned_balanced_network(data):
    basis = toy.mode_basis(data)
    a0 = torch.full((8,), 1e-5, dtype=torch.float64)
    # Aligned, balanced init: W₁ = [diag(√a0); 0]·Vᵀ, W₂ = U·[diag(√a0), 0], so W(0) = U·diag(a0)·Vᵀ.
    w1 = torch.zeros(16, 8, dtype=torch.float64)
    w1[:8] = torch.diag(a0.sqrt()) @ basis.v.T
    w2 = torch.zeros(15, 16, dtype=torch.float64)
    w2[:, :8] = basis.u @ torch.diag(a0.sqrt())
    lr, steps = 0.01, 6000  # a small step so that GD follows the gradient flow the formula describes
    run = toy.train({"W1": w1, "W2": w2}, data, toy.TrainConfig(lr=lr, num_steps=steps, checkpoint_every=200))
    w = run.checkpoints["W2"] @ run.checkpoints["W1"]
    g_gd = torch.einsum("pk,spn,nk->sk", basis.u, w, basis.v)
    g_theory = toy.mode_strength(run.steps[:, None].double(), basis.s, a0, lr, basis.c)
    # The modes stay decoupled: off-diagonal entries of UᵀWV stay at rounding level.
    off = torch.einsum("pj,spn,nk->sjk", basis.u, w, basis.v) - torch.diag_embed(g_gd)
    assert float(off.abs().max()) < 1e-9
    # GD grows a mode by (1 + lr·s)² per step, the flow by e^(2·lr·s): a relative delay ≈ lr·s/2 of each
    # transition. Measured: max |G_GD − G| / (s_k/c) = 0.0056 (mode 1) … 0.0015 (s = 1/8) at lr = 0.01.
    err = (g_gd - g_theory).abs().max(0).values / (basis.s / basis.c)
    print("max |G_GD − G_theory| relative to s_k/c, per mode:", [round(float(e), 4) for e in err])
    assert float(err.max()) < 0.02
