"""Language-model part (stagewise.lm): tiny models only, no network."""

import pytest
from transformers import PreTrainedTokenizerFast
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from stagewise.lm.corpus import (
    CLASS_NAMES,
    CorpusConfig,
    generate_documents,
    make_corpus,
    token_classes,
    train_tokenizer,
)
from stagewise.lm.train import TrainConfig, checkpoint_steps, train
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
                                                         n_heads=1, layer_norm=False)).eval()
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


# --- corpus, tokenizer, token classes ------------------------------------------------------------------

SMALL = CorpusConfig(num_documents=60, lexicon_size=80, seed=5)


@pytest.fixture(scope="module")
def small_corpus():
    return make_corpus(SMALL, n_ctx=32, vocab_size=120)


def test_corpus_is_deterministic(small_corpus):
    again = make_corpus(SMALL, n_ctx=32, vocab_size=120)
    assert torch.equal(again.input_ids, small_corpus.input_ids)
    assert torch.equal(again.classes, small_corpus.classes)
    other = generate_documents(CorpusConfig(num_documents=60, lexicon_size=80, seed=6))
    assert [d.text for d in other] != [d.text for d in small_corpus.documents]


def test_corpus_shapes_and_config_validation(small_corpus):
    num = small_corpus.input_ids.shape[0]
    assert small_corpus.input_ids.shape == (num, 32) and num > 5
    assert small_corpus.classes.shape == (len(CLASS_NAMES), num, 32)
    assert small_corpus.classes.any(dim=(1, 2)).all()  # every class occurs
    with pytest.raises(ValueError, match="repeat_prob"):
        CorpusConfig(repeat_prob=1.5)
    with pytest.raises(ValueError, match="span_words"):
        CorpusConfig(span_words=(4, 2))


def test_token_classes_follow_the_characters(small_corpus):
    tok = small_corpus.tokenizer
    ids, classes = small_corpus.input_ids.flatten(), small_corpus.classes.flatten(1)
    names = dict(zip(CLASS_NAMES, classes))
    texts = tok.convert_ids_to_tokens(ids.tolist())
    for t, text in enumerate(texts):
        if any(c in text for c in "([{"):
            assert names["left_delimiter"][t], text
        if any(c in text for c in ")]}"):
            assert names["right_delimiter"][t], text
        if "\n" in text:
            assert names["formatting"][t] and not names["word_start"][t], text
        if text.strip().isalpha() and text.startswith(" "):
            assert names["word_start"][t], text  # a word token after a space starts a word
    quotes = [t for t, text in enumerate(texts) if '"' in text]
    assert quotes and all(names["left_delimiter"][t] ^ names["right_delimiter"][t] for t in quotes)
    eos = ids == tok.eos_token_id
    assert not classes[:, eos].any()


def test_induction_class_marks_the_b_of_a_repeat():
    config = CorpusConfig(num_documents=20, lexicon_size=60, repeat_prob=1.0, seed=1)
    doc = generate_documents(config)[0]
    first, second, length = doc.copies[0]
    assert doc.text[first:first + length] == doc.text[second:second + length]
    tokenizer = train_tokenizer([d.text for d in generate_documents(config)], vocab_size=100)
    encoding = tokenizer.backend_tokenizer.encode(doc.text, add_special_tokens=False)
    classes = token_classes(doc, encoding.offsets)
    induction = [t for t in range(len(encoding.ids)) if classes[6, t]]
    assert induction
    for t in induction:  # inside the second copy (a leading space aside), after its first token
        s, e = encoding.offsets[t]
        core = s + 1 if doc.text[s] == " " and e - s > 1 else s
        assert second < core and e <= second + length
        previous_start = encoding.offsets[t - 1][0]
        assert previous_start >= second - 1  # its predecessor A is in the copy too (" A" counts)
    in_first = [t for t, (s, e) in enumerate(encoding.offsets) if first <= s and e <= first + length]
    assert not classes[6, in_first].any()
    # in the corpus, every induction token B follows an A such that "A B" occurred earlier in the sequence
    corpus = make_corpus(config, n_ctx=256, vocab_size=100)
    seq, pos = torch.nonzero(corpus.classes[6], as_tuple=True)
    assert len(seq) > 20
    for i, t in zip(seq.tolist(), pos.tolist()):
        row = corpus.input_ids[i].tolist()
        pairs = {(row[u - 1], row[u]) for u in range(1, t - 1)}
        assert (row[t - 1], row[t]) in pairs


