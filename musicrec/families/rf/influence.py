"""Random forest: the row's bootstrap count removed from its leaf in every tree that drew it.

The forest's probability is the mean over trees of the leaf's weighted share of replays. With the
structure held fixed, removing row i (drawn b_ti times for tree t) changes tree t's leaf share to
(W1 - b y_i) / (W - b). The test metric's gradient, summed per (tree, leaf), turns that into one
number per tree, so a row costs O(trees). A set of rows is removed the same way, all at once
(every tree's leaf shares recomputed from the counts it keeps), not as a sum of single rows. A
Data-OOB value (mean out-of-bag probability of the row's own label over the trees that did not
draw it) is computed on the same pass as a cross-check.
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from musicrec.influence.base import Estimator, model_threads, sorted_rows
from musicrec.influence.losses import PROB_CLIP, logit
from musicrec.influence.noise import oob_suspicion
from musicrec.influence.stats import correlation


class ForestInfluence(Estimator):
    name = "rf"
    method = "fixed structure: bootstrap count removed from the leaf of every tree that drew the row"
    keeps_removed_rows = True

    def __init__(self, model, train, test):
        self.X = model.design_.transform(train, np.float32)
        self.Xt = model.design_.transform(test, np.float32)
        self.y = train.y.astype(np.float64)
        self.trees = model.trees_
        self.T = len(self.trees)
        self.p_test = model.predict_proba(test)[:, 1]
        super().__init__(model, train, test)

    def retrain_inputs(self):
        """The design this estimator already holds is the one retraining fits on (Model.prepare)."""
        return self.model.design_, self.X, self.train.y

    def test_logits(self) -> np.ndarray:
        return logit(self.p_test)

    def train_logits(self, rows: np.ndarray) -> np.ndarray:
        return logit(self.model._mean_proba(self.X[np.asarray(rows)]))   # predict_proba on the design held

    @staticmethod
    def _node_weights(tree) -> tuple[np.ndarray, np.ndarray]:
        """(W, W1): each node's bootstrap weight and its replays' weight."""
        W = tree.tree_.weighted_n_node_samples
        share = tree.tree_.value[:, 0, -1] if tree.n_classes_ == 2 else np.full(len(W), float(tree.classes_[0]))
        return W, share * W

    def _tree(self, t: int, rows=None):
        """Leaf of every train (or only `rows`) and test row, bootstrap counts and leaf class
        weights of tree t."""
        tree = self.trees[t]
        counts = self.model.bootstrap_counts(t, len(self.X))
        # the design matrices are C-ordered float32 without NaN: skip scikit-learn's per-call checks
        X = self.X if rows is None else self.X[rows]
        return (tree.apply(X, check_input=False), tree.apply(self.Xt, check_input=False),
                counts, *self._node_weights(tree))

    def _trees(self, rows=None, work=None):
        """`_tree` of every tree in order (or work(*_tree) where given), a few trees at a time on
        threads (tree.apply and numpy's loops release the GIL)."""
        n = model_threads(self.model)

        def one(t):
            tree = self._tree(t, rows)
            return tree if work is None else work(*tree)

        with ThreadPoolExecutor(n) as pool:
            for s in range(0, self.T, n):
                yield from pool.map(one, range(s, min(s + n, self.T)))

    def _share_changes(self, l, b, y, W, W1):
        """Change of the leaf share of rows in leaves l, drawn b times, with labels y, when removed."""
        left = W[l] - b
        new = np.where(left > 0, (W1[l] - b * y) / np.where(left > 0, left, 1.0), W1[l] / W[l])
        return np.where(b > 0, new - W1[l] / W[l], 0.0)

    def _tree_terms(self, leaf, leaf_test, counts, W, W1, weights):
        """One tree's part of every sum in loo(): metric changes, the rows' own share and its
        change, and the out-of-bag probability of the own label (NaN where the tree drew the row)."""
        delta = self._share_changes(leaf, counts, self.y, W, W1) / self.T
        metric = {k: delta * np.bincount(leaf_test, weights=e, minlength=len(W))[leaf] for k, e in weights.items()}
        own_share = W1[leaf] / W[leaf]
        p_oob = np.where(counts == 0, np.where(self.y == 1, own_share, 1 - own_share), np.nan)
        return metric, own_share, delta, p_oob

    def loo(self) -> dict[str, np.ndarray]:
        p = np.clip(self.p_test, PROB_CLIP, 1 - PROB_CLIP)
        # chain rule from the logit directions to the probability scale
        weights = {k: d / (p * (1 - p)) for k, d in self.directions.items()}
        out = {k: np.zeros(len(self.X)) for k in weights}
        oob_sum, oob_n = np.zeros(len(self.X)), np.zeros(len(self.X))
        share, d_share = np.zeros(len(self.X)), np.zeros(len(self.X))   # the rows' own forest share
        terms = self._trees(work=lambda *tree: self._tree_terms(*tree, weights))
        for metric, own_share, delta, p_oob in terms:   # summed in tree order: deterministic
            for k, v in metric.items():
                out[k] += v
            share += own_share / self.T
            d_share += delta
            oob = ~np.isnan(p_oob)
            oob_sum[oob] += p_oob[oob]
            oob_n += oob
        self.data_oob = np.where(oob_n > 0, oob_sum / np.maximum(oob_n, 1), np.nan)
        f = logit(share)
        out.update(self.own_terms(f, logit(share + d_share) - f))
        return out

    def extra_columns(self) -> dict[str, np.ndarray]:
        return {"data_oob": self.data_oob}

    def extra_validation(self, loo: dict, rng: np.random.Generator) -> dict:
        """Data-OOB (computed on the same pass) as a cross-check of the leave-one-out ranking."""
        finite = np.isfinite(self.data_oob)
        return {"data_oob_spearman_with_loo": correlation(self.data_oob[finite], loo["logloss"][finite], rng)}

    def rankings(self) -> dict[str, np.ndarray]:
        return {"data_oob": oob_suspicion(self.data_oob)}

    # -- removing a set of rows -----------------------------------------------------------------
    def group_logits_many(self, groups: list[np.ndarray]):
        """Test logits without each group, every tree's leaf shares recomputed from the rows it
        keeps (their bootstrap counts), the structure fixed: one pass over the trees for all
        groups, then one group at a time.

        Only the rows a tree drew (about a tenth at max_samples 0.1) move its leaves, so each tree
        places only those, and every group's removed counts per leaf come from one sparse product:
        (leaf x drawn row counts) @ (drawn row x group membership)."""
        n, J = len(self.X), len(groups)
        sets = [sorted_rows(g) for g in groups]
        member = sp.csc_matrix((np.ones(sum(len(g) for g in sets)), np.concatenate(sets) if sets else [],
                                np.cumsum([0] + [len(g) for g in sets])), shape=(n, J)).tocsr()

        def work(t):
            tree = self.trees[t]
            counts = self.model.bootstrap_counts(t, n)
            drawn = np.flatnonzero(counts)
            W, W1 = self._node_weights(tree)
            leaf = tree.apply(self.X[drawn], check_input=False)
            at = (leaf, np.arange(len(drawn)))
            sub = member[drawn]
            w = (sp.csr_matrix((counts[drawn], at), shape=(len(W), len(drawn))) @ sub).toarray()
            w1 = (sp.csr_matrix((counts[drawn] * self.y[drawn], at), shape=(len(W), len(drawn))) @ sub).toarray()
            left = W[:, None] - w
            new = np.where(left > 0, (W1[:, None] - w1) / np.where(left > 0, left, 1.0), (W1 / W)[:, None])
            return tree.apply(self.Xt, check_input=False).astype(np.int32), new - (W1 / W)[:, None]

        threads = model_threads(self.model)
        with ThreadPoolExecutor(threads) as pool:
            per_tree = list(pool.map(work, range(self.T)))
        for k in range(J):
            dp = np.zeros(len(self.Xt))
            for leaf_test, changes in per_tree:     # summed in tree order: deterministic
                dp += np.take(changes[:, k], leaf_test)
            yield logit(self.p_test + dp / self.T)

    def group_logits(self, rows: np.ndarray) -> np.ndarray:
        return next(self.group_logits_many([rows]))

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        dp = np.zeros((len(rows), len(self.Xt)))
        for leaf, leaf_test, counts, W, W1 in self._trees(rows):   # leaves of the removed rows only
            delta = self._share_changes(leaf, counts[rows], self.y[rows], W, W1) / self.T
            hit = leaf_test[None, :] == leaf[:, None]
            dp += delta[:, None] * hit
        return logit(self.p_test + dp) - self.f_test

    def refit_logits(self, row: int) -> tuple[np.ndarray, float]:
        """Copy the scikit-learn trees, write the downdated leaf shares into them, predict."""
        model = copy.copy(self.model)
        model.trees_ = []
        for t, tree in enumerate(self.trees):
            counts = self.model.bootstrap_counts(t, len(self.X))
            if counts[row] == 0 or tree.n_classes_ < 2:
                model.trees_.append(tree)
                continue
            tree = copy.deepcopy(tree)
            l = tree.apply(self.X[row:row + 1])[0]
            W = tree.tree_.weighted_n_node_samples[l]
            W1 = tree.tree_.value[l, 0, 1] * W
            left = W - counts[row]
            if left > 0:
                share = (W1 - counts[row] * self.y[row]) / left
                tree.tree_.value[l, 0, :] = [1 - share, share]
            model.trees_.append(tree)
        own = logit(model._mean_proba(self.X[row:row + 1]))
        return logit(model.predict_proba(self.test)[:, 1]), float(own[0])
