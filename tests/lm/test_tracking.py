"""Induction tracking and class × class influence across checkpoints (stagewise.lm.tracking), on tiny runs."""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stagewise import artifacts
from stagewise.influence import group_bif, group_means, token_bif
from stagewise.lm import AttentionOnlyConfig, CorpusConfig, TrainConfig, make_corpus, train
from stagewise.lm.tracking import (
    InductionTrajectory,
    class_influence,
    lm_loss_fn,
    track_induction,
)
from stagewise.sampling import SGLDConfig, sample


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


def test_with_chains_pools_two_results_into_the_estimate_of_all_their_chains(tiny_run):
    """More chains from another seed, pooled: the same values and errors as group_bif / group_bif_stderr of all
    the chains side by side (as one run with more chains would give)."""
    from stagewise.influence import group_bif_stderr

    corpus, run = tiny_run
    train_ids, query_ids, classes = corpus.input_ids[4:], corpus.input_ids[:3], corpus.classes[:, :3]
    config = SGLDConfig(step_size=1e-4, nbeta=50.0, localization=100.0, num_chains=2, num_draws=8, batch_size=4,
                        seed=3)
    steps = run.checkpoint_steps[-2:]
    first = class_influence(run, train_ids, query_ids, classes, corpus.class_names, config, steps=steps,
                            cache=False, progress=False)
    more = class_influence(run, train_ids, query_ids, classes, corpus.class_names,
                           SGLDConfig(**{**config.__dict__, "num_chains": 3, "seed": 4}), steps=steps, cache=False,
                           progress=False)
    pooled = first.with_chains(more, classes)
    assert pooled.token_losses.shape == (2, 5, 8, 3, 23)
    losses = torch.cat([first.token_losses[1], more.token_losses[1]])
    groups = classes[:, :, 1:]
    assert torch.allclose(pooled.trajectory.values[1], group_bif(losses, groups).to(pooled.trajectory.values.dtype), atol=1e-9,
                          equal_nan=True)
    assert torch.allclose(pooled.trajectory.stderr[1], group_bif_stderr(losses, groups).to(pooled.trajectory.stderr.dtype),
                          atol=1e-9, equal_nan=True)
    assert not torch.allclose(pooled.trajectory.values, first.trajectory.values, equal_nan=True)
    with pytest.raises(ValueError, match="the same checkpoints"):
        first.with_chains(class_influence(run, train_ids, query_ids, classes, corpus.class_names, config,
                                          steps=steps[:1], cache=False, progress=False), classes)
    with pytest.raises(ValueError, match="classes"):
        first.with_chains(more, classes[:, :2])


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


