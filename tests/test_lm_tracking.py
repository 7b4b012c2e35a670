"""Induction tracking and class × class influence across checkpoints (stagewise.lm.tracking), on tiny runs."""

import numpy as np
import pytest
import torch

from stagewise.influence import group_bif, group_means, token_bif
from stagewise.lm import AttentionOnlyConfig, CorpusConfig, TrainConfig, make_corpus, train
from stagewise.lm.tracking import (
    InductionTrajectory,
    class_influence,
    crossing_step,
    lm_loss_fn,
    track_induction,
)
from stagewise.sampling import SGLDConfig, sample


def test_crossing_step_interpolates_the_half_way_point_of_a_rise():
    steps = np.arange(0, 1001, 50)
    values = 0.05 + 0.6 / (1 + np.exp(-(steps - 600) / 40))  # logistic rise centred at 600
    assert crossing_step(steps, values) == pytest.approx(600, abs=3)
    assert crossing_step(steps, np.full(len(steps), 0.2)) is None  # no rise
    with pytest.raises(ValueError, match="same length"):
        crossing_step([0, 1], [0.1])


def test_formation_step_needs_the_threshold():
    steps = np.array([0, 100, 200, 300, 400])
    scores = np.array([0.02, 0.03, 0.05, 0.40, 0.60])
    pm = np.zeros((5, 2, 3))
    pm[:, 1, 2] = scores
    traj = InductionTrajectory(steps, pm, np.linspace(4, 2, 5), np.full(5, 4.0))
    # half-way between 0.02 and 0.60 is 0.31, crossed between 200 (0.05) and 300 (0.40): 200 + 26/35·100
    assert traj.formation_step() == round(200 + (0.31 - 0.05) / 0.35 * 100)
    assert traj.best_head() == (1, 2)
    assert traj.formation_step(threshold=0.7) is None
    assert len(traj.to_frame()) == 5 * 2 * 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    corpus = make_corpus(CorpusConfig(num_documents=120, lexicon_size=60, seed=2), n_ctx=24, vocab_size=90)
    model_config = AttentionOnlyConfig(vocab_size=len(corpus.tokenizer), n_ctx=24, d_model=16, n_layers=2, n_heads=2)
    config = TrainConfig(steps=20, lr=1e-2, batch_size=8, log_checkpoints=4, transition=None, dense_checkpoints=0)
    run = train(model_config, corpus.input_ids, config, cache_dir=tmp_path_factory.mktemp("runs"), progress=False)
    return corpus, run


def test_track_induction_reads_every_checkpoint(tiny_run):
    corpus, run = tiny_run
    traj = track_induction(run, length=8, num=8, progress=False)
    assert traj.steps.tolist() == run.checkpoint_steps
    assert traj.prefix_matching.shape == (len(run.checkpoint_steps), 2, 2)
    assert ((traj.prefix_matching >= 0) & (traj.prefix_matching <= 1)).all()
    assert np.isfinite(traj.second_copy_loss).all() and traj.induction_token_loss is None
    rows = torch.nonzero(corpus.classes[6, :, 1:].any(1)).flatten()[:6]
    assert len(rows) >= 2
    held_out, mask = corpus.input_ids[rows], corpus.classes[6, rows]
    with_text = track_induction(run, steps=[0, 20], length=8, num=8, held_out_ids=held_out, induction_mask=mask,
                                progress=False)
    # the recorded loss is the mean next-token loss over the induction tokens (checked at step 20 by hand)
    model = run.load(20)
    with torch.no_grad():
        logp = model(input_ids=held_out).logits.log_softmax(-1)
    rows, cols = torch.nonzero(mask[:, 1:], as_tuple=True)
    by_hand = -logp[rows, cols, held_out[rows, cols + 1]].mean()
    assert with_text.induction_token_loss[1] == pytest.approx(float(by_hand), rel=1e-5)
    with pytest.raises(ValueError, match="induction_mask"):
        track_induction(run, length=8, held_out_ids=held_out, progress=False)
    with pytest.raises(ValueError, match="steps"):
        track_induction(run, steps=[5], progress=False)
    with pytest.raises(ValueError, match="length = 16"):
        track_induction(run, length=16, progress=False)


