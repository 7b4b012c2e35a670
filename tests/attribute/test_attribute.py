"""stagewise.attribute: your own model's checkpoints and data → influence trajectories (tiny GPT-2s, 2 chains ×
10 draws), and the errors of the low-level path that now name the argument and the fix."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from stagewise.__main__ import main
from stagewise.attribute import (checkpoint_step, influence, load_checkpoints, load_data, load_traces,
                                 trajectory_from_traces)
from stagewise.llc import estimate_llc, rrr_llc
from stagewise.sampling import SGLDConfig, module_loss_fn, sample

CONFIG = SGLDConfig(num_chains=2, num_draws=10, step_size=1e-4, nbeta=10.0, localization=100.0, batch_size=4)
GPT2 = dict(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32)


def folder_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def save_gpt2(folder: Path, seed: int, state: dict | None = None) -> None:
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2))
    if state is not None:
        model.load_state_dict(state)
    model.save_pretrained(folder)


@pytest.fixture
def trainer_run(tmp_path):
    """A Trainer-style output folder: checkpoint-10/20/30 of a tiny GPT-2, and JSONL data of variable length."""
    run = tmp_path / "run"
    for step in (10, 20, 30):
        save_gpt2(run / f"checkpoint-{step}", step)
    (run / "checkpoint-20" / "trainer_state.json").write_text(json.dumps({"global_step": 20}))
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"input_ids": torch.randint(64, (5 + k % 4,), generator=g).tolist()}) + "\n"
                            for k in range(10)))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"input_ids": torch.randint(64, (7,), generator=g).tolist(),
                                           "attention_mask": [0, 0, 1, 1, 1, 1, 1]}) + "\n" for _ in range(3)))
    return run, data, queries


# ----------------------------------------------------------------------------------------------- the command


def test_the_command_writes_every_checkpoint_leaves_folders_intact_and_recomputes_changed_weights(
        trainer_run, tmp_path, monkeypatch, capsys):
    run, data, queries = trainer_run
    monkeypatch.setenv("STAGEWISE_CACHE", str(tmp_path / "cache"))
    before = folder_hash(run)
    args = ["influence", str(run), "--data", str(data), "--queries", str(queries), "--num-chains", "2",
            "--num-draws", "10", "--batch-size", "4", "--nbeta", "10", "--localization", "100"]
    assert main(args + ["--out", str(tmp_path / "out1")]) == 0
    assert folder_hash(run) == before  # nothing written into the checkpoints' folders
    table = __import__("pandas").read_csv(tmp_path / "out1" / "influence.csv")
    assert {"step", "i", "j", "bif", "stderr"} <= set(table.columns)
    assert sorted(table["step"].unique()) == [10, 20, 30]
    assert len(table) == 3 * 10 * 3  # steps × training sequences × queries
    record = json.loads((tmp_path / "out1" / "run.json").read_text())
    assert [c["step"] for c in record["checkpoints"]] == [10, 20, 30]
    assert all(len(c["weights_sha256"]) == 64 for c in record["checkpoints"])
    assert (tmp_path / "out1" / "influence.png").stat().st_size > 0
    assert "memory estimate" in capsys.readouterr().out

    # same weights: every checkpoint from the cache, the same numbers
    assert main(args + ["--out", str(tmp_path / "out2")]) == 0
    again = __import__("pandas").read_csv(tmp_path / "out2" / "influence.csv")
    np.testing.assert_allclose(again["bif"], table["bif"])
    diagnostics = __import__("pandas").read_csv(tmp_path / "out2" / "diagnostics.csv")
    assert diagnostics["cached"].all()

    # checkpoint-20's weights change (same folder, same name): it alone is sampled again
    state = transformers.GPT2LMHeadModel.from_pretrained(run / "checkpoint-20").state_dict()
    state = {k: v + 0.01 for k, v in state.items()}
    save_gpt2(run / "checkpoint-20", 0, state)
    assert main(args + ["--out", str(tmp_path / "out3")]) == 0
    diagnostics = __import__("pandas").read_csv(tmp_path / "out3" / "diagnostics.csv")
    assert diagnostics.set_index("step")["cached"].to_dict() == {10: True, 20: False, 30: True}
    changed = __import__("pandas").read_csv(tmp_path / "out3" / "influence.csv")
    assert not np.allclose(changed[changed.step == 20]["bif"], table[table.step == 20]["bif"])

    # an existing, non-empty --out folder is refused, untouched
    written = folder_hash(tmp_path / "out1")
    assert main(args + ["--out", str(tmp_path / "out1")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert folder_hash(tmp_path / "out1") == written


def test_saved_traces_recompute_the_table_without_sampling(trainer_run, tmp_path):
    run, data, queries = trainer_run
    result = influence(run, data, queries, out=tmp_path / "out", config=CONFIG, cache=False, progress=False,
                       log=lambda *a, **k: None)
    traces = load_traces(tmp_path / "out")
    assert list(traces) == [10, 20, 30]
    steps, values, errors = trajectory_from_traces(traces, result.settings["rows"], result.settings["cols"])
    np.testing.assert_allclose(values.reshape(-1).numpy(), result.table["bif"].to_numpy())
    assert estimate_llc(traces[20]).estimate == pytest.approx(
        result.diagnostics.set_index("step").loc[20, "llc"])


def test_token_classes_give_a_class_by_class_table(trainer_run, tmp_path):
    run, data, queries = trainer_run
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"low": list(range(32)), "high": list(range(32, 64))}))
    result = influence(run, data, queries, config=CONFIG, cache=False, progress=False, token_classes=classes,
                       log=lambda *a, **k: None)
    assert set(result.table["i"]) == {"low", "high"} and len(result.table) == 3 * 4
    assert np.isfinite(result.table["bif"]).all()


# ------------------------------------------------------------------------------------------------- loaders


def test_checkpoint_steps_come_from_trainer_state_or_the_name(tmp_path):
    (tmp_path / "checkpoint-500").mkdir()
    assert checkpoint_step(tmp_path / "checkpoint-500") == 500
    assert checkpoint_step(tmp_path / "checkpoint-0000100") == 100
    other = tmp_path / "final"
    other.mkdir()
    (other / "trainer_state.json").write_text(json.dumps({"global_step": 7}))
    assert checkpoint_step(other) == 7
    assert checkpoint_step(tmp_path / "model") is None


def test_hub_names_with_revisions_go_through_the_loader(tmp_path):
    save_gpt2(tmp_path / "local", 0)
    calls = []

    def loader(name, revision=None):
        calls.append((name, revision))
        return transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "local")

    found = load_checkpoints("org/model", revisions=["step100", "step20"], loader=loader)
    assert [c.step for c in found] == [20, 100]
    assert ("org/model", "step100") in calls and found[0].label == "org/model@step20"


def test_a_module_with_state_dicts_is_copied_not_modified():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    model.train()
    states = [{k: v + s for k, v in model.state_dict().items()} for s in (0.0, 0.1)]
    found = load_checkpoints(states, model=model, steps=[5, 9])
    assert [c.step for c in found] == [5, 9] and model.training  # the user's module keeps its mode
    assert not found[1].open().training  # opened in eval mode: dropout off while sampling
    with pytest.raises(ValueError, match="does not fit model"):
        load_checkpoints([{"0.weight": torch.zeros(2, 2)}], model=model)


def test_a_classifier_module_runs_with_bool_and_float64_inputs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3))
    model.train()  # left in training mode by the user: sampling turns dropout off by opening in eval mode
    states = [model.state_dict(), {k: v * 1.1 for k, v in model.state_dict().items()}]
    x = torch.rand(20, 6, dtype=torch.float64) > 0.5  # bool features
    y = torch.randint(3, (20,))
    result = influence(states, (x, y), model=model, config=CONFIG, cache=False, progress=False,
                       token_classes="labels", class_names=["a", "b", "c"], log=lambda *a, **k: None)
    assert set(result.table["i"]) == {"a", "b", "c"} and np.isfinite(result.table["bif"]).all()


def test_jsonl_masks_and_variable_lengths(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"input_ids": [1, 2, 3]}) + "\n" +
                    json.dumps({"input_ids": [0, 0, 4, 5, 6, 7], "attention_mask": [0, 0, 1, 1, 1, 1]}) + "\n")
    seqs = load_data(path)
    assert seqs.input_ids.tolist() == [[1, 2, 3, 0], [4, 5, 6, 7]]  # left padding moved to the right
    assert seqs.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    path.write_text(json.dumps({"input_ids": [1, 2, 3], "attention_mask": [1, 0, 1]}) + "\n")
    with pytest.raises(ValueError, match="has holes"):
        load_data(path)


def test_padding_is_masked_out_of_the_loss(tmp_path):
    """A sequence's loss is the same alone and right-padded in a batch with a longer one."""
    save_gpt2(tmp_path / "m", 0)
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "m").eval()
    from stagewise.attribute import sequence_loss

    short, long = [5, 9, 2, 7], [1, 2, 3, 4, 5, 6, 7, 8]
    both = load_data([short, long])
    alone = load_data([short])
    forward = model.__call__
    with torch.no_grad():
        a = sequence_loss(forward, both.batch())[0]
        b = sequence_loss(forward, alone.batch())[0]
    assert float(a) == pytest.approx(float(b), rel=1e-5)