# ------------------------------------------------------------------------------------- caching (artifacts)


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package's source, hashed in place of the real one (the real tree is never edited)."""
    copy = tmp_path / "package" / "stagewise"
    for file in artifacts.source_files():
        target = copy / file.relative_to(artifacts.PACKAGE_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    monkeypatch.setattr(artifacts, "PACKAGE_DIR", copy)
    artifacts.source_hash.cache_clear()
    yield copy
    artifacts.source_hash.cache_clear()


def _edit_sampler(package: Path) -> None:
    """Append a comment to the copy's sampler module and forget the hash, as a new process would."""
    target = next(p for p in (package / "sampling.py", package / "sampling" / "__init__.py") if p.is_file())
    target.write_text(target.read_text() + "\n# a change to the sampler\n")
    artifacts.source_hash.cache_clear()


def _no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cached result was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_class_influence_cache_hits_only_for_the_same_code_and_data(tiny_run, package_copy, monkeypatch):
    corpus, run = tiny_run
    train_ids, query_ids, classes = corpus.input_ids[4:], corpus.input_ids[:3], corpus.classes[:, :3]
    config = SGLDConfig(step_size=1e-4, nbeta=50.0, localization=100.0, num_chains=2, num_draws=4, batch_size=4,
                        seed=5)
    steps = run.checkpoint_steps[-1:]

    def influence(train=train_ids):
        return class_influence(run, train, query_ids, classes, corpus.class_names, config, steps=steps,
                               progress=False)

    before = set(run.path.glob("influence-*"))
    first = influence()
    assert not first.cached
    (folder,) = set(run.path.glob("influence-*")) - before
    assert json.loads((folder / "result.json").read_text())["class_names"] == list(corpus.class_names)
    assert sorted(p.name for p in folder.iterdir()) == ["result.json", "tensors.safetensors"]
    assert all(os.stat(p).st_mode & 0o777 == 0o644 for p in folder.iterdir())
    assert os.stat(folder).st_mode & 0o777 == 0o755
    assert not list(run.path.glob(".influence-*"))  # no temporary folder left behind
    with monkeypatch.context() as m:
        _no_unpickling(m)
        again = influence()  # same code, same inputs: a hit, read without pickle
    assert again.cached and again.class_names == first.class_names and again.seconds == first.seconds
    assert torch.equal(again.token_losses, first.token_losses)
    assert torch.allclose(again.trajectory.values, first.trajectory.values, equal_nan=True)
    assert not influence(train_ids[1:]).cached  # other data: a miss
    _edit_sampler(package_copy)
    assert not influence().cached  # the package's code changed: a miss, not the old result
    assert influence().cached


def test_an_unreadable_cached_influence_is_a_miss_and_never_unpickled(tiny_run, tmp_path, monkeypatch):
    corpus, run = tiny_run
    args = (run, corpus.input_ids[4:], corpus.input_ids[:2], corpus.classes[:, :2], corpus.class_names,
            SGLDConfig(step_size=1e-4, nbeta=50.0, localization=100.0, num_chains=1, num_draws=3, batch_size=4))
    first = class_influence(*args, steps=[0], progress=False)
    folder = max(run.path.glob("influence-*"), key=lambda p: p.stat().st_mtime)
    marker = tmp_path / "unpickled"
    (folder / "tensors.safetensors").write_bytes(pickle.dumps({"x": _Payload(marker)}))  # an old-style pickle
    again = class_influence(*args, steps=[0], progress=False)
    assert not again.cached and not marker.exists()
    assert torch.allclose(again.token_losses, first.token_losses)  # recomputed: the sampler is seeded
    assert class_influence(*args, steps=[0], progress=False).cached


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_train_cache_misses_when_the_code_changes_and_an_interrupted_run_leaves_nothing(tiny_run, tmp_path,
                                                                                       package_copy, monkeypatch):
    corpus, _ = tiny_run
    model_config = AttentionOnlyConfig(vocab_size=len(corpus.tokenizer), n_ctx=24, d_model=8, n_layers=1, n_heads=1)
    config = TrainConfig(steps=3, batch_size=4, warmup=0, log_checkpoints=2, transition=None, dense_checkpoints=0)
    cache = tmp_path / "runs"
    umask = os.umask(0o077)  # files would be 0600, folders 0700: the cached run must be readable all the same
    try:
        run = train(model_config, corpus.input_ids, config, cache_dir=cache, progress=False)
    finally:
        os.umask(umask)
    assert not run.cached and train(model_config, corpus.input_ids, config, cache_dir=cache, progress=False).cached
    files = [p for p in run.path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "model.safetensors", "config.json"}
    assert {os.stat(p).st_mode & 0o777 for p in files} == {0o644}
    assert {os.stat(p).st_mode & 0o777 for p in [run.path, *run.path.glob("checkpoint-*")]} == {0o755}
    assert not train(model_config, corpus.input_ids[1:], config, cache_dir=cache, progress=False).cached  # data
    _edit_sampler(package_copy)
    rerun = train(model_config, corpus.input_ids, config, cache_dir=cache, progress=False)
    assert not rerun.cached and rerun.path != run.path and rerun.losses == run.losses

    calls = []

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupted_step)
    before = sorted(p.name for p in cache.iterdir())
    with pytest.raises(KeyboardInterrupt):
        train(model_config, corpus.input_ids, TrainConfig(**{**config.__dict__, "seed": 7}), cache_dir=cache,
              progress=False)
    assert sorted(p.name for p in cache.iterdir()) == before  # no run folder, no temporary folder


def test_track_pairing_reads_every_checkpoint(tiny_run):
    from stagewise.lm.pairing import PairingTrajectory, track_pairing

    corpus, run = tiny_run
    classes = corpus.classes
    traj = track_pairing(run, corpus.input_ids, classes[3], classes[4], corpus.tokenizer)
    assert traj.steps.tolist() == run.checkpoint_steps and traj.chance == 0.25
    assert traj.counts[0] > 10 and np.all((traj.accuracy >= 0) & (traj.accuracy <= 1))
    assert np.all(traj.closer_loss > 0) and np.all(traj.opener_loss > 0)
    rise = PairingTrajectory(np.array([0, 100, 200, 300]), np.array([0.25, 0.3, 0.6, 0.7]), np.full(4, 0.25),
                             np.ones(4), np.ones(4), 0.25, (10, 2))
    assert rise.pairing_step() == round(100 + (0.475 - 0.3) / 0.3 * 100)  # half-way from 0.25 to 0.7
    assert rise.pairing_step(margin=0.5) is None
    with pytest.raises(ValueError, match="matched closers"):
        track_pairing(run, corpus.input_ids, classes[3], torch.zeros_like(classes[4]), corpus.tokenizer)
