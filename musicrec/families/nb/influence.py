"""Gaussian naive Bayes: exact leave-one-out in closed form.

Removing row i (class c) changes class c's count, means and variances (a Welford downdate), the
class priors, and var_smoothing's epsilon = var_smoothing * max_k Var(X[:, k]) over the whole
training set, which shifts both classes' variances. The test log-odds are a quadratic form
f(x) = sum_k A_k x_k^2 + B_k x_k + C, so the removal changes them by phi(x) . z_i with
phi(x) = (x^2, x, 1) and z_i the change of (A, B, C), computed here without cancellation.
For every row, the log-loss change is sum_j g_j dF_ij + 1/2 sum_j h_j dF_ij^2 with exact dF
(error O(dF^3)); `exact()` re-scores every test row.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from musicrec.influence.base import Estimator, map_row_blocks, model_threads, sorted_rows

CHUNK = 20_000
SET_ROWS = 65_536     # rows of a removed set read at a time
FLAT = 1e-9          # a class's remaining sum of squared deviations below this share of its all-rows one: summed afresh
LOO_BLOCK = 2_048     # rows per loo() block: its ~30 (rows x columns) temporaries stay in cache and in the heap


def _merge(a: tuple, b: tuple) -> tuple:
    """Count, mean and sum of squared deviations of two parts together (Chan et al.)."""
    (na, ma, Sa), (nb, mb, Sb) = a, b
    if nb == 0:
        return a
    if na == 0:
        return b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, Sa + Sb + delta * delta * na * nb / n


class NaiveBayesInfluence(Estimator):
    name = "nb"
    method = "exact closed-form downdate (log-loss to second order in the logit change)"

    def __init__(self, model, train, test):
        # the model's own float32 design (half the memory at KKBOX size); every sum and product below
        # runs in float64 on blocks of it, so the statistics are those of float64 arithmetic
        self.Z = model.design_.transform(train, np.float32)
        self.Zt = model.design_.transform(test, np.float32)
        self.y = train.y.astype(np.int64)
        self.vs = model.estimator_.var_smoothing
        self.n = len(self.Z)
        self.nc, self.mu, self.S, self.m, self.S_all = self.statistics(np.ones(self.n, dtype=bool))
        self.v, self.eps = self.variances(self.nc, self.S, self.S_all)
        super().__init__(model, train, test)

    # -- full-data statistics ------------------------------------------------------------------
    def statistics(self, keep: np.ndarray, cols: np.ndarray | None = None):
        """Class counts, means, sums of squared deviations, and the overall mean and sum of squared
        deviations, of the kept rows (of the columns `cols` only, when given): two passes over row
        chunks (no copy of the design)."""
        Z, y = (self.Z if cols is None else self.Z[:, cols]), self.y
        nc = np.array([((y == c) & keep).sum() for c in (0, 1)], dtype=np.float64)
        sums = np.zeros((2, Z.shape[1]))
        for s in range(0, len(Z), CHUNK):
            z, yc, k = Z[s:s + CHUNK].astype(np.float64), y[s:s + CHUNK], keep[s:s + CHUNK]
            for c in (0, 1):
                sums[c] += z[(yc == c) & k].sum(axis=0)
        mu = sums / nc[:, None]
        m = sums.sum(axis=0) / nc.sum()
        S, S_all = np.zeros((2, Z.shape[1])), np.zeros(Z.shape[1])
        for s in range(0, len(Z), CHUNK):
            z, yc, k = Z[s:s + CHUNK].astype(np.float64), y[s:s + CHUNK], keep[s:s + CHUNK]
            S_all += ((z[k] - m) ** 2).sum(axis=0)
            for c in (0, 1):
                S[c] += ((z[(yc == c) & k] - mu[c]) ** 2).sum(axis=0)
        return nc, mu, S, m, S_all

    def variances(self, nc, S, S_all):
        """GaussianNB's class variances and its epsilon: var_smoothing times the largest overall variance."""
        eps = self.vs * (S_all / nc.sum()).max()
        return S / nc[:, None] + eps, eps

    def phi(self, Z: np.ndarray) -> np.ndarray:
        """(x^2, x, 1): the test log-odds are linear in these (in float64)."""
        Z = np.asarray(Z, dtype=np.float64)
        return np.hstack([Z ** 2, Z, np.ones((len(Z), 1))])

    def coefficients(self, mu, v, log_prior) -> np.ndarray:
        """(A, B, C) of f(x) = jll_1(x) - jll_0(x) for class means mu (2, d) and variances v (2, d)."""
        A = -0.5 * (1 / v[1] - 1 / v[0])
        B = mu[1] / v[1] - mu[0] / v[0]
        C = (log_prior[1] - log_prior[0] - 0.5 * np.log(v[1] / v[0]).sum()
             - 0.5 * (mu[1] ** 2 / v[1] - mu[0] ** 2 / v[0]).sum())
        return np.concatenate([A, B, [C]])

    def retrain_inputs(self):
        """The design this estimator already holds is the one retraining fits on (Model.prepare)."""
        return self.model.design_, self.Z, self.train.y

    def test_logits(self) -> np.ndarray:
        """Log-odds of the float64 all-rows fit (the statistics above), the model retraining is
        compared with; the stage-04 model was fitted on the same float32 design in float32 arithmetic."""
        return self._logits(self.nc, self.mu, self.v)

    def train_logits(self, rows: np.ndarray) -> np.ndarray:
        return self._logits(self.nc, self.mu, self.v, self.Z[rows])

    def _logits(self, nc, mu, v, Z=None) -> np.ndarray:
        Z = self.Zt if Z is None else Z
        w = self.coefficients(mu, v, np.log(nc / nc.sum()))
        return np.concatenate([self.phi(Z[s:s + CHUNK]) @ w for s in range(0, len(Z), CHUNK)])

    # -- the downdate --------------------------------------------------------------------------
    def coefficient_changes(self, rows: np.ndarray) -> np.ndarray:
        """z_i = change of (A, B, C) when each row is removed: (len(rows), 2d+1)."""
        x, c = self.Z[rows].astype(np.float64), self.y[rows]
        n, nc = self.n, self.nc[c][:, None]
        mu, S, v = self.mu[c], self.S[c], self.v[c]
        dmu = -(x - mu) / (nc - 1)                       # mu' - mu
        dS = (x - mu) * (x - mu - dmu)                    # S - S'
        d_raw = (dS * nc - S) / (nc * (nc - 1))           # raw - raw'
        # epsilon without the row: the overall variance of every column, downdated
        dm = -(x - self.m) / (n - 1)
        V_new = (self.S_all - (x - self.m) * (x - self.m - dm)) / (n - 1)
        eps_new = self.vs * V_new.max(axis=1, keepdims=True)
        d_eps = self.eps - eps_new                        # eps - eps'
        v_other = self.v[1 - c]

        def recip_change(v_old, dv):                      # 1/v' - 1/v with v' = v_old - dv
            return dv / (v_old * (v_old - dv))

        def ratio_change(num, dnum, v_old, dv):           # num'/v' - num/v
            return (dnum * v_old + num * dv) / (v_old * (v_old - dv))

        mu_new_own = mu + dmu
        r_own = recip_change(v, d_raw + d_eps)
        r_oth = recip_change(v_other, d_eps)
        b_own = ratio_change(mu, dmu, v, d_raw + d_eps)
        b_oth = ratio_change(self.mu[1 - c], 0.0, v_other, d_eps)
        q_own = ratio_change(mu ** 2, dmu * (mu_new_own + mu), v, d_raw + d_eps)
        q_oth = ratio_change(self.mu[1 - c] ** 2, 0.0, v_other, d_eps)
        logv_own = np.log1p(-(d_raw + d_eps) / v)
        logv_oth = np.log1p(-d_eps / v_other)
        lp_own = np.log1p(-1.0 / nc[:, 0]) - np.log1p(-1.0 / n)
        lp_oth = -np.log1p(-1.0 / n) * np.ones(len(x))
        sign = np.where(c == 1, 1.0, -1.0)[:, None]       # f = jll_1 - jll_0
        dA = -0.5 * sign * (r_own - r_oth)
        dB = sign * (b_own - b_oth)
        dC = (sign[:, 0] * (lp_own - lp_oth) - 0.5 * sign[:, 0] * (logv_own - logv_oth).sum(axis=1)
              - 0.5 * sign[:, 0] * (q_own - q_oth).sum(axis=1))
        return np.hstack([dA, dB, dC[:, None]])

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        z = self.coefficient_changes(rows)
        return np.hstack([z @ self.phi(self.Zt[s:s + CHUNK]).T for s in range(0, len(self.Zt), CHUNK)])

    def _test_moments(self):
        """sum_j g_j phi_j, sum_j a_j phi_j and sum_j h_j phi_j phi_j' over test chunks."""
        g, h = self.weighted_derivatives()
        a = self.directions["auc"]
        p = 2 * self.Zt.shape[1] + 1
        u_loss, u_auc, M = np.zeros(p), np.zeros(p), np.zeros((p, p))
        for s in range(0, len(self.Zt), CHUNK):
            ph = self.phi(self.Zt[s:s + CHUNK])
            u_loss += ph.T @ g[s:s + CHUNK]
            u_auc += ph.T @ a[s:s + CHUNK]
            M += (ph * h[s:s + CHUNK, None]).T @ ph
        return u_loss, u_auc, M

    def loo(self) -> dict[str, np.ndarray]:
        u_loss, u_auc, M = self._test_moments()
        w = self.coefficients(self.mu, self.v, np.log(self.nc / self.nc.sum()))
        out = {k: np.empty(self.n) for k in ("logloss", "auc", "self", "own_loss")}

        def block(rows: slice) -> None:
            z = self.coefficient_changes(rows)
            out["logloss"][rows] = z @ u_loss + 0.5 * ((z @ M) * z).sum(axis=1)
            out["auc"][rows] = z @ u_auc
            ph = self.phi(self.Z[rows])
            for k, v in self.own_terms(ph @ w, (z * ph).sum(axis=1), rows).items():
                out[k][rows] = v

        map_row_blocks(block, self.n, LOO_BLOCK, model_threads(self.model))
        return out

    def _fit_without(self, rows) -> tuple:
        """Exact retraining without `rows`: GaussianNB's class counts, means and variances summed
        afresh over the other rows (scikit-learn's fit, without copying a multi-GB design)."""
        keep = np.ones(self.n, dtype=bool)
        keep[rows] = False
        nc, mu, S, _, S_all = self.statistics(keep)
        return nc, mu, self.variances(nc, S, S_all)[0]

    def _set_moments(self, rows: np.ndarray) -> tuple[list, tuple]:
        """Count, mean and sum of squared deviations of the set's rows per class and over both, read a
        block of rows at a time (a multi-GB group needs no copy). Each row is taken as its deviation
        from its class's all-rows mean, so the sums are of small numbers; both classes' sums come
        from one product per block, and the overall moments merge the two classes (Chan's formula)."""
        d = self.Z.shape[1]
        count, first, second = np.zeros(2), np.zeros((2, d)), np.zeros((2, d))
        for s in range(0, len(rows), SET_ROWS):
            c = self.y[rows[s:s + SET_ROWS]]
            z = self.Z[rows[s:s + SET_ROWS]].astype(np.float64)
            z -= self.mu[c]
            onehot = np.stack([c == 0, c == 1]).astype(np.float64)
            count += onehot.sum(axis=1)
            first += onehot @ z
            second += onehot @ np.square(z, out=z)
        per_class = []
        for k in (0, 1):
            if count[k] == 0:
                per_class.append((0.0, 0.0, 0.0))
                continue
            shift = first[k] / count[k]
            per_class.append((count[k], self.mu[k] + shift, np.maximum(second[k] - count[k] * shift * shift, 0.0)))
        return per_class, _merge(*per_class)

    def _without_set(self, rows: np.ndarray) -> tuple:
        """GaussianNB's statistics without a set of rows, downdated by the set's own counts, means
        and sums of squared deviations (S_rest = S - S_set - n_rest n_set / n (mu_set - mu_rest)^2,
        per class and over all rows for epsilon)."""
        per_class, overall = self._set_moments(rows)

        def rest(n, mu, S, part):
            k, mu_g, S_g = part
            if k == 0:
                return n, mu, S
            left = n - k
            mu_r = (n * mu - k * mu_g) / left
            return left, mu_r, np.maximum(S - S_g - left * k / n * (mu_g - mu_r) ** 2, 0.0)

        rests = [rest(self.nc[k], self.mu[k], self.S[k], per_class[k]) for k in (0, 1)]
        nc = np.array([p[0] for p in rests], dtype=np.float64)
        mu, S = np.stack([p[1] for p in rests]), np.stack([p[2] for p in rests])
        self._exact_flat_columns(rows, nc, mu, S)
        _, _, S_all = rest(float(self.n), self.m, self.S_all, overall)
        return nc, mu, self.variances(nc, S, S_all)[0]

    def _exact_flat_columns(self, rows: np.ndarray, nc, mu, S) -> None:
        """Columns a class's remaining rows hold (nearly) constant, summed afresh over those rows, in place.

        There the downdate's S_rest is a difference of numbers ~1e16 times larger than it, so its
        rounding is all that is left; the variance is then var_smoothing's tiny epsilon plus that
        rounding, and every test row off the constant scores (x - mu)^2 / v with v wrong in its
        third digit: logits off by millions (a group holding every row of one language)."""
        flat = S <= FLAT * self.S
        cols = np.flatnonzero(flat.any(axis=0))
        if len(cols) == 0:
            return
        keep = np.ones(self.n, dtype=bool)
        keep[rows] = False
        _, mu_kept, S_kept, _, _ = self.statistics(keep, cols)
        for k in (0, 1):
            if nc[k] > 0:
                mine = flat[k, cols]
                mu[k, cols[mine]], S[k, cols[mine]] = mu_kept[k, mine], S_kept[k, mine]

    def group_logits_many(self, groups: list[np.ndarray]):
        """Test logits of naive Bayes refitted without each set: exact (each set's statistics downdated),
        every set's coefficient change applied in one pass over the test design."""
        with threadpool_limits(1, "blas"):   # one BLAS thread: the same sums on any engine, any chunk of sets
            groups = [sorted_rows(g) for g in groups]
            w = self.coefficients(self.mu, self.v, np.log(self.nc / self.nc.sum()))
            dW = []
            for g in groups:
                nc, mu, v = self._without_set(g) if len(g) else (self.nc, self.mu, self.v)
                dW.append(self.coefficients(mu, v, np.log(nc / nc.sum())) - w)
            dW = np.stack(dW, axis=1) if dW else np.zeros((len(w), 0))
            d = self.Zt.shape[1]
            change = np.empty((len(self.Zt), len(groups)))
            for s in range(0, len(self.Zt), CHUNK):
                z = self.Zt[s:s + CHUNK].astype(np.float64)
                change[s:s + CHUNK] = (z * z) @ dW[:d] + z @ dW[d:2 * d] + dW[2 * d]
        for j, g in enumerate(groups):
            yield self.f_test.copy() if len(g) == 0 else self.f_test + change[:, j]

    def group_logits(self, rows: np.ndarray) -> np.ndarray:
        return next(self.group_logits_many([rows]))

    def refit_logits(self, row: int) -> tuple[np.ndarray, float]:
        fit = self._fit_without(row)
        return self._logits(*fit), float(self._logits(*fit, self.Z[row:row + 1])[0])
