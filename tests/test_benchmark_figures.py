"""The benchmarks appendix's figures (stagewise.benchmark_figures): each returns a figure with labelled axes and a
legend, draws the values of the record it is given, names the missing field of a record it cannot draw, and draws
the records the benchmarks wrote (benchmarks/results/*.json)."""

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from stagewise import benchmark_figures as figures

matplotlib.use("Agg")

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _labelled(ax):
    return bool(ax.get_xlabel().strip()) and bool(ax.get_ylabel().strip())


def _legend(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _mode(sw, dv, wall, cpu):
    return {"stagewise_wall_s": sw, "devinterp_wall_s": dv, "speedup_per_pair": wall, "speedup_cpu_per_pair": cpu}


def test_bif_benchmark_figure_draws_every_run_and_pair():
    result = {"modes": {"plain": _mode([2.0, 2.2], [3.0, 3.1], [1.5, 1.4], [1.6, 1.3]),
                        "rmsprop": _mode([2.5], [2.4], [0.96], [1.1])}}
    fig = figures.bif_benchmark_figure(result)
    runs, ratios = fig.axes
    assert _labelled(runs) and _labelled(ratios)
    assert _legend(runs) == ["stagewise", "devinterp"] and _legend(ratios) == ["wall time", "CPU time", "parity"]
    assert [line.get_ydata().tolist() for line in runs.lines] == [[2.0, 2.2], [3.0, 3.1], [2.5], [2.4]]
    assert ratios.lines[0].get_ydata().tolist() == [1.5, 1.4]
    assert [t.get_text() for t in ratios.get_xticklabels()] == ["plain", "rmsprop"]
    plt.close(fig)
    with pytest.raises(ValueError, match="modes.plain.speedup_cpu_per_pair"):
        figures.bif_benchmark_figure({"modes": {"plain": {k: v for k, v in _mode([1], [1], [1], [1]).items()
                                                          if k != "speedup_cpu_per_pair"}}})
    with pytest.raises(ValueError, match="'modes'"):
        figures.bif_benchmark_figure({})


def _entry(seconds, speedup):
    return {"wall_s": seconds, "cpu_s": seconds, "speedup_wall": {"median": speedup},
            "speedup_cpu": {"median": speedup}}


def test_cpu_levers_figure_has_a_pair_of_bars_per_option():
    levers = {"torch_threads": 1, "device_name": "test CPU",
              "per_step": {"vmap": _entry(0.1, 1.0), "loop": _entry(0.08, 1.25)},
              "per_draw": {"vmap": _entry(0.2, 1.0)}}
    rows = figures.lever_speedups(levers)
    assert list(rows) == ["step: vmap", "step: loop", "draw: vmap"]
    assert rows["step: loop"] == {"CPU (ms)": 80.0, "wall (ms)": 80.0, "speedup, CPU": 1.25, "speedup, wall": 1.25}
    fig = figures.cpu_levers_figure(levers)
    (ax,) = fig.axes
    assert _labelled(ax) and _legend(ax) == ["CPU time", "wall time"]
    assert [p.get_width() for p in ax.patches] == [1.0, 1.25, 1.0] * 2
    assert "1 torch thread)" in ax.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="per_draw"):
        figures.cpu_levers_figure({"per_step": {}})


def test_scaling_figure_draws_one_line_per_implementation():
    rows = [{"chain_runs": n, "impl": impl, "device": "cpu", "seconds": s * n, "cpu_seconds": s * n / 2,
             "peak_mem_mib": 100.0 * n} for impl, s in (("stagewise_batched", 1.0), ("devinterp_sequential", 3.0))
            for n in (4, 1, 16)]
    rows.append({"chain_runs": 64, "impl": "devinterp_sequential", "device": "cpu", "error": "out of memory"})
    fig = figures.scaling_figure({"scaling": rows, "steps": 2, "torch_threads": 1, "device_name": "test CPU"})
    time_ax, memory_ax = fig.axes
    assert _labelled(time_ax) and _labelled(memory_ax)
    assert _legend(time_ax) == ["devinterp sequential (cpu)", "stagewise batched (cpu)"]
    assert time_ax.lines[0].get_xdata().tolist() == [1, 4, 16]  # sorted, the failed row left out
    assert time_ax.lines[0].get_ydata().tolist() == [3.0, 12.0, 48.0]
    assert time_ax.lines[1].get_ydata().tolist() == [1.5, 6.0, 24.0]
    plt.close(fig)
    with pytest.raises(ValueError, match="scaling"):
        figures.scaling_figure({"scaling": None})


def test_group_bif_figure_draws_time_and_memory_against_tokens():
    rows = [{"tokens": t, "groups": 1000, "draws": 400, "seconds": t / 1e5, "cpu_seconds": t / 2e5,
             "peak_rss_mib": 200 + t / 1e3, "losses_mib": t / 1e3} for t in (10**5, 10**3)]
    fig = figures.group_bif_figure({"rows": rows, "torch_threads": 1, "device_name": "test CPU"})
    time_ax, memory_ax = fig.axes
    assert _labelled(time_ax) and _labelled(memory_ax)
    assert _legend(time_ax) == ["wall time", "CPU time"] and len(_legend(memory_ax)) == 2
    assert time_ax.lines[0].get_xdata().tolist() == [1000, 100000]
    assert memory_ax.lines[1].get_ydata().tolist() == [1.0, 100.0]
    assert "1,000 groups, 400 draws" == time_ax.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="rows"):
        figures.group_bif_figure({})


@pytest.mark.parametrize("name, draw", [("bif_vs_devinterp.json", figures.bif_benchmark_figure),
                                        ("cpu_levers.json", figures.cpu_levers_figure),
                                        ("scaling.json", figures.scaling_figure),
                                        ("group_bif.json", figures.group_bif_figure)])
def test_the_benchmarks_own_records_draw(name, draw):
    path = RESULTS / name
    if not path.is_file():
        pytest.skip(f"{name} not in benchmarks/results")
    fig = draw(json.loads(path.read_text()))
    assert all(_labelled(ax) for ax in fig.axes)
    assert all(np.isfinite(line.get_ydata()).all() for ax in fig.axes for line in ax.lines if len(line.get_ydata()))
    plt.close(fig)
