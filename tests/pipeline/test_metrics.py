"""metrics.json: numbers, parameters, seed and versions, written atomically."""

import json
import os
import sys

import numpy as np
import pytest
import torch

from stagewise.pipeline import Interval, OneOf, validate_parameters, write_metrics
from stagewise.pipeline.metrics import to_json


def test_write_metrics_converts_numpy_and_torch(tmp_path):
    ns = {"__annotations__": {"profile": str, "seed": int}, "profile": "quick", "seed": 3}
    params = validate_parameters(ns, profile=OneOf("full", "quick"), seed=Interval(ge=0))
    path = write_metrics({"llc": np.float32(1.5), "steps": np.int64(7), "ok": np.bool_(True),
                          "trace": np.arange(3.0), "draws": torch.tensor([[1.0, 2.0]]), "loss": torch.tensor(0.25),
                          "nested": {"a": (1, 2)}, "missing": float("nan")}, params, tmp_path / "metrics.json")
    record = json.loads(path.read_text())
    numbers = {k: v for k, v in record.items() if k not in ("parameters", "seed", "versions")}
    assert numbers == {"llc": 1.5, "steps": 7, "ok": True, "trace": [0.0, 1.0, 2.0],
                       "draws": [[1.0, 2.0]], "loss": 0.25, "nested": {"a": [1, 2]}, "missing": record["missing"]}
    assert record["missing"] != record["missing"]  # NaN survives the round trip
    assert record["parameters"] == {"profile": "quick", "seed": 3} and record["seed"] == 3
    assert record["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert record["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


def test_seed_is_none_without_a_seed_parameter(tmp_path):
    record = json.loads(write_metrics({"x": 1}, {"profile": "full"}, tmp_path / "m.json").read_text())
    assert record["seed"] is None


def test_unconvertible_values_are_refused():
    with pytest.raises(TypeError, match="cannot write object"):
        to_json({"x": object()})


def test_reserved_metric_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        write_metrics({"seed": 1}, {"profile": "full"}, tmp_path / "m.json")


def test_metrics_file_is_readable_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)  # a plain temporary file would be 0600
    try:
        path = write_metrics({"x": 1}, {"profile": "full"}, tmp_path / "metrics.json")
    finally:
        os.umask(previous)
    assert os.stat(path).st_mode & 0o777 == 0o644
