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


CHUNK = 500_000
CACHE_BYTES = 2 << 30  # train leaves kept up to 2 GiB (5.2M rows x 341 trees in int8: 1.8 GB); beyond, LightGBM
# predicts them again for each pass, which took most of 06 at that size


def _onehot_features(model_dump: dict, max_cat_to_onehot: int = 4) -> set[int]:
    """Categorical features LightGBM splits one-vs-rest (few categories): no cat_l2 on those splits.

    LightGBM adds cat_l2 only in its many-vs-many categorical search; a feature with at most
    max_cat_to_onehot bins (the category values listed in feature_infos, -1 for "other"
    included) is split one-hot with plain lambda_l2.
    """
    infos = model_dump["feature_infos"]  # features LightGBM dropped (constant ones) are absent

    def n_categories(name: str) -> int:
        info = infos.get(name)
        return len(info.get("values", [])) if isinstance(info, dict) else 0

    return {j for j, name in enumerate(model_dump["feature_names"]) if 0 < n_categories(name) <= max_cat_to_onehot}


def _categorical_leaves(node: dict, n_leaves: int, onehot: set[int] = frozenset()) -> np.ndarray:
    """1.0 for each leaf whose parent split is a many-vs-many categorical split, else 0.0."""
    out = np.zeros(n_leaves)
    stack = [(node, False)]
    while stack:
        nd, cat_parent = stack.pop()
        if "leaf_index" in nd:
            out[nd["leaf_index"]] = float(cat_parent)
            continue
        cat = nd.get("decision_type") == "==" and nd["split_feature"] not in onehot
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
        dump = self.booster.dump_model()
        info = dump["tree_info"]
        onehot = _onehot_features(dump, params.get("max_cat_to_onehot", 4))
        self.T = len(info)
        # the model's learning rate (LightGBM's dump reports shrinkage 1 for tree 0 of a reloaded model)
        self.shrink = np.full(self.T, float(model.learning_rate))
        self.values = [np.array([self.booster.get_leaf_output(t, l) for l in range(info[t]["num_leaves"])])
                       for t in range(self.T)]
        # LightGBM regularises a leaf made by a categorical split with lambda_l2 + cat_l2
        self.lam = [params["lambda_l2"]
                    + params["cat_l2"] * _categorical_leaves(t["tree_structure"], t["num_leaves"], onehot)
                    for t in info]
        # train leaves are kept (in the narrowest integer type) when they fit in CACHE_BYTES, else
        # predicted again chunk by chunk
        most = max(t["num_leaves"] for t in info)
        self.leaf_dtype = np.int8 if most <= 127 else np.int16 if most <= 32767 else np.int32
        self.cache = len(self.X) * self.T * np.dtype(self.leaf_dtype).itemsize <= CACHE_BYTES
        self.leaves = self._predict_leaves(slice(None)) if self.cache else None
        self.leaves_test = self._predict_leaves(slice(None), self.Xt)
        self.ybar = self.y.mean()
        self.init = np.log(self.ybar / (1 - self.ybar))
        self._leaf_sums()
        super().__init__(model, train, test)

    def test_logits(self) -> np.ndarray:
        return self.booster.predict(self.Xt, raw_score=True)

    def train_logits(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.predict(self.X[np.asarray(rows)], raw_score=True)

    def _predict_leaves(self, rows, X=None) -> np.ndarray:
        """Leaf index of the rows in every tree, one contiguous column per tree."""
        X = (self.X if X is None else X)[rows]
        out = np.empty((len(X), self.T), dtype=self.leaf_dtype, order="F")
        for s in range(0, len(X), CHUNK):
            out[s:s + CHUNK] = self.booster.predict(X[s:s + CHUNK], pred_leaf=True).reshape(-1, self.T)
        return out

    def _chunks(self):
        """Row slices of the train split (one slice when the leaves are cached)."""
        step = len(self.X) if self.cache else CHUNK
        return [slice(s, min(s + step, len(self.X))) for s in range(0, len(self.X), step)]

    def _forward(self, rows=None):
        """Yield (tree, leaf, g, h) of the chosen rows tree by tree, at the scores before each tree."""
        if rows is None:
            rows = slice(None)
        leaves = self.leaves[rows] if self.cache else self._predict_leaves(rows)
        y = self.y[rows]
        score = np.full(len(leaves), self.init)
        acc = np.zeros(len(leaves))
        for t in range(self.T):
            p = _sigmoid(score)
            leaf = leaves[:, t]
            yield t, leaf, p - y, p * (1 - p)
            acc += self.values[t][leaf]   # tree 0's values include the init score
            score = acc

    def _leaf_sums(self) -> None:
        self.G = [np.zeros(len(v)) for v in self.values]
        self.H = [np.zeros(len(v)) for v in self.values]
        for rows in self._chunks():
            for t, leaf, g, h in self._forward(rows):
                self.G[t] += np.bincount(leaf, g, minlength=len(self.values[t]))
                self.H[t] += np.bincount(leaf, h, minlength=len(self.values[t]))
        err = 0.0
        for t in range(self.T):
            mine = -self.shrink[t] * self.G[t] / (self.H[t] + self.lam[t]) + (self.init if t == 0 else 0.0)
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
        f, own = np.zeros(len(self.y)), d_init.copy()   # the rows' own raw score and its change
        for rows in self._chunks():
            for t, leaf, g, h in self._forward(rows):
                change = self._leaf_change(t, leaf, g, h)
                for k in self.directions:
                    out[k][rows] += change * sums[k][t][leaf]
                own[rows] += change
                f[rows] += self.values[t][leaf]
        out.update(self.own_terms(f, own))
        return out

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        delta = np.repeat(self.init_changes(rows)[:, None], len(self.Xt), axis=1)
        for t, leaf, g, h in self._forward(rows):
            change = self._leaf_change(t, leaf, g, h)
            delta += change[:, None] * (self.leaves_test[:, t][None, :] == leaf[:, None])
        return delta

    def refit_logits(self, row: int) -> tuple[np.ndarray, float]:
        """Write recomputed leaf values into a copy of the LightGBM booster and let it predict.

        When the train leaves are cached, the leaf sums with and without the row are summed afresh
        over the rows of the leaf (not by subtraction); the change is added to LightGBM's own
        stored leaf value, and LightGBM predicts.
        """
        booster = lgb.Booster(model_str=self.booster.model_to_string())
        d_init = float(self.init_changes(np.array([row]))[0])
        path = {t: (leaf[0], g[0], h[0]) for t, leaf, g, h in self._forward(np.array([row]))}
        fresh = self._forward() if self.cache else iter(())
        for t in range(self.T):
            l, g_i, h_i = path[t]
            if self.cache:
                _, leaf, g, h = next(fresh)
                in_leaf = leaf == l
                G1, H1 = g[in_leaf].sum(), h[in_leaf].sum()
                in_leaf[row] = False
                G0, H0 = g[in_leaf].sum(), h[in_leaf].sum()
            else:
                G1, H1 = self.G[t][l], self.H[t][l]
                G0, H0 = G1 - g_i, H1 - h_i
            lam = self.lam[t][l]
            change = -self.shrink[t] * (G0 / (H0 + lam) - G1 / (H1 + lam))
            if t == 0:
                for other in range(len(self.values[0])):
                    booster.set_leaf_output(0, other, self.values[0][other] + d_init + (change if other == l else 0))
            else:
                booster.set_leaf_output(t, int(l), self.values[t][l] + change)
        return booster.predict(self.Xt, raw_score=True), float(booster.predict(self.X[row:row + 1], raw_score=True)[0])
