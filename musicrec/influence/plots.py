"""Figures of stage 06: LOO distributions, estimate vs exact, removal curves, ablations, groups."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from musicrec.outputs.common import Comparison  # noqa: E402
from musicrec.plots import model_colours, save_figure  # noqa: E402


def loo_distributions(loo: dict[str, np.ndarray], path) -> Path:
    """Histogram of each model's LOO log-loss influence (symmetric log axis: heavy tails)."""
    names = list(loo)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    colours = model_colours(names)
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
        _sparse_symlog_ticks(ax)
    fig.tight_layout()
    return save_figure(fig, path)


def estimate_vs_exact(pairs: dict[str, tuple[np.ndarray, np.ndarray, Comparison]], path) -> Path:
    """Scatter of estimated vs exactly retrained LOO change, per model, with the y = x line."""
    names = list(pairs)
    fig, axes = plt.subplots(1, len(names), figsize=(4.0 * len(names), 3.8), squeeze=False)
    colours = model_colours(names)
    for ax, name in zip(axes[0], names):
        est, exact, stats = pairs[name]
        ax.scatter(exact, est, s=12, alpha=0.7, color=colours[name])
        lo, hi = min(est.min(), exact.min()), max(est.max(), exact.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
        sp = stats.spearman
        ci = sp.ci95
        title = name if sp.value is None else f"{name}: Spearman {sp.value:.3f}, n = {sp.n}"
        if ci:
            title += f"\n95% CI [{ci[0]:.2f}, {ci[1]:.2f}]"
        ax.set(title=title, xlabel="library refit / retraining", ylabel="estimate")
        ax.title.set_fontsize(9)
        ax.ticklabel_format(style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    return save_figure(fig, path)


def removal_curves(removal: dict[str, dict], path) -> Path:
    """Held-out test log-loss / AUROC change after retraining without the top-x% harmful / helpful
    / random rows: the mean over the two test halves (selected on one, scored on the other), with
    each half's value as a thin line."""
    names = list(removal)
    fig, axes = plt.subplots(2, len(names), figsize=(4.0 * len(names), 6.4), squeeze=False)
    styles = {"harmful": ("tab:green", "-"), "harmful_iterative": ("tab:blue", ":"),
              "helpful": ("tab:red", "-"), "random": ("0.4", "--")}
    for col, name in enumerate(names):
        for row, metric in enumerate(("logloss", "auc")):
            ax = axes[row, col]
            for kind, (colour, ls) in styles.items():
                cells = removal[name].get(kind)
                if not cells:
                    continue
                if kind == "harmful_iterative":
                    cells = {f: {"mean": v, **{f"scored_on_{h}": cells[f"scored_on_{h}"][f] for h in "AB"}}
                             for f, v in cells["mean"].items()}
                x = [float(f) * 100 for f in cells]
                ax.plot(x, [c["mean"][metric] for c in cells.values()], marker="o", color=colour, ls=ls, label=kind)
                for h in "AB":
                    ax.plot(x, [c[f"scored_on_{h}"][metric] for c in cells.values()], color=colour, ls=ls,
                            lw=0.6, alpha=0.5)
            ax.axhline(0, color="k", lw=0.6)
            ax.set(title=f"{name} (held out: mean of 2 halves)", xlabel="% of training rows removed",
                   ylabel=f"test {metric} change")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def ablation_curves(runs: pl.DataFrame, path) -> Path:
    """Random ablations: mean +- sd over repeats and both test halves of the retrained change per
    fraction, and (dotted) the mean predicted change."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    runs = runs.filter(pl.col("retrained"))
    names = runs["model"].unique(maintain_order=True).to_list()
    colours = model_colours(names)
    for ax, metric in zip(axes, ("logloss", "auc")):
        for name in names:
            g = (runs.filter(pl.col("model") == name).group_by("fraction")
                 .agg(pl.col(f"delta_{metric}").mean().alias("m"), pl.col(f"delta_{metric}").std().alias("s"),
                      pl.col("predicted_logloss").mean().alias("p")).sort("fraction"))
            x = g["fraction"].to_numpy() * 100
            m, s = g["m"].to_numpy(), np.nan_to_num(g["s"].to_numpy())
            ax.plot(x, m, color=colours[name], label=name)
            ax.fill_between(x, m - s, m + s, color=colours[name], alpha=0.2)
            if metric == "logloss":
                ax.plot(x, g["p"].to_numpy(), color=colours[name], ls=":", lw=1)
        ax.axhline(0, color="k", lw=0.6)
        title = "random ablations (logloss); dotted: predicted" if metric == "logloss" else "random ablations (auc)"
        ax.set(xlabel="% of training rows removed at random", ylabel=f"test {metric} change (per half)", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def group_scatter(groups: pl.DataFrame, summary: dict, path) -> Path:
    """Predicted vs retrained change of a test half's log-loss, one panel per model: every
    retrained group and random ablation on both halves, with y = x and the Spearman per half."""
    groups = groups.filter(pl.col("retrained"))
    names = groups["model"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 4.2), squeeze=False)
    colours = model_colours(names)
    for ax, name in zip(axes[0], names):
        g = groups.filter(pl.col("model") == name)
        for h, marker in (("A", "o"), ("B", "^")):
            sub = g.filter(pl.col("half") == h)
            ax.scatter(sub["delta_logloss"], sub["predicted_logloss"], s=14, alpha=0.7, marker=marker,
                       color=colours[name], label=f"half {h}")
        twice = (g.filter(pl.col("delta_logloss_second_seed").is_not_null())
                 if "delta_logloss_second_seed" in g.columns else g.clear())
        if twice.height:   # the noise ceiling: a second retraining against the first, on the same axes
            ax.scatter(twice["delta_logloss"], twice["delta_logloss_second_seed"], s=16, marker="x", color="0.55",
                       linewidths=0.8, label="second seed's retrain (y)")
        ys = pl.concat([g["predicted_logloss"], twice["delta_logloss_second_seed"]]) if twice.height else g["predicted_logloss"]
        lo = min(g["delta_logloss"].min(), ys.min())
        hi = max(g["delta_logloss"].max(), ys.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
        ax.set_xscale("symlog", linthresh=_linthresh(g["delta_logloss"].to_numpy()))
        ax.set_yscale("symlog", linthresh=_linthresh(g["predicted_logloss"].to_numpy()))
        _sparse_symlog_ticks(ax)
        sp = summary.get(name, {}).get("predicted", {})
        text = ", ".join(f"{h} {sp[h]['spearman']['value']:.2f}" for h in ("A", "B")
                         if sp.get(h, {}).get("spearman", {}).get("value") is not None)
        ceil = summary.get(name, {}).get("noise_ceiling") or {}
        ceiling = ", ".join(f"{h} {ceil[h]['value']:.2f}" for h in ("A", "B") if (ceil.get(h) or {}).get("value") is not None)
        ax.set(title=f"{name}: Spearman {text}" + (f"\nsecond seed against first: {ceiling}" if ceiling else "") +
               f"\n(predictor: {g['predictor'][0]}, n = {g.height // 2} per half)",
               xlabel="retrained change of half's log-loss",
               ylabel="predicted change" + (" (x: second seed's retrain)" if twice.height else ""))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _linthresh(v: np.ndarray) -> float:
    v = np.abs(v[np.isfinite(v) & (v != 0)])
    return float(np.quantile(v, 0.1)) if len(v) else 1e-6


def _sparse_symlog_ticks(ax) -> None:
    """Symmetric-log axes put a tick label at every decade down to the linear band and they
    overlap around zero: keep zero and at most three decades on each side, and no minor ticks."""
    from matplotlib.ticker import NullLocator, SymmetricalLogLocator

    for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.set_xlim), (ax.yaxis, ax.get_yscale(), ax.set_ylim)):
        if scale != "symlog":
            continue
        t = axis.get_transform()
        lo, hi = axis.get_view_interval()
        ticks = SymmetricalLogLocator(linthresh=t.linthresh, base=10, subs=[1.0]).tick_values(lo, hi)
        ticks = [x for x in ticks if lo <= x <= hi and abs(x) >= t.linthresh]
        # every other decade from the outermost inwards, at most two a side
        pos = sorted((x for x in ticks if x > 0), reverse=True)[::2][:2]
        neg = sorted((x for x in ticks if x < 0))[::2][:2]
        axis.set_ticks(sorted(neg + ([0.0] if lo <= 0 <= hi else []) + pos))
        axis.set_minor_locator(NullLocator())   # a minor tick per unit of every decade: hundreds, unread
        limits(lo, hi)
        axis.set_tick_params(labelsize=7)


def group_extremes(groups: pl.DataFrame, path, k: int = 8) -> Path:
    """The meaningful groups whose removal is predicted to lower (help) and raise (hurt) the test
    log-loss most, one panel per model: predicted change (bars, mean of the two test halves, with
    the halves' intervals as whiskers) and the retrained change where the group was retrained."""
    g = (groups.filter(pl.col("kind") != "random_ablation")
         .group_by("model", "label", "rows", maintain_order=True)
         .agg(pl.col("predicted_logloss").mean().alias("p"), pl.col("delta_logloss").mean().alias("r"),
              pl.col("predicted_logloss").min().alias("lo"), pl.col("predicted_logloss").max().alias("hi")))
    names = g["model"].unique(maintain_order=True).to_list()
    colours = model_colours(names)
    # one panel per row: the groups' names are long and need the figure's width beside their bars
    fig, axes = plt.subplots(len(names), 1, figsize=(10, len(names) * (0.26 * 2 * k + 1.4)), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes[:, 0], names):
        sub = g.filter(pl.col("model") == name).sort("p")
        sub = pl.concat([sub.head(k), sub.tail(k)]).unique(maintain_order=True) if sub.height > 2 * k else sub
        y = np.arange(sub.height)
        p = sub["p"].to_numpy()
        ax.barh(y, p, color=[colours[name] if v < 0 else "0.6" for v in p], height=0.7)
        ax.errorbar(p, y, xerr=[p - sub["lo"].to_numpy(), sub["hi"].to_numpy() - p], fmt="none", ecolor="k",
                    lw=0.6, capsize=2)
        done = [(v, i) for i, v in enumerate(sub["r"].to_list()) if v is not None]
        if done:
            ax.plot(*zip(*done), "kD", ms=4, label="retrained")
            ax.legend(fontsize=7, loc="lower right")
        ax.axvline(0, color="k", lw=0.6)
        ax.set_yticks(y, [f"{lab} (n={n:,})" for lab, n in zip(sub["label"].to_list(), sub["rows"].to_list())],
                      fontsize=7)
        ax.set_title(f"{name}: removing the group, predicted\n(coloured: test log-loss falls = the group hurts)",
                     fontsize=9)
        ax.set_xlabel("change of test log-loss (halves A, B: whiskers)", fontsize=8)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    return save_figure(fig, path)
