"""Language-model part (stagewise.lm): tiny models only, no network."""

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from stagewise.lm import (
    AttentionOnlyConfig,
    AttentionOnlyForCausalLM,
    load_checkpoint,
    per_token_loss,
    pythia_checkpoints,
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
