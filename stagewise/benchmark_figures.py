"""The benchmarks appendix's figures, drawn from the records the benchmarks write (``benchmarks/results/*.json``,
each read with :func:`json.loads`). Each function takes one record and returns a matplotlib figure.

- :func:`bif_benchmark_figure` (``bif_vs_devinterp.json``): the wall time of every run of stagewise and devinterp,
  and the devinterp / stagewise time ratio of every pair of runs, in wall and in CPU time, per sampler mode.
- :func:`cpu_levers_figure` (``cpu_levers.json``): the speedup of each sampler option over the default path, per
  SGLD step and per draw of the observables, in CPU and in wall time.
- :func:`scaling_figure` (``scaling.json``): time and peak memory of each implementation against the number of
  chain-runs.
- :func:`group_bif_figure` (``group_bif.json``): time and memory of ``group_bif`` against the number of query
  tokens.

A record that lacks a field a figure needs raises a ``ValueError`` naming the file's field, so a benchmark whose
output changed is caught when the page is built rather than drawn wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from . import plotting

__all__ = ["IMPLEMENTATION_STYLES", "bif_benchmark_figure", "cpu_levers_figure", "group_bif_figure",
           "lever_speedups", "scaling_figure"]

#: Marker and book colour of each implementation in ``scaling.json``.
IMPLEMENTATION_STYLES = {"stagewise_batched": ("o", "estimate"), "stagewise_looped": ("^", "regular"),
                         "devinterp_sequential": ("s", "rmsprop")}


def _field(record: Mapping, *path: str, source: str):
    value = record
    for k, key in enumerate(path):
        if not isinstance(value, Mapping) or key not in value:
            raise ValueError(f"{source}: no field {'.'.join(path[:k + 1])!r}; rerun the benchmark that writes it")
        value = value[key]
    return value


def bif_benchmark_figure(result: Mapping) -> plt.Figure:
    """Left: every run's wall time (s) per mode, stagewise and devinterp side by side. Right: every pair's time
    ratio devinterp / stagewise, in wall and in CPU time, against parity (1). ``result``: the side-by-side record
    (``bif_vs_devinterp.json``), with ``modes.<mode>`` holding ``stagewise_wall_s``, ``devinterp_wall_s``,
    ``speedup_per_pair`` and ``speedup_cpu_per_pair``."""
    modes = _field(result, "modes", source="bif_vs_devinterp.json")
    if not modes:
        raise ValueError("bif_vs_devinterp.json: 'modes' is empty; rerun the benchmark")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 3.6), layout="constrained")
    names = list(modes)
    for k, mode in enumerate(names):
        series = {key: np.asarray(_field(result, "modes", mode, key, source="bif_vs_devinterp.json"), dtype=float)
                  for key in ("stagewise_wall_s", "devinterp_wall_s", "speedup_per_pair", "speedup_cpu_per_pair")}
        for offset, key, marker, color, label in (
                (-0.1, "stagewise_wall_s", "o", "estimate", "stagewise"),
                (0.1, "devinterp_wall_s", "s", "rmsprop", "devinterp")):
            ax1.plot(np.full(len(series[key]), k + offset), series[key], marker, ls="none",
                     color=plotting.COLORS[color], label=label if k == 0 else None)
        for offset, key, marker, color, label in (
                (-0.1, "speedup_per_pair", "o", "truth", "wall time"),
                (0.1, "speedup_cpu_per_pair", "^", "regular", "CPU time")):
            ax2.plot(np.full(len(series[key]), k + offset), series[key], marker, ls="none",
                     color=plotting.COLORS[color], label=label if k == 0 else None)
    ax1.set(xticks=range(len(names)), xticklabels=names, xlabel="sampler", ylabel="wall time per run (s)",
            ylim=(0, None), title="Each run, alternating")
    ax1.legend(fontsize=8.5)
    ax2.axhline(1, color="grey", lw=1, label="parity")
    top = max(max(np.max(modes[m]["speedup_per_pair"]), np.max(modes[m]["speedup_cpu_per_pair"])) for m in names)
    ax2.set(xticks=range(len(names)), xticklabels=names, xlabel="sampler",
            ylabel="devinterp / stagewise time", ylim=(0, max(2.0, 1.15 * top)), title="Time ratio per pair")
    ax2.legend(fontsize=8.5)
    return fig


def lever_speedups(levers: Mapping) -> dict[str, dict[str, float]]:
    """{"step: <option>" or "draw: <option>": {"CPU (ms)", "wall (ms)", "speedup, CPU", "speedup, wall"}} from
    ``cpu_levers.json``: each option's time per SGLD step or per draw and its median speedup over the default."""
    rows = {}
    for part, key in (("step", "per_step"), ("draw", "per_draw")):
        for name, entry in _field(levers, key, source="cpu_levers.json").items():
            rows[f"{part}: {name}"] = {
                "CPU (ms)": 1e3 * _field(entry, "cpu_s", source=f"cpu_levers.json {key}.{name}"),
                "wall (ms)": 1e3 * _field(entry, "wall_s", source=f"cpu_levers.json {key}.{name}"),
                "speedup, CPU": _field(entry, "speedup_cpu", "median", source=f"cpu_levers.json {key}.{name}"),
                "speedup, wall": _field(entry, "speedup_wall", "median", source=f"cpu_levers.json {key}.{name}")}
    return rows


