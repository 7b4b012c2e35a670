"""Language-model part (stagewise.lm): tiny models only, no network."""

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from stagewise.lm import (
    AttentionOnlyConfig,
    AttentionOnlyForCausalLM,
    induction_scores,
    load_checkpoint,
    per_token_loss,
    prefix_matching_score,
    pythia_checkpoints,
    repeated_random_sequences,
)
from stagewise.sampling import SGLDConfig, module_loss_fn, sample

TINY = dict(vocab_size=24, n_ctx=16, d_model=16, n_layers=2, n_heads=2)


def tiny_model(seed: int = 0, **overrides) -> AttentionOnlyForCausalLM:
    torch.manual_seed(seed)
    return AttentionOnlyForCausalLM(AttentionOnlyConfig(**{**TINY, **overrides})).eval()


# --- models and checkpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize("layer_norm", [False, True])
def test_attention_only_forward_shapes_loss_and_causality(layer_norm):
    model = tiny_model(layer_norm=layer_norm)
    ids = torch.randint(0, 24, (3, 16), generator=torch.Generator().manual_seed(1))
    out = model(ids, labels=ids, output_attentions=True)
    assert out.logits.shape == (3, 16, 24)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 2, 16, 16)
    assert torch.allclose(out.loss, per_token_loss(out.logits, ids).mean(), atol=1e-6)
    # causal: no attention to later positions, and changing a later token leaves earlier logits unchanged
    assert out.attentions[1].triu(1).abs().max() == 0
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 24
    assert torch.allclose(model(changed).logits[:, :10], out.logits[:, :10], atol=1e-6)


def test_attention_only_config_names_bad_field():
    with pytest.raises(ValueError, match="d_model = 10"):
        AttentionOnlyConfig(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="n_layers"):
        AttentionOnlyConfig(n_layers=0)


def test_attention_only_round_trip(tmp_path):
    model = tiny_model(layer_norm=True)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(loaded, AttentionOnlyForCausalLM) and loaded.config.layer_norm
    ids = torch.arange(16).remainder(24)[None]
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_gpt_neox_loads_from_local_folder(tmp_path):
    """The Pythia path, on a tiny GPT-NeoX saved locally (no network)."""
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=24, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=16)
    model = GPTNeoXForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "neox")
    loaded = load_checkpoint(tmp_path / "neox")
    assert isinstance(loaded, GPTNeoXForCausalLM)
    ids = torch.arange(8)[None]
    assert torch.allclose(loaded(ids).logits, model(ids).logits)


def test_pythia_checkpoints_names_revisions():
    pairs = pythia_checkpoints("EleutherAI/pythia-70m", [0, 1, 512, 1000, 143000])
    assert pairs == [("EleutherAI/pythia-70m", r) for r in ("step0", "step1", "step512", "step1000", "step143000")]
    assert len(pythia_checkpoints()) == 154
    with pytest.raises(ValueError, match="1500"):
        pythia_checkpoints(steps=[1500])


def test_attention_only_samples_under_vmap():
    """module_loss_fn + sample with 2 chains: per-token losses recorded as (chain, draw, seq, token)."""
    model = tiny_model()
    gen = torch.Generator().manual_seed(2)
    data = torch.randint(0, 24, (8, 12), generator=gen)
    observables = torch.randint(0, 24, (3, 12), generator=gen)

    def per_sample(forward, batch):
        return per_token_loss(forward(batch).logits, batch)

    params, loss_fn = module_loss_fn(model, per_sample)
    config = SGLDConfig(step_size=1e-4, nbeta=10.0, localization=100.0, num_chains=2, num_draws=3, batch_size=4)
    trace = sample(loss_fn, params, data, observables, config, progress=False)
    assert trace.losses.shape == (2, 3, 3, 11)
    assert torch.isfinite(trace.losses).all()
    with torch.no_grad():
        expected = per_token_loss(model(observables).logits, observables)
    assert torch.allclose(trace.init_observable_losses, expected, atol=1e-5)


# --- induction scores -----------------------------------------------------------------------------------


def test_prefix_matching_score_on_synthetic_patterns():
    length, size = 5, 10
    causal = torch.ones(size, size).tril()
    uniform = causal / causal.sum(-1, keepdim=True)
    induction = uniform.clone()
    for j in range(length - 1):
        induction[length + j] = 0
        induction[length + j, j + 1] = 1
    previous = torch.eye(size).roll(-1, dims=1).T.tril()  # query q attends q − 1
    previous[0, 0] = 1
    # (layer = 1, batch = 2, head = 3, query, key)
    patterns = torch.stack([induction, uniform, previous])[None, None].expand(1, 2, 3, size, size)
    score = prefix_matching_score(patterns, length)
    assert score.shape == (1, 3)
    expected_uniform = sum(1 / (length + j + 1) for j in range(length - 1)) / (length - 1)
    assert torch.allclose(score[0], torch.tensor([1.0, expected_uniform, 0.0]))
    assert torch.allclose(prefix_matching_score([patterns[0]], length), score)


def hand_built_induction_model(length: int, vocab: int) -> AttentionOnlyForCausalLM:
    """One head that attends from position p to p − L + 1 and copies that token to the output.

    Residual dims: [0, 2L) one-hot position, [2L, 2L+V) one-hot token, [2L+V, 2L+2V) the copied token (read out).
    """
    ctx, d = 2 * length, 2 * length + 2 * vocab
    model = AttentionOnlyForCausalLM(AttentionOnlyConfig(vocab_size=vocab, n_ctx=ctx, d_model=d, n_layers=1,
                                                         n_heads=1)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.pos_embed.weight[:, :ctx] = torch.eye(ctx)
        model.embed.weight[:, ctx:ctx + vocab] = torch.eye(vocab)
        w = model.blocks[0].qkv.weight  # rows: query, key, value
        for p in range(ctx):
            w[p, p] = 50.0  # query of position p: e_p
            if p + length - 1 < ctx:
                w[d + p + length - 1, p] = 50.0  # key of position p: e_{p + L − 1}
        for t in range(vocab):
            w[2 * d + ctx + vocab + t, ctx + t] = 1.0  # value: the token, moved to the read-out dims
        model.blocks[0].out.weight.copy_(torch.eye(d))
        model.unembed.weight[:, ctx + vocab:] = 30.0 * torch.eye(vocab)
    return model


def test_induction_scores_of_hand_built_induction_head():
    length, vocab = 6, 8
    ids = repeated_random_sequences(vocab, length, num=4, seed=3)
    assert ids.shape == (4, 12) and torch.equal(ids[:, :6], ids[:, 6:])
    scores = induction_scores(hand_built_induction_model(length, vocab), length=length, num=16)
    assert scores.prefix_matching.shape == (1, 1)
    assert scores.best_prefix_matching > 0.999
    assert scores.second_copy_loss < 1e-3
    assert scores.first_copy_loss > 0.5
    assert set(scores.summary()) >= {"prefix_matching", "second_copy_loss", "first_copy_loss"}


def test_induction_scores_of_untrained_model_are_low():
    scores = induction_scores(tiny_model(), length=8, num=8)
    assert scores.prefix_matching.shape == (2, 2)
    assert scores.best_prefix_matching < 0.3
