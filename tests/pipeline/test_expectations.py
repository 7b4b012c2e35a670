"""The expectations checker on synthetic metrics: bounds met, bounds broken, missing keys, malformed files."""

import json

import pytest
import yaml

from stagewise.__main__ import main
from stagewise.pipeline.expectations import (Bound, ExpectationError, check_book, check_chapter, check_metrics,
                                             load_expectations, parse_expectations)

METRICS = {
    "llc": [{"name": "a", "rel_error": 0.05}, {"name": "b", "rel_error": 0.2}],
    "llc_max_rel_error": 0.2,
    "sign_flip_step": {"bif": 321.0, "loo": None},
    "degenerate_bif_max": {"0.1": 11.8, "1": 11.5},
    "flips": True,
    "not_a_number": float("nan"),
    "label": "dog",
}


def bounds(spec):
    return parse_expectations({"ch": {"quick": spec}})["ch"]["quick"]


def failures(spec, metrics=METRICS):
    return {c.key: c.failure for c in check_metrics(metrics, bounds(spec)) if not c.ok}


def test_bounds_met():
    spec = {"llc_max_rel_error": {"max": 0.25}, "sign_flip_step.bif": {"min": 250, "max": 400},
            "llc.*.rel_error": {"max": 0.3}, "flips": {"equals": True}, "label": {"equals": "dog"},
            "degenerate_bif_max.0.1": {"min": 10}, "llc.1.rel_error": {"min": 0.2, "max": 0.2}}
    checks = check_metrics(METRICS, bounds(spec), chapter="ch", profile="quick")
    assert all(c.ok for c in checks)
    assert [c.key for c in checks] == ["llc_max_rel_error", "sign_flip_step.bif", "llc.0.rel_error",
                                       "llc.1.rel_error", "flips", "label", "degenerate_bif_max.0.1", "llc.1.rel_error"]


def test_bounds_broken_name_the_key_value_and_bound():
    spec = {"llc_max_rel_error": {"max": 0.15}, "llc.*.rel_error": {"max": 0.1}, "sign_flip_step.bif": {"min": 400},
            "flips": {"equals": False}}
    checks = {c.key: c for c in check_metrics(METRICS, bounds(spec), chapter="01_slt", profile="quick")}
    assert not checks["llc_max_rel_error"].ok and checks["llc.0.rel_error"].ok and not checks["llc.1.rel_error"].ok
    assert not checks["sign_flip_step.bif"].ok and not checks["flips"].ok
    text = str(checks["llc_max_rel_error"])
    assert "01_slt" in text and "quick" in text and "llc_max_rel_error" in text and "0.2" in text and "≤ 0.15" in text


def test_missing_null_nan_and_non_numbers_fail():
    spec = {"no_such_key": {"max": 1}, "llc.*.no_such_field": {"max": 1}, "llc.7.rel_error": {"max": 1},
            "sign_flip_step.loo": {"min": 0}, "not_a_number": {"max": 1}, "label": {"max": 1},
            "flips": {"min": 0}, "llc": {"max": 1}}
    assert failures(spec) == {"no_such_key": "missing", "llc.*.no_such_field": "missing", "llc.7.rel_error": "missing",
                              "sign_flip_step.loo": "is null", "not_a_number": "is NaN", "label": "is not a number",
                              "flips": "is not a number", "llc": "is not a number"}


def test_a_star_over_an_empty_list_is_missing():
    assert failures({"llc.*.rel_error": {"max": 1}}, {"llc": []}) == {"llc.*.rel_error": "missing"}


def test_equals_keeps_booleans_apart_from_numbers():
    assert failures({"x": {"equals": True}}, {"x": 1}) == {"x": "differs"}
    assert failures({"x": {"equals": 1}}, {"x": 1.0}) == {}
    assert failures({"x": {"equals": None}}, {"x": None}) == {}


def test_bound_text():
    assert str(Bound(max=0.15)) == "≤ 0.15" and str(Bound(min=1)) == "≥ 1" and str(Bound(min=0, max=2)) == "in [0, 2]"
    assert str(Bound(equals=True)) == "= true"


@pytest.mark.parametrize("spec, message", [
    ({"ch": {"medium": {}}}, "unknown profile 'medium'"),
    ({"ch": {"quick": {"k": {"max": 1, "typo": 2}}}}, r"unknown field\(s\) \['typo'\]"),
    ({"ch": {"quick": {"k": {"min": 2, "max": 1}}}}, "min = 2 is larger than max = 1"),
    ({"ch": {"quick": {"k": {"max": "ten"}}}}, "max = 'ten' must be a number"),
    ({"ch": {"quick": {"k": {"note": "only a note"}}}}, "give min, max or equals"),
    ({"ch": {"quick": {"k": 0.15}}}, "a bound is a mapping"),
    ({"ch": {"quick": {"k": {"equals": 1, "max": 2}}}}, "cannot be combined"),
    (["ch"], "a mapping of chapter"),
])
def test_malformed_expectations_are_refused(spec, message):
    with pytest.raises(ExpectationError, match=message):
        parse_expectations(spec)


def _book(tmp_path, expected, metrics_by_chapter):
    (tmp_path / "expected.yaml").write_text(yaml.safe_dump(expected))
    chapters = []
    for stem, metrics in metrics_by_chapter.items():
        path = tmp_path / "chapters" / stem / "metrics.json"
        if metrics is not None:
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(metrics))
        chapters.append((stem, path))
    return chapters


