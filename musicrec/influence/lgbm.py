"""LightGBM: tree structure held fixed, leaf values recomputed without the row.

A LightGBM leaf value is one Newton step, -shrinkage * G / (H + lambda_l2 [+ cat_l2 below a
categorical split]), over the gradients g
and hessians h of the rows in the leaf at the scores before that tree (tree 0 also carries the
boost-from-average init score, log-odds of the label mean). Removing row i takes its g and h out of
its leaf in every tree and changes the init score. Later trees are treated as follows: every other
row's gradients stay at the values they had in the original model (the knock-on change of their
gradients through the earlier trees' changed leaves is not propagated), so each tree's change is
the direct effect of the row's own g and h. The test metric's gradient is summed per (tree, leaf)
first, so a row costs O(trees).
"""
from __future__ import annotations

import numpy as np
import lightgbm as lgb

from musicrec.influence.base import Estimator


def _categorical_leaves(node: dict, n_leaves: int) -> np.ndarray:
    """1.0 for each leaf whose parent split is categorical (decision type '=='), else 0.0."""
    out = np.zeros(n_leaves)
    stack = [(node, False)]
    while stack:
        nd, cat_parent = stack.pop()
        if "leaf_index" in nd:
            out[nd["leaf_index"]] = float(cat_parent)
            continue
        cat = nd.get("decision_type") == "=="
        stack += [(nd["left_child"], cat), (nd["right_child"], cat)]
    return out


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class BoostingInfluence(Estimator):
    name = "lgbm"
    method = "fixed structure, leaf values recomputed without the row (other rows' gradients fixed)"

    def __init__(self, model, train, test):
        self.booster = model.booster_
        params = model.params()
        self.X, self.Xt = model._matrix(train), model._matrix(test)
        self.y = train.y.astype(np.float64)
        info = self.booster.dump_model()["tree_info"]
        self.T = len(info)
        # the model's learning rate (LightGBM's dump reports shrinkage 1 for tree 0 of a reloaded model)
        self.shrink = np.full(self.T, float(model.learning_rate))
        self.values = [np.array([self.booster.get_leaf_output(t, l) for l in range(info[t]["num_leaves"])])
                       for t in range(self.T)]
        # LightGBM regularises a leaf made by a categorical split with lambda_l2 + cat_l2
        self.lam = [params["lambda_l2"] + params["cat_l2"] * _categorical_leaves(t["tree_structure"], t["num_leaves"])
                    for t in info]
        self.leaves = self.booster.predict(self.X, pred_leaf=True).reshape(len(self.X), self.T)
        self.leaves_test = self.booster.predict(self.Xt, pred_leaf=True).reshape(len(self.Xt), self.T)
        self.ybar = self.y.mean()
        self.init = np.log(self.ybar / (1 - self.ybar))
        self._leaf_sums()
        super().__init__(model, train, test)

    def test_logits(self) -> np.ndarray:
        return self.booster.predict(self.Xt, raw_score=True)

    def _forward(self, rows=None):
        """Yield (tree, leaf, g, h) of the chosen rows tree by tree, at the scores before each tree."""
        leaves = self.leaves if rows is None else self.leaves[rows]
        y = self.y if rows is None else self.y[rows]
        score = np.full(len(leaves), self.init)
        acc = np.zeros(len(leaves))
        for t in range(self.T):
            p = _sigmoid(score)
            leaf = leaves[:, t]
            yield t, leaf, p - y, p * (1 - p)
            acc += self.values[t][leaf]   # tree 0's values include the init score
            score = acc

    def _leaf_sums(self) -> None:
        self.G, self.H, err = [], [], 0.0
        for t, leaf, g, h in self._forward():
            n = len(self.values[t])
            G, H = np.bincount(leaf, g, minlength=n), np.bincount(leaf, h, minlength=n)
            self.G.append(G)
            self.H.append(H)
            mine = -self.shrink[t] * G / (H + self.lam[t]) + (self.init if t == 0 else 0.0)
            err = max(err, float(np.abs(mine - self.values[t]).max() / np.abs(self.values[t]).max()))
        self.leaf_value_error = err  # our Newton step vs LightGBM's stored leaves (float32 gradients there)

    def init_changes(self, rows) -> np.ndarray:
        n, s = len(self.y), self.y.sum()
        m = (s - self.y[rows]) / (n - 1)
        return np.log(m / (1 - m)) - self.init

    def _leaf_change(self, t, leaf, g, h) -> np.ndarray:
        G, H, lam = self.G[t][leaf], self.H[t][leaf], self.lam[t][leaf]
        return -self.shrink[t] * ((G - g) / (H - h + lam) - G / (H + lam))

    def loo(self) -> dict[str, np.ndarray]:
        sums = {k: [np.bincount(self.leaves_test[:, t], d, minlength=len(self.values[t])) for t in range(self.T)]
                for k, d in self.directions.items()}
        d_init = self.init_changes(np.arange(len(self.y)))
        out = {k: d_init * d.sum() for k, d in self.directions.items()}
        for t, leaf, g, h in self._forward():
            change = self._leaf_change(t, leaf, g, h)
            for k in out:
                out[k] += change * sums[k][t][leaf]
        return out

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        delta = np.repeat(self.init_changes(rows)[:, None], len(self.Xt), axis=1)
        for t, leaf, g, h in self._forward(rows):
            change = self._leaf_change(t, leaf, g, h)
            delta += change[:, None] * (self.leaves_test[:, t][None, :] == leaf[:, None])
        return delta

    def refit_logits(self, row: int) -> np.ndarray:
        """Write recomputed leaf values into a copy of the LightGBM booster and let it predict.

        Leaf sums without the row are summed afresh over the other rows of the leaf (not by
        subtraction), and the change is added to LightGBM's own stored leaf value.
        """
        booster = lgb.Booster(model_str=self.booster.model_to_string())
        keep = np.ones(len(self.y), dtype=bool)
        keep[row] = False
        d_init = float(self.init_changes(np.array([row]))[0])
        for t, leaf, g, h in self._forward():
            l = leaf[row]
            in_leaf = leaf == l
            G1, H1 = g[in_leaf].sum(), h[in_leaf].sum()
            G0, H0 = g[in_leaf & keep].sum(), h[in_leaf & keep].sum()
            lam = self.lam[t][l]
            change = -self.shrink[t] * (G0 / (H0 + lam) - G1 / (H1 + lam))
            if t == 0:
                for other in range(len(self.values[0])):
                    booster.set_leaf_output(0, other, self.values[0][other] + d_init + (change if other == l else 0))
            else:
                booster.set_leaf_output(t, int(l), self.values[t][l] + change)
        return booster.predict(self.Xt, raw_score=True)
