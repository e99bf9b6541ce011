"""LightGBM without a set of rows: the boosting sequence replayed with the trees' structure fixed.

Tree by tree, each leaf's value is recomputed by LightGBM's own formula, -shrinkage * G / (H + l2)
(G soft-thresholded by l1; l2 plus cat_l2 under a many-vs-many categorical split; tree 0 plus the
boost-from-average init score, itself recomputed from the remaining labels), from the gradients
and hessians of the rows that remain, at their scores under the replayed earlier trees: so the
removal moves later leaves the way retraining with the same structure would, where the
leave-one-out estimate holds the other rows' gradients fixed. LightGBM rounds gradients and
hessians to float32 before summing them, and so does this replay; with nothing removed it gives
back the stored leaf values.

A leaf's new sums are written as (its stored sums) - (the removed rows' terms at their stored
scores) + (the other rows' change of terms under the replayed scores). The first two are exact.
The third, the knock-on term, is summed over every row when the training split has at most
`replay_rows` rows, else over an evenly spaced sample of that many rows, scaled up. Each tree's
change of value is added to LightGBM's stored value, so an empty set returns the model exactly.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from musicrec.influence.base import sorted_rows
from musicrec.parallel import thread_map

SUMS_BLOCK = 131_072    # train rows per block of the one pass that sums every set's removed rows
TEST_BLOCK = 65_536     # test rows per block when the trees' changes are added up (a block's scores stay in cache)


def leaf_value(G: np.ndarray, H: np.ndarray, lam: np.ndarray, l1: float, shrink: float) -> np.ndarray:
    """LightGBM's leaf output for gradient and hessian sums G, H (0 where a leaf keeps no row)."""
    g = np.sign(G) * np.maximum(np.abs(G) - l1, 0.0) if l1 > 0 else G
    den = H + lam
    return np.where(den > 0, -shrink * g / np.where(den > 0, den, 1.0), 0.0)


