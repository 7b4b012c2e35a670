"""What the book shows and offers for download: clean executed notebooks, launch buttons only for a real
repository, pointing at files that exist."""

import json
import os
from pathlib import Path

import pytest
import yaml

from stagewise.pipeline.book import BookError, book_repository, staged_config
from stagewise.pipeline.clean import clean_notebook, machine_paths, scrub

ROOT = Path(__file__).resolve().parents[2]


def _notebook(outputs, metadata=None, source="x = 1"):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {},
            "cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": outputs,
                       "execution_count": 1, "id": "a"}]}


def test_clean_notebook_scrubs_paths_and_the_book_hides_stderr(tmp_path):
    root = str(tmp_path / "project")
    outputs = [
        {"output_type": "stream", "name": "stderr", "text": f"{root}/.venv/lib/x.py:3: UserWarning\n"},
        {"output_type": "stream", "name": "stdout", "text": f"saved {root}/runs/fig.png\n"},
        {"output_type": "execute_result", "execution_count": 1, "metadata": {},
         "data": {"text/plain": f"PosixPath('{root}/build/x')", "image/png": "iVBORw0KGgo="}},
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(_notebook(outputs, {"papermill": {"input_path": f"{root}/notebooks/01.ipynb"}})))
    assert clean_notebook(path, [root]) is True
    nb = json.loads(path.read_text())
    kept = nb["cells"][0]["outputs"]
    assert [o.get("name", o["output_type"]) for o in kept] == ["stderr", "stdout", "execute_result"]
    assert kept[0]["text"] == ".venv/lib/x.py:3: UserWarning\n" and kept[1]["text"] == "saved runs/fig.png\n"
    assert kept[2]["data"]["text/plain"] == "PosixPath('build/x')"
    assert kept[2]["data"]["image/png"] == "iVBORw0KGgo="  # images untouched
    # stderr (progress bars, warnings) stays in the download and out of the book's pages: myst-nb removes it
    assert yaml.safe_load((ROOT / "book" / "_config.yml").read_text())["sphinx"]["config"]["nb_output_stderr"] == "remove"
    assert nb["metadata"]["papermill"]["input_path"] == "notebooks/01.ipynb"
    assert root not in path.read_text()
    assert clean_notebook(path, [root]) is False  # idempotent: nothing left to change
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_machine_paths_cover_the_working_directory_and_environment():
    paths = machine_paths()
    assert str(Path.cwd().resolve()) in paths and paths == sorted(paths, key=len, reverse=True)
    assert scrub(f"{Path.cwd().resolve()}/a/b and {Path.cwd().resolve()}", paths) == "a/b and ."


def test_no_repository_means_no_launch_or_repository_buttons(monkeypatch):
    monkeypatch.delenv("STAGEWISE_REPOSITORY", raising=False)
    assert book_repository(ROOT / "book") == ""  # the committed default: not configured
    config = staged_config(ROOT / "book")
    assert "launch_buttons" not in config and "repository" not in config
    assert config["html"]["use_repository_button"] is False


def test_a_configured_repository_gives_binder_buttons_on_the_sources(monkeypatch):
    monkeypatch.setenv("STAGEWISE_REPOSITORY", "https://github.com/someone/stagewise")
    config = staged_config(ROOT / "book")
    assert config["repository"]["url"] == "https://github.com/someone/stagewise"
    assert config["launch_buttons"] == {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org"}
    assert config["html"]["use_repository_button"] is True
    # Binder builds environment.yml and runs postBuild, both committed at the root
    assert (ROOT / "environment.yml").is_file() and os.access(ROOT / "postBuild", os.X_OK)
    monkeypatch.setenv("STAGEWISE_REPOSITORY", "https://example.org/x")
    with pytest.raises(BookError, match="repository url"):
        staged_config(ROOT / "book")


def test_the_extension_points_binder_at_the_committed_source():
    import importlib.util

    spec = importlib.util.spec_from_file_location("stagewise_offline", ROOT / "book/_ext/stagewise_offline.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    url = "https://mybinder.org/v2/gh/someone/stagewise/main?urlpath=tree/book/chapters/01_slt.ipynb"
    context = {"header_buttons": [{"label": "launch-buttons", "buttons": [{"text": "Binder", "url": url}]}]}
    ext._binder_opens_the_source(None, "chapters/01_slt", None, context, None)
    new = context["header_buttons"][0]["buttons"][0]["url"]
    assert new.endswith("?urlpath=lab/tree/notebooks/01_slt.md") and (ROOT / "notebooks/01_slt.md").is_file()