def test_check_book_reports_failures(tmp_path):
    expected = {"01_a": {"quick": {"x": {"max": 1}}, "full": {"x": {"max": 0.1}}}, "02_b": {"full": {"y": {"min": 0}}}}
    chapters = _book(tmp_path, expected, {"01_a": {"x": 0.5}, "02_b": {"y": -1.0}, "03_c": {"z": 1}})
    log = []
    assert check_book(chapters, tmp_path / "expected.yaml", "quick", log=log.append) == []
    assert log[-1] == "expectations (quick): 1 of 1 bounds met"
    failed = check_book(chapters, tmp_path / "expected.yaml", "full", log=log.append)
    assert [(c.chapter, c.key, c.value) for c in failed] == [("01_a", "x", 0.5), ("02_b", "y", -1.0)]
    assert any("expectation not met: 01_a (full): x = 0.5, bound ≤ 0.1" in line for line in log)
    assert log[-1] == "expectations (full): 0 of 2 bounds met, 2 failed"


def test_check_book_a_missing_metrics_file_fails_and_an_unknown_chapter_is_an_error(tmp_path):
    chapters = _book(tmp_path, {"01_a": {"quick": {"x": {"max": 1}}}}, {"01_a": None})
    [failed] = check_book(chapters, tmp_path / "expected.yaml", "quick", log=lambda line: None)
    assert failed.key == "x" and "no readable metrics.json" in failed.failure
    with pytest.raises(ExpectationError, match=r"no such chapter\(s\) \['01_a'\]"):
        check_book([("02_b", tmp_path / "m.json")], tmp_path / "expected.yaml", "quick", log=lambda line: None)
    assert check_book(chapters, tmp_path / "none.yaml", "quick") == []  # no file: nothing to check


def test_check_chapter_without_bounds_for_the_profile(tmp_path):
    assert check_chapter("01_a", tmp_path / "absent.json", {"01_a": {"full": {"x": Bound(max=1)}}}, "quick") == []


def test_command_line_reads_chapter_and_profile_from_the_run(tmp_path, capsys):
    """`python -m stagewise check RUN`: the chapter and profile from the run's run.json (or the folder names)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "expected.yaml").write_text(yaml.safe_dump({"01_a": {"quick": {"x": {"max": 1}}}}))
    run = tmp_path / "runs" / "01_a" / "20250101-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"notebook": "notebooks/01_a.md", "profile": "quick"}))
    (run / "metrics.json").write_text(json.dumps({"x": 0.5}))
    check = ["--notebooks-dir", str(notebooks), "check"]
    assert main([*check, str(run)]) == 0 and "1 of 1 bounds met" in capsys.readouterr().out
    (run / "metrics.json").write_text(json.dumps({"x": 2.0}))
    assert main([*check, str(run / "metrics.json")]) == 1
    assert "FAILED (out of bounds)" in capsys.readouterr().out
    (run / "run.json").unlink()  # no record: the folder names the chapter; no bounds for the full profile
    assert main([*check, str(run), "--profile", "quick"]) == 1
    assert main([*check, str(run), "--chapter", "09_z"]) == 2


def test_the_repository_expectations_parse():
    from pathlib import Path

    expected = load_expectations(Path(__file__).resolve().parents[2] / "notebooks" / "expected.yaml")
    notebooks = {p.stem for p in (Path(__file__).resolve().parents[2] / "notebooks").glob("*.md")}
    assert set(expected) <= notebooks and "01_slt" in expected


def test_goals_are_reported_with_the_full_profile_and_never_fail(tmp_path):
    expected = {"01_a": {"full": {"x": {"min": 0.4}}, "goals": {"x": {"min": 0.7, "note": "asked for"}}}}
    chapters = _book(tmp_path, expected, {"01_a": {"x": 0.6}})
    log = []
    assert check_book(chapters, tmp_path / "expected.yaml", "full", log=log.append) == []
    assert any(line.startswith("goal not reached: 01_a (full): x = 0.6, goal ≥ 0.7") for line in log)
    assert log[-1] == "expectations (full): 1 of 1 bounds met; 1 of 1 goals not reached"
    assert check_book(chapters, tmp_path / "expected.yaml", "quick", log=log.append) == []  # goals: full only


def test_the_book_fails_on_a_quick_bound_and_reports_a_full_one(tmp_path):
    from pathlib import Path

    from stagewise.pipeline.book import BookError, _check_expectations

    notebooks, stage = tmp_path / "notebooks", tmp_path / "build"
    notebooks.mkdir()
    (notebooks / "expected.yaml").write_text(yaml.safe_dump(
        {"01_a": {"quick": {"llc_max_rel_error": {"max": 0.15}}, "full": {"llc_max_rel_error": {"max": 0.15}}}}))
    (stage / "chapters" / "01_a").mkdir(parents=True)
    (stage / "chapters" / "01_a" / "metrics.json").write_text(json.dumps({"llc_max_rel_error": 0.2}))
    chapters = [("chapters/01_a", Path("notebooks/01_a.md"))]
    with pytest.raises(BookError) as failure:
        _check_expectations(chapters, stage, notebooks / "expected.yaml", "quick", log=lambda *a, **k: None)
    assert "01_a (quick): llc_max_rel_error = 0.2, bound ≤ 0.15: FAILED (out of bounds)" in str(failure.value)
    log = []
    _check_expectations(chapters, stage, notebooks / "expected.yaml", "full", log=log.append)  # reported only
    assert any("expectation not met: 01_a (full): llc_max_rel_error = 0.2" in line for line in log)
    (notebooks / "expected.yaml").write_text(yaml.safe_dump({"09_z": {"quick": {"x": {"max": 1}}}}))
    with pytest.raises(BookError, match="no such chapter"):
        _check_expectations(chapters, stage, notebooks / "expected.yaml", "quick", log=lambda *a, **k: None)