def test_tokenizer_round_trip(tmp_path, small_corpus):
    tok = small_corpus.tokenizer
    text = small_corpus.documents[3].text
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path / "tok")
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path / "tok")
    assert loaded(text)["input_ids"] == ids and loaded.eos_token == tok.eos_token
    reused = make_corpus(SMALL, n_ctx=32, tokenizer=loaded)
    assert torch.equal(reused.input_ids, small_corpus.input_ids)


def test_corpus_from_a_plain_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text('def f(x):\n    return "a b" + g[x]\n\nthe cat sat. the cat sat.\n', encoding="utf-8")
    corpus = make_corpus(text_file=path, n_ctx=8, vocab_size=60)
    tok = corpus.tokenizer
    ids, classes = corpus.input_ids.flatten(), corpus.classes.flatten(1)
    texts = tok.convert_ids_to_tokens(ids.tolist())
    assert any(c in "".join(texts) for c in "(")
    for t, text in enumerate(texts):
        if "(" in text or "[" in text:
            assert classes[3, t]
        if ")" in text or "]" in text:
            assert classes[4, t]
        if text.startswith("\n"):
            assert classes[5, t]


# --- training --------------------------------------------------------------------------------------------


def test_checkpoint_steps_log_spaced_and_dense_in_window():
    steps = checkpoint_steps(TrainConfig(steps=1000, log_checkpoints=10, transition=(400, 500), dense_checkpoints=11))
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert {1, 2, 1000} <= set(steps)
    assert set(range(400, 501, 10)) <= set(steps)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)


@pytest.mark.parametrize("kind", ["attention-only", "gpt-neox"])
def test_train_saves_reloadable_checkpoints_and_caches(tmp_path, kind, small_corpus):
    data = small_corpus.input_ids[:, :16]
    vocab = len(small_corpus.tokenizer)
    if kind == "attention-only":
        model_config = AttentionOnlyConfig(**{**TINY, "vocab_size": vocab})
    else:
        model_config = GPTNeoXConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    config = TrainConfig(steps=6, lr=1e-2, batch_size=4, log_checkpoints=3, transition=(4, 5), dense_checkpoints=2)
    run = train(model_config, data, config, cache_dir=tmp_path, tokenizer=small_corpus.tokenizer, progress=False)
    assert not run.cached and run.checkpoint_steps == checkpoint_steps(config) == [0, 1, 2, 4, 5, 6]
    assert len(run.losses) == 6 and all(torch.isfinite(torch.tensor(run.losses)))
    assert [p.name for p in tmp_path.iterdir()] == [run.path.name]  # no temporary folder left behind
    first, last = run.load(0), run.load(6)
    assert not torch.equal(first.embed.weight if kind == "attention-only" else first.gpt_neox.embed_in.weight,
                           last.embed.weight if kind == "attention-only" else last.gpt_neox.embed_in.weight)
    assert PreTrainedTokenizerFast.from_pretrained(run.path / "tokenizer").vocab == small_corpus.tokenizer.vocab
    again = train(model_config, data, config, cache_dir=tmp_path, progress=False)
    assert again.cached and again.path == run.path and again.losses == run.losses
    other = train(model_config, data, TrainConfig(**{**config.__dict__, "seed": 1}), cache_dir=tmp_path,
                  progress=False)
    assert other.path != run.path
    with pytest.raises(KeyError, match="step 3"):
        run.load(3)


