"""The Pythia recipe in miniature (stagewise.lm): the learning-rate schedule at known steps, the log-then-linear
checkpoint list, and the GPT-NeoX-style block (shapes, forward, saving, sampling under vmap, training)."""

import math

import pytest
import torch

from stagewise.lm import (PYTHIA_STEPS, AttentionOnlyConfig, CorpusConfig, make_corpus, NeoXStyleConfig, NeoXStyleForCausalLM, TrainConfig,
                          checkpoint_steps, load_checkpoint, lr_factor, per_token_loss, small_lm_config, train)
from stagewise.sampling import SGLDConfig, module_loss_fn, sample

TINY = dict(vocab_size=24, n_ctx=16, d_model=16, n_layers=2, n_heads=2)


@pytest.fixture(scope="module")
def small_corpus():
    return make_corpus(CorpusConfig(num_documents=60, seed=0), n_ctx=32, vocab_size=120)


# --- learning-rate schedules ------------------------------------------------------------------------------

def test_constant_schedule_is_warmup_then_flat():
    config = TrainConfig(steps=1000, warmup=100)
    assert [lr_factor(s, config) for s in (1, 50, 100, 101, 1000)] == [0.01, 0.5, 1.0, 1.0, 1.0]


def test_cosine_schedule_values_at_known_steps():
    config = TrainConfig(steps=1100, warmup=100, lr_schedule="cosine", final_lr=0.1)
    assert lr_factor(50, config) == pytest.approx(0.5)  # warm-up as before
    assert lr_factor(100, config) == pytest.approx(1.0)  # the peak, at the end of the warm-up
    assert lr_factor(600, config) == pytest.approx(0.55)  # half-way: (1 + 0.1) / 2
    assert lr_factor(350, config) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_factor(1100, config) == pytest.approx(0.1)  # 10% of the peak at the last step, as in Pythia
    values = [lr_factor(s, config) for s in range(100, 1101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # decays monotonically
    no_warmup = TrainConfig(steps=10, warmup=0, lr_schedule="cosine", final_lr=0.0)
    assert lr_factor(10, no_warmup) == pytest.approx(0.0) and lr_factor(5, no_warmup) == pytest.approx(0.5)


def test_schedule_settings_are_checked():
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="final_lr"):
        TrainConfig(final_lr=1.5)
    with pytest.raises(ValueError, match="checkpoint_schedule"):
        TrainConfig(checkpoint_schedule="every")
    with pytest.raises(ValueError, match="step = 0"):
        lr_factor(0, TrainConfig())


def test_training_follows_the_schedule(tmp_path, small_corpus):
    """The optimizer's learning rate at each step is lr · lr_factor(step): read back from a short run."""
    data = small_corpus.input_ids[:, :16]
    model_config = AttentionOnlyConfig(**{**TINY, "vocab_size": len(small_corpus.tokenizer)})
    config = TrainConfig(steps=8, lr=1e-2, warmup=2, lr_schedule="cosine", batch_size=4, log_checkpoints=2,
                         dense_checkpoints=0)
    seen = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        train(model_config, data, config, cache_dir=tmp_path, progress=False)
    finally:
        torch.optim.AdamW.step = original
    assert seen == pytest.approx([1e-2 * lr_factor(s, config) for s in range(1, 9)])


# --- checkpoint schedules ---------------------------------------------------------------------------------

def test_pythia_checkpoint_schedule_reproduces_pythias_list():
    config = TrainConfig(steps=143000, checkpoint_schedule="pythia", dense_checkpoints=143)
    assert checkpoint_steps(config) == list(PYTHIA_STEPS)  # 0, 1, 2, 4, …, 512, 1000, 2000, …, 143000


def test_pythia_checkpoint_schedule_in_miniature():
    steps = checkpoint_steps(TrainConfig(steps=12000, checkpoint_schedule="pythia", dense_checkpoints=24))
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 500]  # log: the powers of two below 500
    assert steps[10:] == list(range(500, 12001, 500))  # then linear, every 12000 / 24 steps
    uneven = checkpoint_steps(TrainConfig(steps=1000, checkpoint_schedule="pythia", dense_checkpoints=3))
    assert uneven == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 333, 666, 999, 1000]  # the last step always kept