class FakeDataset:
    """What the loader reads of a datasets.Dataset: column_names and column access."""

    def __init__(self, rows):
        self.rows = rows
        self.column_names = list(rows[0])

    def __getitem__(self, key):
        return [r[key] for r in self.rows]


def test_dataset_and_dataloader_inputs():
    rows = [{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1]}, {"input_ids": [4, 5], "attention_mask": [1, 1]}]
    seqs = load_data(FakeDataset(rows))
    assert seqs.input_ids.tolist() == [[1, 2, 3], [4, 5, 0]]
    with pytest.raises(ValueError, match="needs input_ids"):
        load_data(FakeDataset([{"text": "hi"}]))
    ids = torch.randint(64, (6, 5))
    loader = torch.utils.data.DataLoader([{"input_ids": r, "attention_mask": torch.ones(5, dtype=torch.long)}
                                          for r in ids], batch_size=4)
    assert torch.equal(load_data(loader).input_ids, ids)
    pairs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(5, 3), torch.arange(5)),
                                        batch_size=2)
    x, y = load_data(pairs)
    assert x.shape == (5, 3) and y.tolist() == [0, 1, 2, 3, 4]


def test_text_files_go_through_the_tokenizer(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab ab\nabc\n")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        load_data(path)
    seqs = load_data(path, tokenizer=lambda line: {"input_ids": [ord(c) % 64 for c in line]})
    assert seqs.lengths.tolist() == [5, 3]


# -------------------------------------------------------------------------------------- errors, before sampling


def test_errors_name_the_argument_and_the_fix(trainer_run, tmp_path):
    run, data, queries = trainer_run
    quiet = dict(cache=False, progress=False, log=lambda *a, **k: None)
    with pytest.raises(ValueError, match=r"batch_size = 50 is larger than the data \(10 samples\)"):
        influence(run, data, config=SGLDConfig(num_chains=2, num_draws=10, batch_size=50), **quiet)
    with pytest.raises(ValueError, match="bf16.*CUDA"):
        influence(run, data, config=CONFIG, bf16=True, **quiet)
    with pytest.raises(MemoryError, match=r"memory estimate.*Refused before sampling"):
        influence(run, data, config=CONFIG, memory_limit=1000, **quiet)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        influence([str(tmp_path / "nowhere" / "checkpoint-5")], data, config=CONFIG, **quiet)
    other = tmp_path / "other"
    save_gpt2(other, 0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**GPT2, "n_embd": 16})).save_pretrained(other / "x")
    with pytest.raises(ValueError, match="same architecture"):
        load_checkpoints([other, other / "x"], steps=[1, 2])


