"""Each chart writes a readable PNG for three fake models."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import scipy.sparse as sp

from musicrec import metrics, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, returned):
    assert returned == path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # something was drawn, not a blank canvas


@pytest.fixture(scope="module")
def fake():
    rng = np.random.default_rng(0)
    n = 3000
    p_true = rng.beta(2, 2, n)
    y = (rng.random(n) < p_true).astype(np.int64)
    probs = {
        "prior": np.full(n, y.mean(), dtype=np.float32),
        "logreg": np.clip(p_true + rng.normal(0, 0.15, n), 0, 1).astype(np.float32),
        "lightgbm": np.clip(p_true + rng.normal(0, 0.05, n), 0, 1),
    }
    return y, probs, p_true


def test_roc_curves(fake, tmp_path):
    y, probs, p_true = fake
    path = tmp_path / "roc.png"
    _check_png(path, plots.roc_curves(y, probs, path, oracle=p_true))
    path2 = tmp_path / "sub" / "roc_no_oracle.png"  # missing folders are created
    _check_png(path2, plots.roc_curves(y, probs, path2))


def test_calibration_curves(fake, tmp_path):
    y, probs, _ = fake
    path = tmp_path / "calibration.png"
    _check_png(path, plots.calibration_curves(y, probs, path, bins=10))
    path2 = tmp_path / "calibration_uniform.png"
    _check_png(path2, plots.calibration_curves(y, probs, path2, bins=15, strategy="uniform"))


def test_confusion_matrices(fake, tmp_path):
    y, probs, _ = fake
    path = tmp_path / "confusion.png"
    _check_png(path, plots.confusion_matrices(y, probs, path, threshold=0.5))


def test_feature_importance(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"feature_{i}" for i in range(40)]
    path = tmp_path / "importance.png"
    _check_png(path, plots.feature_importance(names, rng.exponential(100, 40), path, top=30))
    with pytest.raises(ValueError):
        plots.feature_importance(names[:3], [1.0, 2.0], tmp_path / "bad.png")


def test_auc_by_segment(fake, tmp_path):
    y, probs, _ = fake
    rng = np.random.default_rng(2)
    segments = {"user_seen": np.where(rng.random(len(y)) < 0.8, "seen", "unseen"),
                "source_system_tab": rng.integers(0, 8, len(y))}
    segments["source_system_tab"][:5] = 99  # a small value, likely one class only
    y2 = y.copy()
    y2[:5] = 1
    seg = {name: metrics.auc_by_segment(y2, p, segments) for name, p in probs.items()}
    assert seg["prior"]["source_system_tab"][99]["auc"] is None
    path = tmp_path / "auc_by_segment.png"
    _check_png(path, plots.auc_by_segment(seg, path))


def test_ranking_curves(tmp_path):
    rng = np.random.default_rng(3)
    n_users, n_items, kmax = 200, 120, 20
    recs = np.stack([rng.permutation(n_items)[:kmax] for _ in range(n_users)])
    rel = sp.csr_matrix(rng.random((n_users, n_items)) < 0.1)
    args = (rng.integers(0, 100, n_items), rng.integers(0, 6, n_items),
            rng.integers(0, 30, n_items), 100)
    curves = metrics.ranking_curves(recs, rel, kmax, *args)
    path = tmp_path / "ranking.png"
    _check_png(path, plots.ranking_curves(curves, path))
    popular = np.tile(np.argsort(-args[0])[:kmax], (n_users, 1))
    multi = {"als": curves, "popularity": metrics.ranking_curves(popular, rel, kmax, *args),
             "random": metrics.ranking_curves(recs[::-1], rel, kmax, *args)}
    path2 = tmp_path / "ranking_multi.png"
    _check_png(path2, plots.ranking_curves(multi, path2))


def test_group_scatter_draws_the_second_seeds_retrains_beside_the_predictions(tmp_path, monkeypatch):
    """With the noise ceiling's retrains, each panel also holds a second retraining against the first
    and its title the ceiling's Spearman; without them, the predictions only."""
    import polars as pl

    from musicrec.influence import plots as iplots

    rng = np.random.default_rng(2)
    delta = rng.normal(size=20)
    rows = pl.DataFrame({"model": ["rf"] * 40, "half": ["A", "B"] * 20, "retrained": [True] * 40,
                         "predictor": ["set_model"] * 40, "delta_logloss": np.repeat(delta, 2),
                         "predicted_logloss": np.repeat(delta, 2) + rng.normal(size=40) * 0.1,
                         "delta_logloss_second_seed": np.repeat(delta, 2) + rng.normal(size=40)})
    summary = {"rf": {"predicted": {h: {"spearman": {"value": 0.9}} for h in "AB"},
                      "noise_ceiling": {"A": {"value": 0.61}, "B": {"value": 0.57}}}}
    drawn = []
    real_save = iplots.save_figure
    monkeypatch.setattr(iplots, "save_figure", lambda fig, path: (drawn.append(fig), real_save(fig, path))[1])
    _check_png(tmp_path / "g.png", iplots.group_scatter(rows, summary, tmp_path / "g.png"))
    ax = drawn[0].axes[0]
    assert len(ax.collections) == 3 and "second seed against first: A 0.61, B 0.57" in ax.get_title()
    _check_png(tmp_path / "h.png", iplots.group_scatter(rows.drop("delta_logloss_second_seed"),
                                                        {"rf": {"predicted": summary["rf"]["predicted"]}}, tmp_path / "h.png"))
    assert len(drawn[1].axes[0].collections) == 2 and "second seed" not in drawn[1].axes[0].get_title()