def cpu_levers_figure(levers: Mapping) -> plt.Figure:
    """Horizontal bars: each sampler option's median speedup over the default path (×), in CPU and in wall time,
    per SGLD step (top) and per draw (bottom); ``levers``: the ``cpu_levers.json`` record."""
    rows = lever_speedups(levers)
    if not rows:
        raise ValueError("cpu_levers.json: no options under per_step or per_draw; rerun the benchmark")
    fig, ax = plt.subplots(figsize=(7.5, 4.0), layout="constrained")
    names = list(rows)
    y = np.arange(len(names))
    ax.barh(y - 0.2, [rows[n]["speedup, CPU"] for n in names], height=0.4, color=plotting.COLORS["estimate"],
            label="CPU time")
    ax.barh(y + 0.2, [rows[n]["speedup, wall"] for n in names], height=0.4, color=plotting.COLORS["rmsprop"],
            label="wall time")
    ax.axvline(1, color="grey", lw=1)
    threads = levers.get("torch_threads", "?")
    ax.set(yticks=y, yticklabels=names, ylabel="timed piece: option",
           xlabel="speedup over the default path (median of rounds, ×)",
           title=f"Sampler options ({levers.get('device_name', 'CPU')}, {threads} torch thread"
                 f"{'' if threads == 1 else 's'})")
    ax.set_xlim(0, 1.3 * max(max(r["speedup, CPU"], r["speedup, wall"]) for r in rows.values()))
    ax.invert_yaxis()
    ax.legend(fontsize=8.5, loc="upper right")
    return fig


def scaling_figure(scaling: Mapping) -> plt.Figure:
    """Left: wall (solid) and CPU time (dotted) per run against the chain-runs (chains × checkpoints), log-log.
    Right: peak memory (MiB). One line per implementation and device; ``scaling``: the ``scaling.json``
    record, whose ``scaling`` rows have chain_runs, impl, device, seconds, cpu_seconds and peak_mem_mib (rows
    with an ``error`` are left out)."""
    rows = [r for r in _field(scaling, "scaling", source="scaling.json") or [] if "error" not in r]
    if not rows:
        raise ValueError("scaling.json: no successful rows under 'scaling'; rerun benchmarks/scaling.py")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 3.6), layout="constrained")
    for impl, device in sorted({(r["impl"], r["device"]) for r in rows}):
        part = sorted((r for r in rows if (r["impl"], r["device"]) == (impl, device)),
                      key=lambda r: r["chain_runs"])
        marker, color = IMPLEMENTATION_STYLES.get(impl, ("x", "truth"))
        color = plotting.COLORS[color]
        x = [r["chain_runs"] for r in part]
        label = f"{impl.replace('_', ' ')} ({device})"
        ax1.plot(x, [r["seconds"] for r in part], marker + "-", color=color, label=label)
        ax1.plot(x, [r["cpu_seconds"] for r in part], marker + ":", color=color, alpha=0.6)
        ax2.plot(x, [r["peak_mem_mib"] for r in part], marker + "-", color=color, label=label)
    ax1.set(xscale="log", yscale="log", xlabel="chain-runs (chains × checkpoints)", ylabel="time per run (s)",
            title="Wall (solid) and CPU time (dotted)")
    ax2.set(xscale="log", yscale="log", xlabel="chain-runs (chains × checkpoints)", ylabel="peak memory (MiB)",
            title="Peak memory")
    ax1.legend(fontsize=7.5)
    threads = scaling.get("torch_threads", "?")
    fig.suptitle(f"{scaling.get('steps', '?')} SGLD steps per chain on {scaling.get('device_name', '?')} "
                 f"({threads} torch thread{'' if threads == 1 else 's'})", fontsize=11)
    return fig


def group_bif_figure(group: Mapping) -> plt.Figure:
    """Left: ``group_bif``'s wall and CPU time (s) against the query tokens, log-log. Right: the process's peak
    memory beside the size of the loss array (MiB). ``group``: the ``group_bif.json`` record, whose ``rows``
    have tokens, groups, draws, seconds, cpu_seconds, peak_rss_mib and losses_mib."""
    rows = sorted(_field(group, "rows", source="group_bif.json") or [], key=lambda r: r["tokens"])
    if not rows:
        raise ValueError("group_bif.json: no 'rows'; rerun benchmarks/bench_group_bif.py")
    tokens = [r["tokens"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 3.4), layout="constrained")
    ax1.plot(tokens, [r["seconds"] for r in rows], "o-", color=plotting.COLORS["estimate"], label="wall time")
    ax1.plot(tokens, [r["cpu_seconds"] for r in rows], "^:", color=plotting.COLORS["regular"], label="CPU time")
    ax1.set(xscale="log", yscale="log", xlabel="query tokens", ylabel="group_bif time (s)",
            title=f"{rows[0]['groups']:,} groups, {rows[0]['draws']:,} draws")
    ax1.legend(fontsize=8.5)
    ax2.plot(tokens, [r["peak_rss_mib"] for r in rows], "o-", color=plotting.COLORS["estimate"], label="peak RSS")
    ax2.plot(tokens, [r["losses_mib"] for r in rows], "s:", color=plotting.COLORS["truth"],
             label="the losses themselves")
    ax2.set(xscale="log", yscale="log", xlabel="query tokens", ylabel="memory (MiB)", title="Peak memory")
    ax2.legend(fontsize=8.5)
    threads = group.get("torch_threads", "?")
    fig.suptitle(f"group_bif on {group.get('device_name', '?')} ({threads} torch thread"
                 f"{'' if threads == 1 else 's'})", fontsize=11)
    return fig
