"""Headline numbers come from metrics.json: the README agrees with the snapshot of a full build, the landing
page's substitutions are all defined, and the machinery reads, formats and reports drift correctly."""

import json
import re
from pathlib import Path

import pytest

from stagewise.pipeline import numbers
from stagewise.pipeline.numbers import NumbersError, check_readme, drift, load_spec, measure, update_readme

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_agrees_with_the_full_builds_snapshot():
    assert check_readme(ROOT / "README.md", ROOT / "book") == []


def test_every_number_on_the_landing_page_is_measured():
    spec = load_spec(ROOT / "book")
    used = set(re.findall(r"\{\{\s*([a-z0-9_]+)\s*\}\}", (ROOT / "book" / "intro.md").read_text()))
    assert used and used <= set(spec), sorted(used - set(spec))
    snapshot = json.loads((ROOT / "book" / "numbers.json").read_text())
    assert set(snapshot["numbers"]) == set(spec)


@pytest.fixture
def book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "numbers.yml").write_text(
        "flip:\n  chapter: 04_loo\n  key: sign_flip_step.bif\n  format: '{:.0f}'\n  label: flip step\n"
        "first:\n  chapter: 03_dln\n  key: stage_steps.0\n  format: '{:.1f}'\n  label: first stage\n")
    chapters = tmp_path / "chapters"
    for stem, metrics in {"04_loo": {"sign_flip_step": {"bif": 321.4}}, "03_dln": {"stage_steps": [273.25, 379]}}.items():
        (chapters / stem).mkdir(parents=True)
        (chapters / stem / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "README.md").write_text(f"# x\n\n{numbers.START}\nold\n{numbers.END}\n\nrest\n")
    return tmp_path


def test_measure_reads_nested_keys_and_list_items(book):
    assert measure(load_spec(book / "book"), book / "chapters") == {"flip": "321", "first": "273.2"}


def test_update_then_check_then_drift(book):
    readme, book_dir = book / "README.md", book / "book"
    with pytest.raises(NumbersError, match="numbers.json"):
        check_readme(readme, book_dir)
    update_readme(book / "chapters", "2026-12-01, test", readme_path=readme, book_dir=book_dir)
    text = readme.read_text()
    assert "| flip step | 321 | 04_loo, `sign_flip_step.bif` |" in text and text.endswith("\n\nrest\n")
    assert check_readme(readme, book_dir) == []
    readme.write_text(text.replace("| 321 |", "| 320 |"))  # a number typed by hand
    assert check_readme(readme, book_dir) != []
    assert drift({"flip": "330", "first": "273.2"}, book_dir) == ["flip: this build 330, book/numbers.json 321"]


def test_the_snapshot_keeps_each_chapters_time_for_a_fresh_clones_build_order(book):
    book_dir = book / "book"
    assert numbers.snapshot_seconds(book_dir) == {}  # no snapshot yet: no order to give
    (book / "chapters" / "04_loo.stamp.json").write_text(json.dumps({"key": "k", "seconds": 41.54}))
    (book / "chapters" / "03_dln.stamp.json").write_text("not json")  # an unreadable stamp is skipped
    update_readme(book / "chapters", "2026-12-01, test", readme_path=book / "README.md", book_dir=book_dir)
    assert numbers.snapshot_seconds(book_dir) == {"04_loo": 41.5}


def test_a_missing_key_names_the_chapter_and_key(book):
    (book / "chapters" / "04_loo" / "metrics.json").write_text("{}")
    with pytest.raises(NumbersError, match=r"04_loo/metrics.json has no 'sign_flip_step.bif'"):
        measure(load_spec(book / "book"), book / "chapters")


def test_a_partial_build_says_not_measured(book):
    import shutil

    shutil.rmtree(book / "chapters" / "03_dln")
    with pytest.raises(NumbersError, match="cannot read"):
        measure(load_spec(book / "book"), book / "chapters")
    assert measure(load_spec(book / "book"), book / "chapters", allow_missing=True) == {
        "flip": "321", "first": "not measured"}