# --- the GPT-NeoX-style block -----------------------------------------------------------------------------

def tiny_neox(seed=0, **overrides):
    torch.manual_seed(seed)
    return NeoXStyleForCausalLM(NeoXStyleConfig(**{**TINY, **overrides})).eval()


def test_neox_block_shapes_and_parameter_count():
    model = tiny_neox()
    d, m, v, n = 16, 64, 24, 16  # d_mlp defaults to 4 · d_model
    block = model.blocks[0]
    assert block.mlp[0].weight.shape == (m, d) and block.mlp[2].weight.shape == (d, m)
    attention = 3 * d * d + 3 * d + d * d + d + 2 * d  # qkv, out, its LayerNorm
    mlp = d * m + m + m * d + d + 2 * d  # two linear maps and the MLP's LayerNorm
    expected = v * d + n * d + 2 * (attention + mlp) + 2 * d + d * v
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.config.parallel_residual and model.config.layer_norm
    assert NeoXStyleConfig(**TINY, d_mlp=8).d_mlp == 8
    with pytest.raises(ValueError, match="d_mlp"):
        NeoXStyleConfig(**TINY, d_mlp=0)


@pytest.mark.parametrize("parallel", [True, False])
def test_neox_forward_is_causal_and_matches_the_block_formula(parallel):
    model = tiny_neox(parallel_residual=parallel)
    ids = torch.randint(0, 24, (3, 16), generator=torch.Generator().manual_seed(1))
    out = model(ids, labels=ids, output_attentions=True)
    assert out.logits.shape == (3, 16, 24) and len(out.attentions) == 2
    assert torch.allclose(out.loss, per_token_loss(out.logits, ids).mean(), atol=1e-6)
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 24
    assert torch.allclose(model(changed).logits[:, :10], out.logits[:, :10], atol=1e-6)
    # the block by hand: x + attn(LN1 x) + MLP(LN2 x) (parallel) or h = x + attn(LN1 x); h + MLP(LN2 h)
    block = model.blocks[0]
    with torch.no_grad():
        x = model.embed(ids) + model.pos_embed.weight[:16]
        attended, _ = block.attention(x)
        h = x if parallel else x + attended
        expected = x + attended + block.mlp(block.mlp_norm(h))
        update, _ = block(x)
    assert torch.allclose(x + update, expected, atol=1e-6)


def test_neox_round_trip_and_small_lm_config(tmp_path):
    model = tiny_neox()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(loaded, NeoXStyleForCausalLM) and loaded.config.d_mlp == 64
    ids = torch.arange(16).remainder(24)[None]
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert type(small_lm_config("neox", **TINY)) is NeoXStyleConfig
    assert type(small_lm_config("attention", **TINY)) is AttentionOnlyConfig
    with pytest.raises(ValueError, match="block = 'mlp'"):
        small_lm_config("mlp", **TINY)


def test_neox_samples_under_vmap():
    model = tiny_neox()
    gen = torch.Generator().manual_seed(2)
    data = torch.randint(0, 24, (8, 12), generator=gen)
    observables = torch.randint(0, 24, (3, 12), generator=gen)
    params, loss_fn = module_loss_fn(model, lambda forward, batch: per_token_loss(forward(batch).logits, batch))
    config = SGLDConfig(step_size=1e-4, nbeta=10.0, localization=100.0, num_chains=2, num_draws=3, batch_size=4)
    trace = sample(loss_fn, params, data, observables, config, progress=False)
    assert trace.losses.shape == (2, 3, 3, 11) and torch.isfinite(trace.losses).all()


def test_neox_trains_and_reloads(tmp_path, small_corpus):
    data = small_corpus.input_ids[:, :16]
    model_config = NeoXStyleConfig(**{**TINY, "vocab_size": len(small_corpus.tokenizer)})
    config = TrainConfig(steps=6, lr=1e-2, warmup=2, batch_size=4, checkpoint_schedule="pythia",
                         dense_checkpoints=2, lr_schedule="cosine")
    run = train(model_config, data, config, cache_dir=tmp_path, progress=False)
    assert run.checkpoint_steps == [0, 1, 2, 3, 6]
    assert isinstance(run.load(6), NeoXStyleForCausalLM) and len(run.losses) == 6
