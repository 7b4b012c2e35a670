"""stagewise.artifacts: cache keys over parameters, data and code; atomic writes; safe formats; file modes."""

import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stagewise import artifacts
from stagewise.artifacts import (
    atomic_dir,
    cache_key,
    data_digest,
    load_npz,
    load_safetensors,
    read_json,
    source_files,
    source_hash,
    write_bytes,
    write_json,
    write_npz,
    write_safetensors,
)


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the stagewise package's source, hashed in place of the real one (the real tree is never edited)."""
    copy = tmp_path / "stagewise"
    for file in source_files():
        target = copy / file.relative_to(artifacts.PACKAGE_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    monkeypatch.setattr(artifacts, "PACKAGE_DIR", copy)
    source_hash.cache_clear()
    yield copy
    source_hash.cache_clear()


@pytest.fixture
def strict_umask():
    """umask 077 (files would be 0600, folders 0700): the modes written must not depend on it."""
    previous = os.umask(0o077)
    yield
    os.umask(previous)


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


# ---------------------------------------------------------------------------------------------------- keys


def test_same_inputs_give_the_same_key_and_other_data_or_parameters_another():
    ids = torch.arange(12).reshape(3, 4)
    key = cache_key({"lr": 0.01, "steps": 6, "window": (2, 5)}, ids, np.ones(3), b"raw", "text", None)
    assert len(key) == artifacts.KEY_LENGTH and int(key, 16) >= 0
    # same values (a fresh but equal tensor, dict keys in another order, tuple vs list): the same key
    assert cache_key({"window": [2, 5], "steps": 6, "lr": 0.01}, ids.clone(), np.ones(3), b"raw", "text", None) == key
    changed = ids.clone()
    changed[2, 3] = 99
    others = [
        cache_key({"lr": 0.01, "steps": 6, "window": (2, 5)}, changed, np.ones(3), b"raw", "text", None),  # one id
        cache_key({"lr": 0.01, "steps": 7, "window": (2, 5)}, ids, np.ones(3), b"raw", "text", None),  # a parameter
        cache_key({"lr": 0.01, "steps": 6, "window": (2, 5)}, ids.int(), np.ones(3), b"raw", "text", None),  # dtype
        cache_key({"lr": 0.01, "steps": 6, "window": (2, 5)}, ids.reshape(4, 3), np.ones(3), b"raw", "text", None),
        cache_key({"lr": 0.01, "steps": 6, "window": (2, 5)}, ids, np.ones(3), b"raw", "text"),  # one item fewer
        cache_key({"lr": 0.01, "steps": 6, "window": (2, 5)}, ids, np.ones(3), b"raw", "text", None, code="other"),
    ]
    assert len({key, *others}) == len(others) + 1


def test_data_digest_frames_items_and_reads_files_and_folders(tmp_path):
    # the same bytes split differently are different data
    assert data_digest(b"ab", b"c") != data_digest(b"a", b"bc")
    assert data_digest("ab") != data_digest(b"ab")  # text and bytes are tagged apart
    (tmp_path / "corpus.txt").write_text("one two")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("a")
    before = data_digest(tmp_path / "corpus.txt", tmp_path / "folder")
    (tmp_path / "folder" / "a.txt").write_text("b")
    assert data_digest(tmp_path / "corpus.txt", tmp_path / "folder") != before
    assert data_digest(torch.zeros(0)) != data_digest(torch.zeros(0, dtype=torch.int64))
    assert data_digest(torch.ones(2, dtype=torch.bfloat16)) != data_digest(torch.ones(2, dtype=torch.float16))
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        data_digest(tmp_path / "missing.txt")
    with pytest.raises(TypeError, match="data item 1: object"):
        data_digest(b"x", object())
    with pytest.raises(TypeError, match="Python objects"):
        data_digest(np.array([{"a": 1}], dtype=object))


def test_source_hash_covers_every_module_and_only_modules(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    before = source_hash(tmp_path)
    (tmp_path / "notes.txt").write_text("changed")
    source_hash.cache_clear()
    assert source_hash(tmp_path) == before
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    assert source_hash(tmp_path) == before  # read once per process: the code this process runs
    source_hash.cache_clear()
    assert source_hash(tmp_path) != before
    (tmp_path / "sub" / "b.py").write_text("y = 1\n")
    (tmp_path / "sub" / "b.py").rename(tmp_path / "b.py")  # a module moved is other code too
    source_hash.cache_clear()
    assert source_hash(tmp_path) != before


def test_changing_a_source_file_of_the_package_changes_every_default_key(package_copy):
    real = artifacts.PACKAGE_DIR  # the copy, in place of the real package
    assert {p.name for p in package_copy.rglob("*.py")} >= {"artifacts.py", "influence.py", "__init__.py"}
    ids = torch.arange(6)
    key = cache_key({"nbeta": 100.0}, ids)
    assert cache_key({"nbeta": 100.0}, ids) == key  # same code, same inputs: a hit
    target = next(p for p in (real / "sampling.py", real / "sampling" / "__init__.py") if p.is_file())
    target.write_text(target.read_text() + "\n# a change to the sampler\n")
    source_hash.cache_clear()  # what a new process (the next chapter run) sees
    assert cache_key({"nbeta": 100.0}, ids) != key


def test_the_copy_of_the_package_hashes_like_the_package(package_copy):
    # the key depends on the files' paths relative to the package and their bytes, not on where it is installed
    assert source_hash(package_copy) == source_hash(Path(artifacts.__file__).resolve().parent)


# ------------------------------------------------------------------------------------------------ writing


def test_json_round_trip_mode_0644_and_no_temporary_file(tmp_path, strict_umask):
    path = write_json({"x": np.float32(1.5), "ids": torch.arange(3), "missing": float("nan")}, tmp_path / "r.json")
    record = read_json(path)
    assert record["x"] == 1.5 and record["ids"] == [0, 1, 2] and record["missing"] != record["missing"]
    assert mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    (tmp_path / "broken.json").write_text('{"x": ')
    assert read_json(tmp_path / "broken.json", default="miss") == "miss"
    assert read_json(tmp_path / "absent.json") is None


def test_an_interrupted_file_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    path = write_json({"version": 1}, tmp_path / "metrics.json")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_json({"version": 2}, path)
    with pytest.raises(KeyboardInterrupt):
        write_bytes(b"new", tmp_path / "new.bin")
    assert read_json(path) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file, no new.bin


def test_an_interrupted_folder_write_leaves_nothing(tmp_path):
    final = tmp_path / "run-abc"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(final) as work:
            (work / "checkpoint-0").mkdir()
            (work / "checkpoint-0" / "weights").write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_killed_folder_write_leaves_no_artifact(tmp_path):
    """SIGKILL (no clean-up runs): the final folder never appears; only a hidden temporary folder may remain."""
    final = tmp_path / "run-abc"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from stagewise.artifacts import atomic_dir
        with atomic_dir(Path({str(final)!r})) as work:
            (work / "part").write_text("half")
            Path({str(tmp_path / "started")!r}).touch()
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(200):
            if (tmp_path / "started").exists():
                break
            time.sleep(0.05)
        assert (tmp_path / "started").exists()
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert not final.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "started"]
    assert all(name.startswith(".run-abc.") for name in leftovers)


def test_folder_modes_and_a_folder_finished_elsewhere_is_kept(tmp_path, strict_umask):
    final = tmp_path / "result"
    with atomic_dir(final) as work:
        assert mode(work) == 0o700  # what mkdtemp gives
        (work / "sub").mkdir()
        (work / "sub" / "a.txt").write_text("ours")
        write_json({"a": 1}, work / "meta.json")
    assert mode(final) == 0o755 and mode(final / "sub") == 0o755
    assert mode(final / "sub" / "a.txt") == 0o644 and mode(final / "meta.json") == 0o644
    with atomic_dir(final) as work:  # another process got there first: theirs stays, ours goes
        (work / "sub").mkdir()
        (work / "sub" / "a.txt").write_text("theirs")
    assert (final / "sub" / "a.txt").read_text() == "ours"
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


# ------------------------------------------------------------------------------------------- safe formats


def test_npz_round_trip_and_no_object_arrays(tmp_path, strict_umask):
    path = write_npz(tmp_path / "a.npz", x=np.arange(4.0), ids=torch.arange(3))
    saved = load_npz(path)
    assert np.array_equal(saved["x"], np.arange(4.0)) and saved["ids"].tolist() == [0, 1, 2]
    assert mode(path) == 0o644
    with pytest.raises(TypeError, match="without pickling"):
        write_npz(tmp_path / "b.npz", x=np.array([None, 1], dtype=object))


def test_safetensors_round_trip_with_shared_storage(tmp_path, strict_umask):
    base = torch.randn(4, 3)
    path = write_safetensors(tmp_path / "t.safetensors", {"a": base, "view": base[1:], "ids": torch.arange(2)},
                             metadata={"note": "x"})
    saved = load_safetensors(path)
    assert torch.equal(saved["a"], base) and torch.equal(saved["view"], base[1:]) and saved["ids"].dtype == torch.int64
    assert mode(path) == 0o644


class Payload:
    """Unpickling this touches a marker file: a test that finds the marker knows something unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "unpickled"
    np.savez(tmp_path / "pickled.npz", x=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_npz(tmp_path / "pickled.npz")
    (tmp_path / "t.safetensors").write_bytes(pickle.dumps({"x": Payload(marker)}))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_safetensors(tmp_path / "t.safetensors")
    (tmp_path / "r.json").write_bytes(pickle.dumps(Payload(marker)))
    assert read_json(tmp_path / "r.json") is None
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "absent.safetensors")
