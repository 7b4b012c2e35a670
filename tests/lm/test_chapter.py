"""Chapter 6 end to end on its Pythia path: `-p model_name … -p revisions …` with checkpoints from a local hub cache.

The chapter's quick profile runs in the book build (the path that trains its own model); this test runs the other
path, as a reader without network access would with Pythia in their Hugging Face cache: GPT-NeoX checkpoints and a
tokenizer saved here, laid out as the cache lays out a download, loaded with HF_HUB_OFFLINE=1.
"""

import json

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from stagewise.lm import CorpusConfig, generate_documents, train_tokenizer
from stagewise.pipeline import run_notebook

NAME = "EleutherAI/pythia-14m"


def fake_hub(root, steps):
    repo = root / ("models--" + NAME.replace("/", "--"))
    tokenizer = train_tokenizer([d.text for d in generate_documents(CorpusConfig(num_documents=300))], vocab_size=64)
    for k, step in enumerate(steps):
        torch.manual_seed(k)
        config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=64)
        commit = f"{k + 1:040x}"
        GPTNeoXForCausalLM(config).save_pretrained(root / repo.name / "snapshots" / commit)
        tokenizer.save_pretrained(root / repo.name / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / f"step{step}").write_text(commit)


@pytest.mark.kernel
def test_chapter_6_runs_on_hub_checkpoints_offline(tmp_path, monkeypatch):
    fake_hub(tmp_path / "hub", [0, 1000, 2000])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("STAGEWISE_CACHE", str(tmp_path / "cache"))
    folder = run_notebook("06", {"model_name": NAME, "revisions": "0,1000,2000"}, profile="quick",
                          runs_dir=tmp_path / "runs", progress=False)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["sampled_steps"] == [1000, 2000]  # step 0 (the initialization) is not sampled
    assert metrics["train_seconds"] == 0.0
    assert 0 <= metrics["induction_score_max"] <= 1
    assert len(metrics["induction_best_head"]) == 2
    assert "induction→induction" in metrics["class_influence_peak_steps"]
    assert (folder / "class_trajectories.png").is_file() and not (folder / "training_loss.png").exists()
    # results computed from the hub checkpoints are cached under the hub name
    assert list((tmp_path / "cache" / "lm" / "hub" / NAME.replace("/", "--")).glob("influence-*/tensors.safetensors"))
