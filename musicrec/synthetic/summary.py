"""Figures that check a generated set against its targets (sizes, target mean, oracle AUC, cold start)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from musicrec.synthetic.events import Simulation


# ---------------------------------------------------------------------------------------------
# summary figures
def cold_start_shares(user: np.ndarray, song: np.ndarray, fraction: float = 0.8) -> dict:
    """Shares of the distinct users/songs of the last (1 - fraction) rows unseen in the first part."""
    cut = int(round(fraction * user.size))

    def unseen(x):
        late = np.unique(x[cut:])
        return float(1.0 - np.isin(late, np.unique(x[:cut])).mean()) if late.size else 0.0
    return {"test_songs_unseen_share": unseen(song), "test_users_unseen_share": unseen(user)}


def top_user_share(user: np.ndarray, top: float = 0.01) -> float:
    """Share of rows made by the most active `top` share of users (of those with rows)."""
    counts = np.sort(np.bincount(user)[np.unique(user)])[::-1]
    return float(counts[: max(1, int(round(top * counts.size)))].sum() / user.size)


def _summary(sim: Simulation, target: np.ndarray, n_flipped: int, n_members: int, n_songs_csv: int) -> dict:
    """Figures to check a generated set against its targets: sizes, target mean (also of the first
    10k rows), oracle AUC of p_true vs the drawn train label, top-1% user row share, cold start on the
    80/20 time split of train.csv, share of each logit part in the logit variance, missing sources."""
    n = sim.n_train
    tr, te = slice(0, n), slice(n, None)
    r = sim.rows
    comps = {k: v[tr] for k, v in sim.components.items()}
    total_var = np.var(np.sum(list(comps.values()), axis=0))
    missing = {}
    for col, (vocab, code) in sim.codes.items():
        missing[col] = round(float((code[tr] >= len(vocab) - 2).mean()), 5)
    return {
        "preset": sim.params["preset"],
        "train_rows": n, "test_rows": int(r.user.size - n),
        "train_users": int(np.unique(r.user[tr]).size), "train_songs": int(np.unique(r.song[tr]).size),
        "test_users": int(np.unique(r.user[te]).size), "test_songs": int(np.unique(r.song[te]).size),
        "members_rows": n_members, "songs_rows": n_songs_csv,
        "target_mean": float(target.mean()),
        "label_mean_before_noise": float(sim.label[tr].mean()),
        "head_10k_target_mean": float(target[:10_000].mean()),
        "test_label_mean": float(sim.label[te].mean()) if r.user.size > n else None,
        "oracle_auc": float(roc_auc_score(sim.label[tr], sim.p_true[tr])),
        "flipped": n_flipped,
        "top1pct_user_row_share": top_user_share(r.user[tr]),
        "cold_start": cold_start_shares(r.user[tr], r.song[tr]),
        "logit_variance_share": {k: round(float(np.var(v) / total_var), 4) for k, v in comps.items()},
        "source_missing_share": missing,
    }


