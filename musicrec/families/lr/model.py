"""L2 logistic regression, scikit-learn's LogisticRegression on the standardised design."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from musicrec.models.sklearn_base import SklearnModel


class LogisticModel(SklearnModel):
    """L2 logistic regression. On millions of rows x tens of dense columns newton-cholesky (the
    config's default) converges in a few steps, where lbfgs ran out of its 100 iterations at 5M
    rows; stage 06 polishes to the exact optimum with it too.

    Fitted on a float32 design: newton-cholesky's Hessian takes a weights x design temporary, so a
    float64 design and its temporary (5 GB each at KKBOX size) did not fit a 10 GB budget. The
    float32 fit's test log-odds differ from the float64 fit's by at most 3.5e-5 (synthetic `small`;
    AUC equal to 1e-8); stage 06 explains the float64 optimum on the float64 design (retrain_model)."""

    name = "lr"
    dtype = np.float32
    solver = "lbfgs"  # models saved before the solver was a parameter

    def __init__(self, C: float = 1.0, max_iter: int = 300, tol: float = 1e-6, solver: str = "lbfgs",
                 random_state: int = 0):
        self.C, self.max_iter, self.tol, self.solver, self.random_state = C, max_iter, tol, solver, random_state

    def make_estimator(self):
        return LogisticRegression(C=self.C, solver=self.solver, max_iter=self.max_iter, tol=self.tol,
                                  random_state=self.random_state)

    def warm_start(self, init) -> None:
        if init is not None:
            self.estimator_.set_params(warm_start=True)
            self.estimator_.coef_ = init.estimator_.coef_.copy()
            self.estimator_.intercept_ = init.estimator_.intercept_.copy()

    def info(self) -> dict:
        return {"iterations": int(np.max(self.estimator_.n_iter_))}

    def predict_logit(self, data) -> np.ndarray:
        return self.estimator_.decision_function(self.design_.transform(data, self.dtype))
