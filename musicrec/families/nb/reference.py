"""GaussianNB refitted without a row: the library reference of naive Bayes's estimates.

scikit-learn's GaussianNB is fitted on the model's design (its float32 values, in float64) without
the row, one block of columns at a time: its means and variances are per column, and only its
var_smoothing epsilon (var_smoothing times the largest column variance) spans the columns.
GaussianNB's own temporaries are a design's worth per fit on the whole design, ~5 GB at KKBOX size.
"""
from __future__ import annotations

import numpy as np
from sklearn.naive_bayes import GaussianNB

from musicrec.influence.base import model_threads
from musicrec.influence.reference import LibraryReference
from musicrec.parallel import thread_map
from musicrec.models.sklearn_base import fit_without_rows

ROWS = 20_000          # test rows per block of the logit computations
NB_BLOCK = 16          # columns per GaussianNB fit: a block costs a strided pass over the rows, whatever
                       # its width; 16 columns: ~0.7 GB per worker's buffer at 5.3M rows


class ColumnBlockNB:
    """GaussianNB fitted column block by column block, each worker thread copying its blocks into
    one reused float64 buffer, and assembled into one fitted GaussianNB: the library's fit of every
    column, without a design-sized temporary. Blocks are fitted without var_smoothing, and its
    epsilon (var_smoothing times the largest column variance) is added once, as GaussianNB adds it,
    so the assembled fit is GaussianNB's on the whole design."""

    def __init__(self, var_smoothing: float, block: int = NB_BLOCK, threads: int = 1):
        self.var_smoothing, self.block, self.threads = var_smoothing, block, max(1, threads)
        self.buffers: dict[int, np.ndarray] = {}

    def _fit_blocks(self, worker: int, Z: np.ndarray, y: np.ndarray, starts: list[int], width: int) -> list:
        fits = []
        for s in starts:
            cols = Z[:, s:s + width]
            if self.buffers.get(worker, np.empty(0)).size < cols.size:
                self.buffers[worker] = np.empty(len(Z) * width)
            block = self.buffers[worker][:cols.size].reshape(cols.shape)
            np.copyto(block, cols)
            fit = GaussianNB(var_smoothing=0.0).fit(block, y)
            # the columns' variances as np.var computes them (GaussianNB's epsilon), in the buffer
            n = len(block)
            np.subtract(block, np.add.reduce(block, axis=0, keepdims=True) / n, out=block)
            np.multiply(block, block, out=block)
            fits.append((fit, np.add.reduce(block, axis=0) / n))
        return fits

    def fit(self, Z: np.ndarray, y: np.ndarray) -> GaussianNB:
        d = Z.shape[1]
        width = min(self.block, d)
        starts = list(range(0, d, width))
        workers = min(self.threads, len(starts))
        shares = [starts[w::workers] for w in range(workers)]      # worker w fits blocks w, w+workers, ...
        done = thread_map(lambda w: self._fit_blocks(w, Z, y, shares[w], width), range(workers), workers)
        fits = [done[k % workers][k // workers] for k in range(len(starts))]   # back in column order
        nb = GaussianNB(var_smoothing=self.var_smoothing)
        first = fits[0][0]
        nb.classes_, nb.class_count_, nb.class_prior_ = first.classes_, first.class_count_, first.class_prior_
        nb.n_features_in_ = d
        nb.epsilon_ = self.var_smoothing * max(var.max() for _, var in fits)
        nb.theta_ = np.hstack([f.theta_ for f, _ in fits])
        nb.var_ = np.hstack([f.var_ for f, _ in fits])
        nb.var_[:, :] += nb.epsilon_
        return nb


def nb_fitter(est) -> ColumnBlockNB:
    """The column-block GaussianNB of the estimator's var_smoothing, on its model's threads."""
    return ColumnBlockNB(est.vs, threads=model_threads(est.model))


def gaussian_nb(est, keep: np.ndarray, fitter: ColumnBlockNB | None = None) -> GaussianNB:
    """GaussianNB on the estimator's design rows `keep` (swapped out of a view, not copied)."""
    fitter = fitter or nb_fitter(est)
    return fit_without_rows(fitter.fit, est.Z, est.y, np.flatnonzero(~keep))


def nb_logits(nb: GaussianNB, Z: np.ndarray) -> np.ndarray:
    """GaussianNB's log-odds, predicted in row blocks (its temporaries are a few copies of the rows)."""
    out = np.empty(len(Z))
    for s in range(0, len(Z), ROWS):
        jll = nb.predict_joint_log_proba(Z[s:s + ROWS].astype(np.float64))
        out[s:s + ROWS] = jll[:, 1] - jll[:, 0]
    return out


def nb_logit_change(base: GaussianNB, new: GaussianNB, Z: np.ndarray) -> np.ndarray:
    """Log-odds of `new` minus those of `base`, from the two fits' parameters (means, variances,
    class counts) without subtracting their joint log-likelihoods: those are ~10 in size, so their
    difference carries ~1e-15 of rounding in a change of ~1e-6, which alone is ~1e-9 relative.
    Per class, (x - theta')^2 / v' - (x - theta)^2 / v is written in the parameter changes. Rows go
    in blocks of ROWS: whole-matrix temporaries were ~5 design copies (6 GB of test rows at KKBOX size)."""
    out = np.zeros(len(Z))
    n, n_new = base.class_count_.sum(), new.class_count_.sum()
    for c, sign in ((1, 1.0), (0, -1.0)):
        theta, v = base.theta_[c], base.var_[c]
        d_theta, d_v = new.theta_[c] - theta, new.var_[c] - v
        d_prior = (np.log1p((new.class_count_[c] - base.class_count_[c]) / base.class_count_[c])
                   - np.log1p((n_new - n) / n))
        out += sign * (d_prior - 0.5 * np.log1p(d_v / v).sum())
        for s in range(0, len(Z), ROWS):
            a = Z[s:s + ROWS] - theta
            quad = (d_theta * v * (d_theta - 2 * a) - a * a * d_v) / (v * (v + d_v))
            out[s:s + ROWS] -= sign * 0.5 * quad.sum(axis=1)
    return out


class NaiveBayesReference(LibraryReference):
    """GaussianNB on the estimator's design in float64, refitted without each row (one reused buffer)."""

    def __init__(self, est):
        super().__init__(est)
        self.fitter = nb_fitter(est)
        self.test_design = est.Zt

    def fit(self, row: int | None = None) -> GaussianNB:
        keep = np.ones(self.est.n, dtype=bool)
        if row is not None:
            keep[row] = False
        return gaussian_nb(self.est, keep, self.fitter)

    def logits(self, fit: GaussianNB, X: np.ndarray) -> np.ndarray:
        return nb_logits(fit, X)

    def change(self, base: GaussianNB, fit: GaussianNB, X: np.ndarray) -> np.ndarray:
        return nb_logit_change(base, fit, X)

    def train_rows(self, rows) -> np.ndarray:
        return self.est.Z[rows].astype(np.float64)