class Terms:
    """The binary objective's gradient and hessian at raw scores, rounded to float32 as LightGBM keeps
    them, into buffers reused tree after tree: computed in float64, written to float32 as the ufuncs'
    output (the rounding of astype, without its temporaries) and read back into float64 exactly."""

    def __init__(self, n: int):
        self.p, self.g, self.h = np.empty(n), np.empty(n), np.empty(n)
        self.g32, self.h32 = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.float32)

    def __call__(self, score: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        expit(score, out=self.p)
        np.subtract(self.p, y, out=self.g32, casting="same_kind")
        np.subtract(1.0, self.p, out=self.h)
        np.multiply(self.h, self.p, out=self.h32, casting="same_kind")
        self.g[:], self.h[:] = self.g32, self.h32
        return self.g, self.h


def knock_on_rows(n: int, replay_rows: int | None) -> np.ndarray:
    """Every row, or an evenly spaced sample of replay_rows rows (no random draw: the same rows
    for every set, every run)."""
    if replay_rows is None or replay_rows >= n:
        return np.arange(n)
    return (np.arange(replay_rows, dtype=np.int64) * n) // replay_rows


class Replay:
    """Replays an estimator's boosting sequence (musicrec.families.lgbm.influence) without sets of rows."""

    def __init__(self, est, replay_rows: int | None = None):
        self.est = est
        self.rows = knock_on_rows(len(est.y), replay_rows)
        self.scale = len(est.y) / len(self.rows)          # sampled knock-on sums scaled to all rows
        self.leaves = np.asfortranarray(est.leaf_rows(self.rows))    # one contiguous column per tree
        self.formula = [leaf_value(G, H, lam, est.l1, est.shrink[t])
                        for t, (G, H, lam) in enumerate(zip(est.G, est.H, est.lam))]
        # the sample's gradient and hessian sums per leaf at the stored scores, once for every set
        self.sample_sums = self._sums(self.rows, self.leaves)

    def _sums(self, rows: np.ndarray, leaves: np.ndarray) -> list:
        """Per tree, gradient and hessian sums per leaf of the rows at their stored scores."""
        est, out = self.est, []
        for t, leaf, g, h in est._forward(rows, leaves, np.empty(len(rows))):
            n_leaves = len(est.values[t])
            out.append((np.bincount(leaf, g, minlength=n_leaves), np.bincount(leaf, h, minlength=n_leaves)))
        return out

    def removed_sums(self, sets: list[np.ndarray]) -> list[list]:
        """Per set and tree, the removed rows' gradient and hessian sums per leaf at their stored
        scores, and those of its rows in the knock-on sample, from one pass over the training rows
        for all sets (a pass per set cost its size times the trees; the meaningful groups hold every
        row about seven times over). Only the rows some set removes are carried through the trees.
        A set's sums are added block by block in block order, each block's in row order, whatever
        other sets share the pass: the same bytes for a set alone, in any chunk of sets on a cluster,
        every run. Blocks run on the model's threads."""
        est = self.est
        sets = [sorted_rows(r) for r in sets]
        n, J = len(est.y), len(sets)
        sizes = [len(v) for v in est.values]
        S = max(sizes)          # one stride for every tree: a set's bins start at j * S
        sampled = np.zeros(n, dtype=bool)
        sampled[self.rows] = True

        def block_sums(block: slice) -> list | None:
            pieces = [r[np.searchsorted(r, block.start):np.searchsorted(r, block.stop)] - block.start for r in sets]
            local = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
            if len(local) == 0:
                return None
            base = np.repeat(np.arange(J) * S, [len(p) for p in pieces])
            used = local if J == 1 else np.unique(local)
            if len(used) == block.stop - block.start:      # every row of the block: no gather
                rows, leaves, at = block, est._block_leaves(block), local
            else:
                rows = block.start + used
                leaves, at = est.leaf_rows(rows), np.searchsorted(used, local)
            inside = np.flatnonzero(sampled[block][local])
            base_in, at_in = base[inside], at[inside]
            out = []
            for t, leaf, g, h in est._forward(rows, leaves, np.empty(len(used))):
                idx, idx_in = base + leaf[at], base_in + leaf[at_in]
                out.append(np.stack([np.bincount(idx, g[at], minlength=J * S),
                                     np.bincount(idx, h[at], minlength=J * S),
                                     np.bincount(idx_in, g[at_in], minlength=J * S),
                                     np.bincount(idx_in, h[at_in], minlength=J * S)]))
            return out

        acc = [np.zeros((4, J * S)) for _ in sizes]
        blocks = [slice(s, min(n, s + SUMS_BLOCK)) for s in range(0, n, SUMS_BLOCK)]
        for s in range(0, len(blocks), est.threads):
            for part in thread_map(block_sums, blocks[s:s + est.threads], est.threads):
                if part is not None:
                    for t in range(est.T):
                        acc[t] += part[t]
        return [[tuple(acc[t][k].reshape(J, S)[j, :sizes[t]] for k in range(4)) for t in range(est.T)]
                for j in range(J)]

    def test_logits(self, removed: np.ndarray, gone: list) -> np.ndarray:
        """Test raw scores of the model replayed without the `removed` train rows (`gone`: their
        removed_sums)."""
        est = self.est
        removed = sorted_rows(removed)
        if len(removed) == 0:
            return est.f_test.copy()
        n = len(est.y)
        keep = ~np.isin(self.rows, removed)
        every = bool(keep.all())
        y = est.y[self.rows if every else self.rows[keep]]
        m = (est.y.sum() - est.y[removed].sum()) / (n - len(removed))
        d_init = np.log(m / (1 - m)) - est.init if 0 < m < 1 else 0.0
        # every removed row's terms (exact), and those of the removed rows in the sample
        score = np.full(len(y), est.init + d_init)    # the kept sample rows' replayed scores
        terms, changes = Terms(len(y)), []
        for t in range(est.T):
            leaf = self.leaves[:, t] if every else self.leaves[:, t][keep]
            n_leaves = len(est.values[t])
            g_new, h_new = terms(score, y)
            # kept sample rows' change of terms: their sums now minus their sums at the stored scores
            dG = np.bincount(leaf, g_new, minlength=n_leaves) - (self.sample_sums[t][0] - gone[t][2])
            dH = np.bincount(leaf, h_new, minlength=n_leaves) - (self.sample_sums[t][1] - gone[t][3])
            G = est.G[t] - gone[t][0] + self.scale * dG
            H = est.H[t] - gone[t][1] + self.scale * dH
            change = leaf_value(G, H, est.lam[t], est.l1, est.shrink[t]) - self.formula[t]
            if t == 0:
                change = change + d_init
                np.take(est.values[0] + change, leaf, out=score)   # tree 0's stored values include the init score
            else:
                score += np.take(est.values[t] + change, leaf)
            changes.append(change)
        f = est.f_test.copy()
        for s in range(0, len(f), TEST_BLOCK):   # tree by tree within a block of rows: the same sums, in cache
            block = f[s:s + TEST_BLOCK]
            for t, change in enumerate(changes):
                block += np.take(change, est.leaves_test[s:s + TEST_BLOCK, t])
        return f
