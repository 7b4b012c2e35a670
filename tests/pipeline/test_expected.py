"""The bounds of notebooks/expected.yaml over a built book's metrics: one test per chapter and key (marker
``book``). The quick book's (build/quick/chapters/*/metrics.json) by default; STAGEWISE_EXPECTED_PROFILE=full
checks the full book's build/full (its goals are reported by the build, never failing)."""

import os
from pathlib import Path

import pytest

from stagewise.pipeline.expectations import check_chapter, load_expectations

ROOT = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("STAGEWISE_EXPECTED_PROFILE", "quick")
CHAPTERS = ROOT / "build" / PROFILE / "chapters"
EXPECTED = load_expectations(ROOT / "notebooks" / "expected.yaml")

pytestmark = pytest.mark.book


@pytest.mark.parametrize("chapter, key", [(chapter, key) for chapter, profiles in EXPECTED.items()
                                          for key in profiles.get(PROFILE, {})])
def test_bound(chapter, key):
    metrics = CHAPTERS / chapter / "metrics.json"
    if not metrics.is_file():
        if os.environ.get("STAGEWISE_BOOK_BUILT"):
            pytest.fail(f"{metrics} is missing: the {PROFILE} book was not built")
        pytest.skip(f"the {PROFILE} book is not built (`python -m stagewise book --profile {PROFILE}`)")
    checks = check_chapter(chapter, metrics, {chapter: {PROFILE: {key: EXPECTED[chapter][PROFILE][key]}}}, PROFILE)
    failed = [str(check) for check in checks if not check.ok]
    assert not failed, "\n".join(failed + [f"note: {EXPECTED[chapter][PROFILE][key].note}"])
