"""Figures of stage 06: LOO distributions, estimate vs exact, removal curves, ablations, groups."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from musicrec.plots import _colours, _save  # noqa: E402


def loo_distributions(loo: dict[str, np.ndarray], path) -> Path:
    """Histogram of each model's LOO log-loss influence (symmetric log axis: heavy tails)."""
    names = list(loo)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    colours = _colours(names)
    for ax, name in zip(axes[0], names):
        v = loo[name]
        lim = np.abs(v).max() or 1.0
        lin = np.quantile(np.abs(v), 0.5) or lim / 1e3
        bins = np.concatenate([-np.geomspace(lim, lin, 40), np.linspace(-lin, lin, 21)[1:-1], np.geomspace(lin, lim, 40)])
        ax.hist(v, bins=bins, color=colours[name])
        ax.set_xscale("symlog", linthresh=lin)
        ax.set_yscale("log")
        ax.axvline(0, color="k", lw=0.8)
        ax.set(title=f"{name}: LOO test log-loss change", xlabel="loss without row - loss with row", ylabel="rows")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return _save(fig, path)


def estimate_vs_exact(pairs: dict[str, tuple[np.ndarray, np.ndarray, dict]], path) -> Path:
    """Scatter of estimated vs exactly retrained LOO change, per model, with the y = x line."""
    names = list(pairs)
    fig, axes = plt.subplots(1, len(names), figsize=(4.0 * len(names), 3.8), squeeze=False)
    colours = _colours(names)
    for ax, name in zip(axes[0], names):
        est, exact, stats = pairs[name]
        ax.scatter(exact, est, s=12, alpha=0.7, color=colours[name])
        lo, hi = min(est.min(), exact.min()), max(est.max(), exact.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
        sp = stats.get("spearman")
        ax.set(title=f"{name}: Spearman {sp:.3f}" if sp is not None else name,
               xlabel="exact retraining", ylabel="estimate")
        ax.ticklabel_format(style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    return _save(fig, path)


def removal_curves(removal: dict[str, dict], path) -> Path:
    """Test log-loss change after retraining without the top-x% harmful / helpful / random rows."""
    names = list(removal)
    fig, axes = plt.subplots(2, len(names), figsize=(4.0 * len(names), 6.4), squeeze=False)
    styles = {"harmful": ("tab:green", "-"), "harmful_iterative": ("tab:blue", ":"),
              "helpful": ("tab:red", "-"), "random": ("0.4", "--")}
    for col, name in enumerate(names):
        for row, metric in enumerate(("logloss", "auc")):
            ax = axes[row, col]
            for kind, (colour, ls) in styles.items():
                if kind not in removal[name]:
                    continue
                cells = removal[name][kind]
                x = [float(f) * 100 for f in cells]
                ax.plot(x, [c[metric] for c in cells.values()], marker="o", color=colour, ls=ls, label=kind)
            ax.axhline(0, color="k", lw=0.6)
            ax.set(title=f"{name}", xlabel="% of training rows removed", ylabel=f"test {metric} change")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def ablation_curves(runs: pl.DataFrame, path) -> Path:
    """Random ablations: mean +- sd of the retrained change per fraction, and the LOO-sum prediction."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = runs["model"].unique(maintain_order=True).to_list()
    colours = _colours(names)
    for ax, metric in zip(axes, ("logloss", "auc")):
        for name in names:
            g = (runs.filter(pl.col("model") == name).group_by("fraction")
                 .agg(pl.col(f"delta_{metric}").mean().alias("m"), pl.col(f"delta_{metric}").std().alias("s"),
                      pl.col(f"predicted_{metric}").mean().alias("p")).sort("fraction"))
            x = g["fraction"].to_numpy() * 100
            m, s = g["m"].to_numpy(), np.nan_to_num(g["s"].to_numpy())
            ax.plot(x, m, color=colours[name], label=name)
            ax.fill_between(x, m - s, m + s, color=colours[name], alpha=0.2)
            ax.plot(x, g["p"].to_numpy(), color=colours[name], ls=":", lw=1)
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel="% of training rows removed at random", ylabel=f"test {metric} change",
               title=f"random ablations ({metric}); dotted: sum of LOO estimates")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def group_bars(groups: pl.DataFrame, kind: str, path) -> Path:
    """One bar chart for one kind of meaningful group: change of test log-loss and AUROC per model."""
    g = groups.filter(pl.col("kind") == kind)
    values = g["group"].unique(maintain_order=True).to_list()
    names = g["model"].unique(maintain_order=True).to_list()
    colours = _colours(names)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(values) * 2), 4))
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(values))
    for ax, metric in zip(axes, ("logloss", "auc")):
        for i, name in enumerate(names):
            sub = g.filter(pl.col("model") == name)
            lookup = dict(zip(sub["group"].to_list(), sub[f"delta_{metric}"].to_list()))
            ax.bar(x - 0.4 + width * (i + 0.5), [lookup.get(v, np.nan) for v in values], width, color=colours[name],
                   label=name)
        rows = dict(zip(g["group"].to_list(), g["rows"].to_list()))
        ax.set_xticks(x, [f"{v}\n(n={rows[v]:,})" for v in values], rotation=30 if len(values) > 4 else 0,
                      ha="right" if len(values) > 4 else "center", fontsize=7)
        ax.axhline(0, color="k", lw=0.6)
        ax.set(ylabel=f"test {metric} change", title=f"retrained without each {kind} group ({metric})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
