"""What a Dask worker runs for a kept object (DaskEngine.keep): its private copy, one task at a time.

Dask moves the data of a scatter between workers whenever it likes (its memory manager drops extra
replicas while tasks run; a restarted worker fetches from a peer), pickling the object where it
lies, also while a task there is changing it in place (stage 06's naive Bayes retrain swaps rows of
its design and puts them back). A kept object is instead a worker plugin: the scheduler sends it to
every worker once, and to every worker that joins later, and nothing moves it between workers.
"""
from __future__ import annotations

import threading

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from musicrec.engine import _run_task


class Private(WorkerPlugin):
    """One kept object, unpickled in each worker process, with the lock its tasks take."""

    idempotent = False

    def __init__(self, name: str, obj):
        self.name, self.obj = name, obj

    def setup(self, worker) -> None:
        self.lock = threading.Lock()

    def teardown(self, worker) -> None:
        self.obj = None


def run_private(fn, name: str, item):
    """fn(the worker's copy of the kept object, item), one task at a time per object and worker (its
    tasks may change it, and each uses the worker's threads)."""
    plugin = get_worker().plugins[name]
    with plugin.lock:
        return _run_task(fn, plugin.obj, item)
