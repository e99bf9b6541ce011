"""Evaluation charts for stage 05, drawn with matplotlib's file-only Agg backend.

Every function takes its data and an output path, writes one PNG (dpi 110), closes the figure
so a long run does not pile up memory, and returns the path. Models are keyed by name and keep
one colour each across charts (the order the dict gives them). Curves over millions of rows
are thinned before drawing: the picture is the same, the file and the time are not.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve  # noqa: E402

DPI = 110
MAX_CURVE_POINTS = 2000


def model_colours(names) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def save_figure(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_CURVE_POINTS evenly spaced points of a curve, ends kept."""
    if len(x) <= MAX_CURVE_POINTS:
        return x, y
    idx = np.unique(np.linspace(0, len(x) - 1, MAX_CURVE_POINTS).round().astype(np.int64))
    return x[idx], y[idx]


def _binary(y_true) -> np.ndarray:
    return np.asarray(y_true).astype(np.int64, copy=False).ravel()


def roc_curves(y_true, probs: dict[str, np.ndarray], path, oracle: np.ndarray | None = None) -> Path:
    """ROC curves of all models on one chart, AUC in the legend, chance diagonal; `oracle`
    (the generating probabilities of synthetic data) is drawn dashed as the attainable ceiling."""
    y = _binary(y_true)
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="chance (AUC 0.500)")
    one_class = y.min() == y.max()
    colours = model_colours(probs)
    series = [(name, p, dict(color=colours[name], lw=1.8)) for name, p in probs.items()]
    if oracle is not None:
        series.append(("oracle (true p)", oracle, dict(color="k", ls="--", lw=1.5)))
    for name, p, style in series:
        p = np.asarray(p, dtype=np.float64).ravel()
        if one_class:
            ax.plot([], [], label=f"{name} (AUC undefined)", **style)
            continue
        fpr, tpr, _ = roc_curve(y, p)
        fpr, tpr = _thin(fpr, tpr)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})", **style)
    ax.set(xlim=(0, 1), ylim=(0, 1.005), xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC curves ({len(y):,} test rows)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    return save_figure(fig, path)


def calibration_curves(y_true, probs: dict[str, np.ndarray], path, bins: int = 10,
                       strategy: str = "quantile") -> Path:
    """Reliability diagram (observed replay rate vs mean predicted probability per bin, bins by
    `strategy` 'quantile' or 'uniform') for all models, and the distribution of predictions."""
    y = _binary(y_true)
    colours = model_colours(probs)
    fig, (ax, axh) = plt.subplots(1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1, 1.1]})
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfectly calibrated")
    edges = np.linspace(0, 1, 51)
    for name, p in probs.items():
        p = np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, 1.0)
        frac, mean_pred = calibration_curve(y, p, n_bins=bins, strategy=strategy)
        ax.plot(mean_pred, frac, marker="o", ms=4, lw=1.6, color=colours[name], label=name)
        axh.hist(p, bins=edges, histtype="step", lw=1.6, color=colours[name], label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability (per bin)",
           ylabel="observed replay rate", title=f"Reliability ({bins} {strategy} bins)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    axh.set(xlim=(0, 1), xlabel="predicted probability", ylabel="rows (log scale)",
            title="Distribution of predictions")
    axh.set_yscale("log")
    axh.grid(alpha=0.3)
    axh.legend(loc="upper center", fontsize=9, framealpha=0.9)
    return save_figure(fig, path)


def confusion_matrices(y_true, probs: dict[str, np.ndarray], path, threshold: float = 0.5) -> Path:
    """One confusion matrix per model at `threshold`: cells coloured and labelled by the share
    of their true-class row, with the raw count underneath."""
    y = _binary(y_true)
    n = len(probs)
    ncols = min(n, 3)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (name, p) in zip(axes.ravel(), probs.items()):
        pred = (np.asarray(p, dtype=np.float64).ravel() >= threshold).astype(np.int64)
        cm = confusion_matrix(y, pred, labels=[0, 1])
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{share[i, j]:.1%}\n{cm[i, j]:,}", ha="center", va="center",
                        fontsize=9, color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks([0, 1], ["0", "1"])
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set(xlabel="predicted", ylabel="true", title=name)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"Confusion matrices at threshold {threshold:g} (share of true row, count)")
    fig.tight_layout()
    return save_figure(fig, path)