def test_low_level_errors_are_raised_before_sampling_with_the_fix():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))

    def per_sample(forward, batch):
        return torch.nn.functional.cross_entropy(forward(batch[0]), batch[1], reduction="none")

    x, y = torch.randn(16, 4), torch.randint(2, (16,))
    config = SGLDConfig(num_chains=2, num_draws=4)
    net.train()
    params, loss = module_loss_fn(net, per_sample)
    with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
        sample(loss, params, (x, y), (x, y), config, progress=False)
    net.eval()
    params, loss = module_loss_fn(net, per_sample)
    with pytest.raises(ValueError, match=r"first sample of data .*shape.*what the model takes"):
        sample(loss, params, (torch.randn(16, 5), y), None, config, progress=False)
    with pytest.raises(ValueError, match=r"first sample of observables"):
        sample(loss, params, (x, y), (torch.randn(3, 7), y[:3]), config, progress=False)
    with pytest.raises(ValueError, match=r"bool tensors"):
        sample(loss, params, (x > 0, y), None, config, progress=False)
    with pytest.raises(ValueError, match=r"batch_size = 17 is larger than the data \(16 samples\)"):
        sample(loss, params, (x, y), None, SGLDConfig(num_chains=2, num_draws=4, batch_size=17), progress=False)
    # float64 data with a float32 checkpoint: the data follow the checkpoint's dtype, as documented
    trace = sample(loss, params, (x.double(), y), (x.double(), y), config, progress=False)
    assert trace.losses.dtype == torch.float32


def test_llc_helpers_accept_numpy_integers_and_name_a_wrong_trace():
    assert rrr_llc(np.int64(3), np.int64(2), 2) == rrr_llc(3, 2, 2)
    with pytest.raises(TypeError, match="trace must be the SampleTrace"):
        estimate_llc(torch.zeros(2, 10))


def test_class_influence_refuses_a_folder_and_load_checkpoint_names_a_missing_one(tmp_path):
    from stagewise.lm import class_influence
    from stagewise.lm.model import load_checkpoint

    (tmp_path / "checkpoint-100").mkdir()
    with pytest.raises(TypeError, match="a folder is not a run object.*stagewise.attribute.influence"):
        class_influence(str(tmp_path), torch.zeros(2, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long),
                        torch.zeros(1, 1, 4, dtype=torch.bool), ["a"], CONFIG)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint folder .*checkpoint-0000100.*checkpoint-100"):
        load_checkpoint(tmp_path / "checkpoint-0000100")


@pytest.mark.slow
def test_checkpoints_as_tasks_of_a_local_dask_cluster(trainer_run, tmp_path):
    run, data, queries = trainer_run
    quiet = dict(cache=False, progress=False, log=lambda *a, **k: None)
    here = influence(run, data, queries, config=CONFIG, **quiet)
    from stagewise.pipeline.dask_cluster import cluster

    with cluster(workers=1, log=lambda *a, **k: None) as client:
        there = influence(run, data, queries, config=CONFIG, client=client, **quiet)
    np.testing.assert_allclose(there.table["bif"], here.table["bif"], rtol=1e-5, atol=1e-9)
