"""The numeric design matrix of the scikit-learn families: NaN filled, optionally scaled.

Fitted on the train split only. Influence analysis treats this transform as part of the feature
map (fitted once, held fixed when rows are removed), exactly like the stage-03 features.
Fitting reads column blocks into one reused buffer, transforming row blocks, so that a
7-million-row split never needs more than the output matrix plus one block of float64 temporaries.
Reuse matters on machines that charge seconds per GB of freshly touched memory (BENCHMARKS.md,
fresh_memory_s_per_gb): numpy's nanmedian and std make a column or block copy per call.
"""
from __future__ import annotations

import numpy as np
from sklearn.preprocessing import QuantileTransformer
from threadpoolctl import threadpool_limits

from musicrec.models.base import FeatureSet
from musicrec.parallel import thread_map

BLOCK = 16  # columns per float64 temporary when fitting (medians need whole columns)
ROWS = 8_192  # rows per float64 temporary when transforming


def median_ignoring_nan(column: np.ndarray, scratch: np.ndarray) -> float:
    """np.nanmedian of one column, partitioned in `scratch` (no copy of the column): the same value,
    the middle element or the mean of the two middle ones; NaN when every value is NaN."""
    values = scratch[:int(np.count_nonzero(~np.isnan(column)))]
    np.compress(~np.isnan(column), column, out=values)
    m = len(values)
    if m == 0:
        return np.nan
    if m % 2:
        values.partition(m // 2)
        return float(values[m // 2])
    values.partition([m // 2 - 1, m // 2])
    return float(np.mean(values[m // 2 - 1:m // 2 + 1]))


def impute(block: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """The block's NaN replaced in place by its columns' medians."""
    nan = np.isnan(block)
    if nan.any():
        block[nan] = np.broadcast_to(medians, block.shape)[nan]
    return block


class NumericDesign:
    """Median imputation + `standard` | `quantile` | `none` scaling of the chosen columns."""

    def __init__(self, columns: list[str], scale: str = "standard", random_state: int = 0):
        self.columns = list(columns)
        self.scale = scale
        self.random_state = random_state

    def _blocks(self, data: FeatureSet, columns: list[str]):
        """Column blocks of the train rows as float64, copied a row chunk at a time into one buffer,
        column-major (contiguous columns: numpy's pairwise sums, the medians' copies)."""
        idx = [data.names.index(c) for c in columns]
        buffer = np.empty((len(data), min(BLOCK, len(idx)) or 1), order="F")
        for j in range(0, len(idx), BLOCK):
            cols = idx[j:j + BLOCK]
            block = buffer[:, :len(cols)] if len(cols) == buffer.shape[1] else np.empty((len(data), len(cols)), order="F")
            for s in range(0, len(data), ROWS):
                block[s:s + ROWS] = data.X[s:s + ROWS, cols]
            yield j, block

    def _column_statistics(self, data: FeatureSet, columns: list[str]) -> dict[str, tuple[float, float, float]]:
        """(median, mean, std) of each column, NaN imputed by the median for the mean and std. Each
        column's figures are its own (contiguous column sums), so they are kept in data.memo by name:
        the families' designs share columns (rf's holds all of nb's and lr's), and a column's
        statistics are read once per split."""
        known = data.memo.setdefault("column_statistics", {})
        todo = [c for c in columns if c not in known]
        n = len(data)
        scratch = np.empty(n) if todo else None
        for j, block in self._blocks(data, todo):
            names = todo[j:j + block.shape[1]]
            med = np.array([median_ignoring_nan(block[:, c], scratch) for c in range(block.shape[1])]) if n else \
                np.zeros(len(names))
            med = np.nan_to_num(med, nan=0.0)
            impute(block, med)
            # mean and std as numpy's mean/std compute them (the same sums), the deviations in place
            mean = block.mean(axis=0)
            np.subtract(block, np.add.reduce(block, axis=0, keepdims=True) / n, out=block)
            np.multiply(block, block, out=block)
            std = np.sqrt(np.add.reduce(block, axis=0) / n)
            known.update({c: (float(med[k]), float(mean[k]), float(std[k])) for k, c in enumerate(names)})
        return {c: known[c] for c in columns}

    def fit(self, data: FeatureSet) -> "NumericDesign":
        stats = self._column_statistics(data, self.columns)
        self.median_ = np.array([stats[c][0] for c in self.columns], dtype=np.float64)
        self.mean_ = np.array([stats[c][1] for c in self.columns], dtype=np.float64)
        std = np.array([stats[c][2] for c in self.columns], dtype=np.float64)
        self.std_ = np.where(std > 0, std, 1.0)
        if self.scale == "quantile":
            self.qt_ = QuantileTransformer(n_quantiles=min(1000, len(data)), output_distribution="normal",
                                           subsample=200_000, random_state=self.random_state)
            self.qt_.fit(self.transform(data, np.float64, scale=False))
        return self

    def transform(self, data: FeatureSet, dtype=np.float64, intercept: bool = False, scale: bool = True) -> np.ndarray:
        """The design matrix; with `intercept` an extra last column of ones (one allocation).

        Row blocks of ROWS rows (the matrix is row-major): each block's float64 temporaries stay
        in cache, where column blocks streamed gigabytes of temporaries at millions of rows."""
        idx = self._indices(data.names)
        out = np.empty((len(data), len(self.columns) + int(intercept)), dtype=dtype)
        for start, batch in data.row_batches():      # from memory, or from the file (StoredFeatureSet)
            self._transform_into(batch, idx, out[start:start + len(batch)], intercept, scale)
        return out

    def _indices(self, names: list[str]) -> np.ndarray:
        return np.array([names.index(c) for c in self.columns], dtype=np.intp)

    def _transform_into(self, batch: np.ndarray, idx: np.ndarray, out: np.ndarray, intercept: bool,
                        scale: bool = True) -> None:
        """The design rows of `batch` (rows of the split's feature matrix) written into `out`."""
        d = len(self.columns)
        for s in range(0, len(batch), ROWS):
            block = np.take(batch[s:s + ROWS], idx, axis=1).astype(np.float64)
            impute(block, self.median_)
            if scale and self.scale == "standard":
                block -= self.mean_
                block /= self.std_
            out[s:s + len(block), :d] = block
        if scale and self.scale == "quantile":
            out[:, :d] = self.qt_.transform(out[:, :d])
        if intercept:
            out[:, d] = 1.0


class DesignRows:
    """A split's float64 design with its intercept column, made a block of rows at a time each time
    it is used instead of held: at KKBOX size the test rows' design is 1.5 GB beside the training
    design that logistic regression's influence must hold, over stage 06's 10 GB; one pass makes it
    again in about a second. Offers the products the estimator needs: X @ M, X' V and X' diag(w) X,
    the sums taken block by block in row order whatever the threads (the same sums as lr's
    weighted_gram when `rows` is its chunk). The split's matrix is read in memory (FeatureSet.X)."""

    def __init__(self, design: NumericDesign, data: FeatureSet, rows: int, threads: int = 1):
        self.design, self.data, self.rows, self.threads = design, data, rows, threads
        self.shape = (len(data), len(design.columns) + 1)
        self._idx = design._indices(data.names)

    def _each(self, work) -> list:
        """[work(row slice, design block)] over the blocks in row order, `threads` blocks at a time,
        one BLAS thread each."""
        n = self.shape[0]

        def one(rows: slice):
            x = np.empty((rows.stop - rows.start, self.shape[1]))
            self.design._transform_into(self.data.X[rows], self._idx, x, intercept=True)
            return work(rows, x)

        bounds = [slice(s, min(s + self.rows, n)) for s in range(0, n, self.rows)]
        with threadpool_limits(1, "blas"):     # the same sums for any thread count
            return thread_map(one, bounds, self.threads)

    def __matmul__(self, M: np.ndarray) -> np.ndarray:
        """X @ M for a vector or a (d + 1, k) matrix."""
        out = np.empty((self.shape[0],) + np.shape(M)[1:])

        def block(rows, x):
            out[rows] = x @ M
        self._each(block)
        return out

    def t_dot(self, V: np.ndarray) -> np.ndarray:
        """X' V for a vector or an (n, k) matrix."""
        return _in_order(self._each(lambda rows, x: x.T @ V[rows]))

    def gram(self, w: np.ndarray) -> np.ndarray:
        """X' diag(w) X, w >= 0, as A'A with A = sqrt(w) X (BLAS syrk)."""
        root = np.sqrt(w)

        def block(rows, x):
            x *= root[rows, None]
            return x.T @ x
        return _in_order(self._each(block))


def _in_order(parts: list) -> np.ndarray:
    """The blocks' partial sums added in row order, starting from zeros as a running sum does."""
    out = np.zeros_like(parts[0])
    for part in parts:
        out += part
    return out
