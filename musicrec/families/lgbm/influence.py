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

import lightgbm as lgb
import numpy as np

from musicrec.families.lgbm.replay import Replay, Terms, leaf_value
from musicrec.influence.base import Estimator, model_threads, row_blocks
from musicrec.parallel import thread_map


BLOCK = 16_384          # train rows per block of the numpy passes: their arrays stay in cache
PREDICT_BLOCK = 5_000     # LightGBM casts its float64 leaf output to int32: small blocks stay in cache
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


class BoostingInfluence(Estimator):
    name = "lgbm"
    method = "fixed structure, leaf values recomputed without the row (other rows' gradients fixed)"

    def __init__(self, model, train, test):
        self.booster = model.booster_
        self.threads = model_threads(model)
        params = model.params()
        self.X, self.Xt = model._matrix(train), model._matrix(test)
        self.y = train.y.astype(np.float64)
        dump = self.booster.dump_model()
        info = dump["tree_info"]
        onehot = _onehot_features(dump, params.get("max_cat_to_onehot", 4))
        self.T = len(info)
        self.l1 = float(params.get("lambda_l1", 0.0))
        # the model's learning rate (LightGBM's dump reports shrinkage 1 for tree 0 of a reloaded model)
        self.shrink = np.full(self.T, float(model.learning_rate))
        self.values = [np.array([self.booster.get_leaf_output(t, l) for l in range(info[t]["num_leaves"])])
                       for t in range(self.T)]
        # LightGBM regularises a leaf made by a categorical split with lambda_l2 + cat_l2
        self.lam = [params["lambda_l2"]
                    + params["cat_l2"] * _categorical_leaves(t["tree_structure"], t["num_leaves"], onehot)
                    for t in info]
        # train leaves are kept (in the narrowest integer type) when they fit in CACHE_BYTES, else
        # predicted again block by block
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
        """LightGBM's raw scores, summed from the test leaves in tree order as LightGBM sums them
        (the same float64 additions: equal to its predict, which would take one more pass)."""
        f = np.zeros(len(self.Xt))
        for t in range(self.T):
            f += np.take(self.values[t], self.leaves_test[:, t])
        return f

    def train_logits(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.predict(self.X[np.asarray(rows)], raw_score=True)

    def _predict_leaves(self, rows, X=None) -> np.ndarray:
        """Leaf index of the rows in every tree, one contiguous column per tree.

        LightGBM returns leaf indices as float64 cast to int32: blocks of PREDICT_BLOCK rows stay
        in cache (500,000-row chunks took twice as long at 5M rows), one LightGBM thread per block
        on the model's threads."""
        X = (self.X if X is None else X)[rows]
        out = np.empty((len(X), self.T), dtype=self.leaf_dtype, order="F")

        def block(b: slice) -> None:
            out[b] = self.booster.predict(X[b], pred_leaf=True, num_threads=1).reshape(-1, self.T)

        thread_map(block, row_blocks(len(X), PREDICT_BLOCK), self.threads)
        return out

    def _block_leaves(self, rows: slice) -> np.ndarray:
        return self.leaves[rows] if self.cache else self._predict_leaves(rows)

    def leaf_rows(self, rows: np.ndarray) -> np.ndarray:
        """Leaves of some train rows in every tree (len(rows), T)."""
        rows = np.asarray(rows)
        return self.leaves[rows] if self.cache else self._predict_leaves(rows)

    def _forward(self, rows, leaves, score):
        """Yield (tree, leaf, g, h) of the rows tree by tree, at the scores before each tree.

        `score` (the caller's array) ends as the rows' raw score; g and h are overwritten at the
        next tree."""
        y = self.y[rows]
        score[:] = self.init
        terms = Terms(len(y))
        for t in range(self.T):
            g, h = terms(score, y)    # LightGBM keeps gradients and hessians in float32
            leaf = leaves[:, t].astype(np.intp)
            yield t, leaf, g, h
            if t == 0:
                np.take(self.values[0], leaf, out=score)   # tree 0's values include the init score
            else:
                score += self.values[t][leaf]

    def _over_blocks(self, work):
        """work(rows, leaves) for every block of train rows, in order, on the model's threads."""
        return thread_map(lambda b: work(b, self._block_leaves(b)), row_blocks(len(self.X), BLOCK), self.threads)

    def _sums_block(self, rows, leaves):
        G = [np.zeros(len(v)) for v in self.values]
        H = [np.zeros(len(v)) for v in self.values]
        for t, leaf, g, h in self._forward(rows, leaves, np.empty(len(leaves))):
            G[t] += np.bincount(leaf, g, minlength=len(G[t]))
            H[t] += np.bincount(leaf, h, minlength=len(H[t]))
        return G, H

    def _leaf_sums(self) -> None:
        parts = self._over_blocks(self._sums_block)
        self.G = [sum(part[0][t] for part in parts) for t in range(self.T)]
        self.H = [sum(part[1][t] for part in parts) for t in range(self.T)]
        err = 0.0
        for t in range(self.T):
            mine = leaf_value(self.G[t], self.H[t], self.lam[t], self.l1, self.shrink[t]) + (self.init if t == 0 else 0.0)
            err = max(err, float(np.abs(mine - self.values[t]).max() / np.abs(self.values[t]).max()))
        self.leaf_value_error = err  # our leaf formula vs LightGBM's stored leaves
        self._tables = [(G, H + lam, G / (H + lam)) for G, H, lam in zip(self.G, self.H, self.lam)]

    def extra_validation(self, loo: dict, rng: np.random.Generator) -> dict:
        return {"leaf_value_reproduction_error": self.leaf_value_error}

    def init_changes(self, rows) -> np.ndarray:
        n, s = len(self.y), self.y.sum()
        m = (s - self.y[rows]) / (n - 1)
        return np.log(m / (1 - m)) - self.init

    def _leaf_change(self, t, leaf, g, h) -> np.ndarray:
        """-shrink * ((G - g) / (H - h + lam) - G / (H + lam)) of each row's leaf in tree t."""
        G, Hl, step = self._tables[t]
        change = np.take(G, leaf) - g
        change /= np.take(Hl, leaf) - h
        change -= np.take(step, leaf)
        change *= -self.shrink[t]
        return change

    def _loo_block(self, rows, leaves, sums):
        n = len(leaves)
        out = {k: np.zeros(n) for k in sums}
        own, f = np.zeros(n), np.empty(n)   # the rows' own raw score change and raw score
        for t, leaf, g, h in self._forward(rows, leaves, f):
            change = self._leaf_change(t, leaf, g, h)
            for k, s in sums.items():
                out[k] += change * np.take(s[t], leaf)
            own += change
        return out, own, f

    def loo(self) -> dict[str, np.ndarray]:
        sums = {k: [np.bincount(self.leaves_test[:, t], d, minlength=len(self.values[t])) for t in range(self.T)]
                for k, d in self.directions.items()}
        parts = self._over_blocks(lambda rows, leaves: self._loo_block(rows, leaves, sums))
        d_init = self.init_changes(np.arange(len(self.y)))
        out = {k: d_init * d.sum() + np.concatenate([p[0][k] for p in parts]) for k, d in self.directions.items()}
        own = d_init + np.concatenate([p[1] for p in parts])
        out.update(self.own_terms(np.concatenate([p[2] for p in parts]), own))
        return out

    # -- removing a set of rows: the boosting sequence replayed (replay.py) -------------------------
    replay_rows: int | None = None     # rows whose knock-on gradients are replayed (influence.groups.replay_rows)

    def prepare_sets(self, valid, gcfg: dict) -> None:
        self.replay_rows, self._replay = gcfg["replay_rows"], None

    def group_logits_many(self, groups: list[np.ndarray]):
        """Test logits without each group, the boosting sequence replayed; groups on the model's threads."""
        if getattr(self, "_replay", None) is None:
            self._replay = Replay(self, self.replay_rows)
        groups = list(groups)
        gone = self._replay.removed_sums(groups)
        for s in range(0, len(groups), self.threads):
            yield from thread_map(lambda k: self._replay.test_logits(groups[k], gone[k]),
                                  range(s, min(len(groups), s + self.threads)), self.threads)

    def group_logits(self, rows: np.ndarray) -> np.ndarray:
        return next(self.group_logits_many([rows]))

    def _path(self, rows: np.ndarray):
        """(tree, leaf, g, h) of a few train rows in every tree."""
        leaves = self.leaf_rows(rows)
        return [(t, leaf, g.copy(), h.copy()) for t, leaf, g, h in self._forward(rows, leaves, np.empty(len(rows)))]

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        delta = np.repeat(self.init_changes(rows)[:, None], len(self.Xt), axis=1)
        for t, leaf, g, h in self._path(rows):
            change = self._leaf_change(t, leaf, g, h)
            delta += change[:, None] * (self.leaves_test[:, t][None, :] == leaf[:, None])
        return delta

    def refit_logits(self, row: int) -> tuple[np.ndarray, float]:
        """Write recomputed leaf values into a copy of the LightGBM booster and let it predict.

        The leaf's sums without the row are its sums minus the row's g and h (the sums themselves
        are checked against LightGBM's stored leaf values: leaf_value_error); the change is added
        to LightGBM's own stored leaf value, and LightGBM predicts."""
        booster = lgb.Booster(model_str=self.booster.model_to_string())
        d_init = float(self.init_changes(np.array([row]))[0])
        for t, leaf, g, h in self._path(np.array([row])):
            l, lam = int(leaf[0]), self.lam[t][leaf[0]]
            G1, H1 = self.G[t][l], self.H[t][l]
            change = -self.shrink[t] * ((G1 - g[0]) / (H1 - h[0] + lam) - G1 / (H1 + lam))
            if t == 0:
                for other in range(len(self.values[0])):
                    booster.set_leaf_output(0, other, self.values[0][other] + d_init + (change if other == l else 0))
            else:
                booster.set_leaf_output(t, l, self.values[t][l] + change)
        return (booster.predict(self.Xt, raw_score=True, num_threads=self.threads),
                float(booster.predict(self.X[row:row + 1], raw_score=True)[0]))
