"""Stage 06's passes as tasks of a cluster engine (musicrec.engine): the estimators' own code, on workers.

A task gets one large object that reaches each worker once (the estimator, or a function holding
it: the model and its design) and a small item (a span of rows, a few groups' rows), and returns
numbers, never a model. With the local engine nothing here runs: the estimators loop over their
rows and groups in this process exactly as they always did.

Row blocks: an estimator's `map_row_blocks(work, ...)` passes (nb's and lr's leave-one-out, lr's
leverages) hand over `work`, a closure that writes its block's rows of arrays it reaches (its
closure's arrays, the arrays in its dicts, the array attributes of its objects, such as
`self.q`). Inside `rows_on(engine)` the closure itself is the shared object: each task runs it over
a span of blocks on the worker's copy and returns the rows of every such array that the span
changed (compared byte for byte with the worker's copy before each block, which is the client's
array as it was sent), and the client writes them into its own arrays. An array the span left
unchanged already holds the same bytes here, so what the client ends with is what the blocks
wrote, byte for byte.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from threadpoolctl import threadpool_limits

from musicrec.engine import task_threads
from musicrec.engine_usage import closure_values
from musicrec.parallel import thread_map

TASKS_PER_SLOT = 2   # row spans / group chunks per worker thread: a killed worker's span is small to redo

_ROW_ENGINE: ContextVar = ContextVar("musicrec_row_engine", default=None)


@contextmanager
def rows_on(eng):
    """map_row_blocks runs its blocks as tasks of `eng` inside this block; None or local: here."""
    token = _ROW_ENGINE.set(None if eng is None or eng.kind == "local" else eng)
    try:
        yield
    finally:
        _ROW_ENGINE.reset(token)


def row_engine():
    """The cluster engine of the enclosing rows_on block (None: run here)."""
    return _ROW_ENGINE.get()


def _arrays_in(value) -> list[tuple[tuple, object]]:
    """(path, value) of what a closure cell holds: itself, its dict items, its object's attributes."""
    if isinstance(value, np.ndarray):
        return [((), value)]
    if isinstance(value, dict):
        return [(("item", k), v) for k, v in value.items()]
    if hasattr(value, "__dict__") and not callable(value):
        return [(("attr", k), v) for k, v in vars(value).items()]
    return []


def _targets(work, n: int) -> dict[tuple, np.ndarray]:
    """The writable arrays of n rows a block of `work` may write into, by their path in its closure."""
    out = {}
    for i, value in enumerate(closure_values(work)):
        for path, arr in _arrays_in(value):
            if isinstance(arr, np.ndarray) and arr.ndim and len(arr) == n and arr.flags.writeable:
                out[(i, *path)] = arr
    return out


def _row_span(work, job: tuple) -> dict[tuple, np.ndarray]:
    """A task: work(block) over the blocks of rows [a, b) on the worker's threads (one BLAS thread each,
    as map_row_blocks runs them); the rows [a, b) of every array some block changed."""
    a, b, n, size = job
    targets = _targets(work, n)
    changed: set[tuple] = set()

    def block(rows: slice) -> None:
        before = {p: t[rows].tobytes() for p, t in targets.items()}
        work(rows)
        changed.update(p for p, t in targets.items() if t[rows].tobytes() != before[p])

    with threadpool_limits(1, "blas"):
        thread_map(block, [slice(s, min(s + size, b)) for s in range(a, b, size)], task_threads(1))
    return {p: targets[p][a:b].copy() for p in changed}


def row_blocks_as_tasks(eng, work, n: int, size: int) -> None:
    """map_row_blocks on a cluster: spans of whole blocks (TASKS_PER_SLOT per worker thread) as tasks,
    `work` (with the estimator it holds) sent to each worker once; what each span wrote is written
    into the same arrays here (see the module docstring)."""
    blocks = -(-n // size)
    per = max(1, -(-blocks // (TASKS_PER_SLOT * eng.slots)))
    spans = [(s * size, min((s + per) * size, n)) for s in range(0, blocks, per)]
    targets = _targets(work, n)
    with eng.keep(work):
        for k, written in eng.map_unordered(_row_span, [(a, b, n, size) for a, b in spans], shared=work,
                                            desc="row blocks", unit="spans"):
            a, b = spans[k]
            for path, values in written.items():
                targets[path][a:b] = values


def _set_logits(est, groups: list) -> list:
    """A task: the estimator's own group_logits_many of a few groups (a family sharing work across
    groups shares it within them)."""
    return list(est.group_logits_many(groups))


class SetsOnEngine:
    """The estimator, with group_logits_many as tasks of a cluster engine: groups in chunks
    (TASKS_PER_SLOT per worker thread), each chunk one task; every other attribute is the estimator's."""

    def __init__(self, est, eng):
        self.__dict__.update(_est=est, _eng=eng)

    def __getattr__(self, name: str):
        return getattr(self._est, name)

    def group_logits_many(self, groups):
        groups = list(groups)
        if not groups:
            return
        chunks = np.array_split(np.arange(len(groups)), min(len(groups), TASKS_PER_SLOT * self._eng.slots))
        items = [[groups[i] for i in c] for c in chunks]
        for part in self._eng.map(_set_logits, items, shared=self._est, desc=f"set predictions {self._est.name}",
                                  unit="tasks"):
            yield from part


@contextmanager
def sets_on(est, eng):
    """The estimator whose set predictions (group_logits_many) run as tasks of `eng`, sent to each worker
    once for the whole block (its private copy: eng.keep); the estimator itself on the local engine or where the family has no set
    predictor. Call est.prepare_sets before: the workers get the estimator as it is here now."""
    if eng is None or eng.kind == "local" or not est.has_set_predictor:
        yield est
        return
    with eng.keep(est):
        yield SetsOnEngine(est, eng)