def feature_importance(names, gains, path, top: int = 30) -> Path:
    """Horizontal bars of the `top` features by (LightGBM) gain, as a share of the total gain."""
    names = np.asarray(list(names), dtype=object)
    g = np.asarray(gains, dtype=np.float64).ravel()
    if len(names) != len(g):
        raise ValueError(f"{len(names)} feature names for {len(g)} importances")
    total = g.sum()
    order = np.argsort(-g, kind="stable")[:top]
    share = 100.0 * g[order] / total if total > 0 else np.zeros(len(order))
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(order) + 1.4))
    ypos = np.arange(len(order))[::-1]
    ax.barh(ypos, share, color="tab:blue")
    ax.set_yticks(ypos, [str(s) for s in names[order]], fontsize=9)
    for yy, s in zip(ypos, share):
        ax.text(s, yy, f" {s:.1f}%", va="center", fontsize=8)
    ax.set_xlim(0, max(share.max() * 1.15, 1e-9) if len(share) else 1)
    ax.set(xlabel="share of total gain (%)",
           title=f"Feature importance (gain), top {len(order)} of {len(g)}")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def auc_by_segment(segment_metrics: dict, path) -> Path:
    """AUC per segment value, one panel per segment, one bar colour per model.

    segment_metrics: {model: metrics.auc_by_segment(...) output}. A value whose AUC is
    undefined (one class) gets no bar and 'n/a'; tick labels carry the row counts.
    """
    models = list(segment_metrics)
    colours = model_colours(models)
    segments = list(dict.fromkeys(s for m in models for s in segment_metrics[m]))
    fig, axes = plt.subplots(len(segments), 1, figsize=(10, 3.6 * len(segments)), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, seg in zip(axes[:, 0], segments):
        values = list(dict.fromkeys(v for m in models for v in segment_metrics[m].get(seg, {})))
        x = np.arange(len(values))
        aucs = []
        for i, m in enumerate(models):
            cells = segment_metrics[m].get(seg, {})
            a = np.array([np.nan if cells.get(v, {}).get("auc") is None else cells[v]["auc"]
                          for v in values], dtype=np.float64)
            aucs.append(a)
            xs = x - 0.4 + width * (i + 0.5)
            ax.bar(xs, np.nan_to_num(a), width=width, color=colours[m], label=m)
            for xx in xs[np.isnan(a)]:
                ax.text(xx, 0.5, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        rows = {}
        for m in models:
            for v, cell in segment_metrics[m].get(seg, {}).items():
                rows.setdefault(v, cell.get("rows"))
        labels = [f"{v}\n(n={rows[v]:,})" if rows.get(v) is not None else str(v) for v in values]
        ax.set_xticks(x, labels, fontsize=8, rotation=30 if len(values) > 4 else 0,
                      ha="right" if len(values) > 4 else "center")
        finite = np.concatenate(aucs) if aucs else np.array([])
        finite = finite[np.isfinite(finite)]
        lo = min(0.45, finite.min() - 0.05) if finite.size else 0.0
        hi = min(1.0, finite.max() + 0.08) if finite.size else 1.0
        ax.set_ylim(max(lo, 0.0), max(hi, 0.6))
        ax.axhline(0.5, color="0.5", lw=1, ls=":")
        ax.set(ylabel="AUC", title=f"AUC by {seg}")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


_PANELS = (
    ("Accuracy of the top-k list", ("ndcg", "precision", "recall", "map")),
    ("Diversity of the top-k list", ("genre_diversity", "artist_diversity", "ils_genre", "ils_artist")),
    ("Catalogue coverage", ("coverage",)),
)
_STYLES = ("-", "--", "-.", ":")


def ranking_curves(curves: dict, path) -> Path:
    """Ranking metrics against the cut-off k: accuracy (NDCG, precision, recall, MAP),
    list diversity (genre / artist diversity, genre ILS) and catalogue coverage.

    curves: metrics.ranking_curves output (arrays over k, with "k"), or {model: such dict}
    to compare recommenders (colour = model, line style = metric). Missing metrics are skipped.
    """
    multi = all(isinstance(v, dict) for v in curves.values())
    per_model = curves if multi else {"": curves}
    colours = model_colours(per_model)
    metric_colours = model_colours([m for _, ms in _PANELS for m in ms])
    panels = [(t, ms) for t, ms in _PANELS
              if any(m in c for c in per_model.values() for m in ms)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.4), squeeze=False)
    for ax, (title, metrics) in zip(axes[0], panels):
        for model, c in per_model.items():
            k = np.asarray(c.get("k", np.arange(1, len(next(iter(c.values()))) + 1)))
            for j, m in enumerate(metrics):
                if m not in c:
                    continue
                label = f"{model}: {m}" if multi else m
                ax.plot(k, np.asarray(c[m], dtype=np.float64), lw=1.8, label=label,
                        color=colours[model] if multi else metric_colours[m],
                        ls=_STYLES[j % len(_STYLES)] if multi else "-")
        ax.set(xlabel="k (list length)", ylabel="value", title=title)
        ax.set_xlim(left=1)
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if multi:  # many entries: below the panel, one column per model
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8,
                      ncol=len(per_model), frameon=False)
        else:
            ax.legend(loc="lower right" if metrics == ("coverage",) else "best", fontsize=8,
                      framealpha=0.9)
    fig.tight_layout()
    return save_figure(fig, path)
