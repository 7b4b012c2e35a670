"""stagewise.artifacts.load_study: the one reader of a study's results for pages (no pipeline code), with a clear
error naming the command when a study has not been run."""

import json

import pandas as pd
import pytest
import yaml

from stagewise.artifacts import load_study


def test_load_study_reads_the_build_or_the_committed_folder_and_names_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv("STAGEWISE_STUDIES", raising=False)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "studies.yaml").write_text(yaml.safe_dump({
        "fast": {"chapter": "01", "grid": {"x": [1]}, "in_book": True},
        "slow": {"chapter": "01", "grid": {"x": [1]}, "profile": "full"}}))
    with pytest.raises(FileNotFoundError, match=r"`make study NAME=fast PROFILE=quick` \(python -m stagewise study "
                                                r"fast --profile quick\)"):
        load_study("fast", "quick", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"studies/slow/: run `make study NAME=slow`"):
        load_study("slow", root=tmp_path)
    with pytest.raises(KeyError, match="no study 'other'.*studies: fast, slow"):
        load_study("other", root=tmp_path)
    for folder, x in ((tmp_path / "build" / "quick" / "studies" / "fast", 1), (tmp_path / "studies" / "slow", 2)):
        folder.mkdir(parents=True)
        pd.DataFrame({"x": [x], "status": ["ok"]}).to_csv(folder / "results.csv", index=False)
        (folder / "study.json").write_text(json.dumps({"name": folder.name}))
    table, record = load_study("fast", "quick", root=tmp_path)
    assert list(table["x"]) == [1] and record == {"name": "fast"}
    assert list(load_study("slow", root=tmp_path)[0]["x"]) == [2]
    # in a book build the build's own studies folder comes first
    monkeypatch.setenv("STAGEWISE_STUDIES", str(tmp_path / "studies"))
    assert list(load_study("slow", "quick", root=tmp_path)[0]["x"]) == [2]