def test_pythia_path_loads_revisions_from_a_local_hub_cache(tmp_path):
    """HubCheckpoints → from_pretrained(name, revision="step<k>") offline, on GPT-NeoX checkpoints saved here.

    The folder is laid out as the Hugging Face cache lays out a download (refs/<revision> names a snapshot), and
    the loading runs in a fresh process with HF_HUB_OFFLINE=1, as a reader without network would run it.
    """
    import os
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--EleutherAI--pythia-14m"
    for k, step in enumerate((0, 1000)):
        torch.manual_seed(k)
        config = GPTNeoXConfig(vocab_size=24, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=32)
        commit = f"{k + 1:040x}"
        GPTNeoXForCausalLM(config).save_pretrained(repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / f"step{step}").write_text(commit)
    script = (
        "import torch\n"
        "from stagewise.lm import HubCheckpoints, induction_scores\n"
        f"run = HubCheckpoints('EleutherAI/pythia-14m', [0, 1000], cache_dir={str(tmp_path / 'results')!r})\n"
        "a, b = run.load(0), run.load(1000)\n"
        "assert type(a).__name__ == 'GPTNeoXForCausalLM' and a.config._attn_implementation == 'eager'\n"
        "assert not torch.equal(a.gpt_neox.embed_in.weight, b.gpt_neox.embed_in.weight)\n"
        "s = induction_scores(b, length=8, num=4)\n"
        "assert s.prefix_matching.shape == (1, 2)\n"
        "print('ok', run.checkpoint_steps)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok [0, 1000]" in done.stdout
    with pytest.raises(ValueError, match="not Pythia checkpoints"):
        from stagewise.lm import HubCheckpoints

        HubCheckpoints("EleutherAI/pythia-14m", [3], cache_dir=tmp_path)


def test_repeated_name_sequences_and_scoring_given_sequences(small_corpus):
    from stagewise.lm import repeated_name_sequences

    seqs = repeated_name_sequences(small_corpus.tokenizer, length=10, num=5, seed=1)
    assert seqs.shape == (5, 20) and torch.equal(seqs[:, :10], seqs[:, 10:])
    assert torch.equal(seqs, repeated_name_sequences(small_corpus.tokenizer, length=10, num=5, seed=1))
    text = small_corpus.tokenizer.decode(seqs[0, :10])
    assert text.startswith(" ") and "<unk>" not in text  # names in the corpus' own alphabet
    # the hand-built induction head scores on given sequences as on drawn ones
    model = hand_built_induction_model(6, 8)
    given = repeated_random_sequences(8, 6, 16, seed=4)
    scores = induction_scores(model, sequences=given)
    assert scores.prefix_matching.item() > 0.95 and scores.second_copy_loss < 0.1 < scores.first_copy_loss
    with pytest.raises(ValueError, match="both halves"):
        induction_scores(model, sequences=torch.arange(12).reshape(1, 12))


def _tiny_run(tmp_path, small_corpus, **kwargs):
    data = small_corpus.input_ids[:, :16]
    model_config = AttentionOnlyConfig(**{**TINY, "vocab_size": len(small_corpus.tokenizer)})
    config = TrainConfig(steps=4, lr=1e-2, batch_size=4, log_checkpoints=2)
    return train(model_config, data, config, cache_dir=tmp_path, progress=False, **kwargs)


def test_train_takes_a_device_and_the_cpu_keeps_its_cache_key(tmp_path, small_corpus):
    from stagewise.config import ConfigError

    default = _tiny_run(tmp_path, small_corpus)
    on_cpu = _tiny_run(tmp_path, small_corpus, device="cpu")
    assert on_cpu.cached and on_cpu.path == default.path  # device="cpu" is the run it always was
    with pytest.raises(ConfigError, match="device = 'gpu'"):
        _tiny_run(tmp_path / "bad", small_corpus, device="gpu")
    assert not (tmp_path / "bad").exists()  # refused before anything was made


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_on_cuda_draws_the_same_batches_and_has_a_key_of_its_own(tmp_path, small_corpus):
    cpu, cuda = _tiny_run(tmp_path, small_corpus), _tiny_run(tmp_path, small_corpus, device="cuda")
    assert cuda.path != cpu.path and not cuda.cached
    assert cuda.losses[0] == pytest.approx(cpu.losses[0], rel=1e-4)  # the same first batch and initialization
    assert next(cuda.load(4).parameters()).device.type == "cpu"  # checkpoints reopen on the CPU
