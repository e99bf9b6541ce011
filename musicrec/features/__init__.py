"""Stage 03's feature families, one module each, and the stage itself.

`stage` stacks the split parts and runs the families; `counts` (counts and shares), `temporal`
(time and order, from `time_order`), `target` (out-of-fold target statistics and additive biases),
`als` (implicit ALS scores), `clusters` (taste clusters); `keys` and `pool` hold what several
families share. features.json names, for every feature, the module and function that computed it.
"""
from musicrec.features.stage import BASE_CATEGORICAL, STAGE, WORK_COLS, build_features, run, stack

__all__ = ["BASE_CATEGORICAL", "STAGE", "WORK_COLS", "build_features", "run", "stack"]