def test_class_influence_matches_a_direct_sampler_run_and_caches(tiny_run):
    corpus, run = tiny_run
    train_ids, query_ids = corpus.input_ids[4:], corpus.input_ids[:3]
    classes = corpus.classes[:, :3]
    config = SGLDConfig(step_size=1e-4, nbeta=50.0, localization=100.0, num_chains=2, num_draws=12, batch_size=4,
                        seed=3)
    steps = run.checkpoint_steps[-2:]
    result = class_influence(run, train_ids, query_ids, classes, corpus.class_names, config, steps=steps,
                             checkpoints_per_pass=1, progress=False)
    assert not result.cached
    g = len(corpus.class_names)
    assert result.trajectory.values.shape == (2, g, g)
    assert result.token_losses.shape == (2, 2, 12, 3, 23)
    # the class values are the group BIF of the recorded token losses, with the first position dropped
    expected = group_bif(result.token_losses[1], classes[:, :, 1:])
    assert torch.allclose(result.trajectory.values[1], expected.to(result.trajectory.values.dtype), atol=1e-6,
                          equal_nan=True)
    # one checkpoint alone through the sampler gives the same draws (one checkpoint per pass, same seed)
    params, loss_fn = lm_loss_fn(run.load(steps[0]))
    trace = sample(loss_fn, params, train_ids, query_ids, config, progress=False)
    assert torch.allclose(trace.losses.float(), result.token_losses[0], atol=1e-5)
    assert result.token_matrix(steps[0], query=1).shape == (23, 23)
    assert np.allclose(result.token_matrix(steps[0], query=1), token_bif(result.token_losses[0, :, :, 1:2])[0, :, 0].numpy())
    peaks = result.peak_steps()
    assert set(peaks.values()) <= set(steps) and "word_start→word_start" in peaks
    assert set(result.peak_steps(since=steps[1]).values()) == {steps[1]}
    with pytest.raises(ValueError, match="since"):
        result.peak_steps(since=steps[1] + 1)
    # the normalized matrix is the negative correlation of the class-mean losses: −1 on the diagonal
    norm = result.normalized()
    observed = [k for k in range(g) if torch.isfinite(result.trajectory.values[1, k, k])]
    assert np.allclose(np.diagonal(norm[1])[observed], -1.0)
    means = group_means(result.token_losses[1], classes[:, :, 1:]).reshape(-1, len(corpus.class_names))
    a, b = observed[0], observed[1]
    assert norm[1, a, b] == pytest.approx(-np.corrcoef(means[:, a], means[:, b])[0, 1], rel=1e-6)
    again = class_influence(run, train_ids, query_ids, classes, corpus.class_names, config, steps=steps,
                            checkpoints_per_pass=2, progress=False)
    assert again.cached and torch.allclose(again.trajectory.values, result.trajectory.values, equal_nan=True)
    with pytest.raises(ValueError, match="classes"):
        class_influence(run, train_ids, query_ids, classes[:, :2], corpus.class_names, config, progress=False)


def test_sampler_init_loss_of_a_per_token_loss_is_the_mean_token_loss(tiny_run):
    """With per-token losses (sample, token), L_n(w*) is the mean over tokens, as the chains' objective is."""
    corpus, run = tiny_run
    model = run.load(20)
    params, loss_fn = lm_loss_fn(model)
    data = corpus.input_ids[:20]
    config = SGLDConfig(step_size=1e-6, nbeta=10.0, num_chains=1, num_draws=1, batch_size=7)  # 7 ∤ 20: ragged pieces
    trace = sample(loss_fn, params, data, None, config, progress=False)
    with torch.no_grad():
        expected = float(model(input_ids=data, labels=data).loss)
    assert trace.init_loss == pytest.approx(expected, rel=1e-5)
