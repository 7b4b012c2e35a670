import os

import pytest

from stagewise.pipeline.threads import available_threads


def test_threads_follow_the_machine_and_the_caps(monkeypatch):
    monkeypatch.delenv("STAGEWISE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert available_threads() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_threads() == 1
    monkeypatch.setenv("STAGEWISE_THREADS", str(cores + 5))  # never more than the cores
    assert available_threads() == cores
    monkeypatch.setenv("STAGEWISE_THREADS", "0")
    with pytest.raises(ValueError, match="STAGEWISE_THREADS"):
        available_threads()
