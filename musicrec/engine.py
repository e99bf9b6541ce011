"""Where a stage's tasks run: in this process (`engine.kind: local`) or on a Dask cluster (`dask`).

`open_engine(cfg)` yields an engine whose `map(fn, items, shared=...)` runs `fn(shared, item)` for
every item and returns the results in input order. `shared` (a model, a design matrix, a lookup
table) reaches each worker once (scattered, broadcast), never once per task, so put what is large
there and keep the items small (an index, a block of row numbers). `keep(obj)` instead installs a
private copy of obj in every worker process for all the maps of a block: Dask never moves it between
workers (its memory manager drops and re-copies broadcast data while tasks run, and a copy taken
from a worker whose task was changing the object in place is a half-changed object), a worker
started later gets it too, and the tasks sharing it on one worker run one at a time, each with the
worker's threads: use it for objects that tasks change (caches, rows swapped and put back).
`window` keeps only that many tasks running, pulling further items from a lazy iterable as tasks
finish (a loop under a time budget). The local engine calls the same
function here, in order, so a stage's outputs do not depend on the engine; that is why `engine` is
in no stage's manifest and changing it makes nothing stale.

On a cluster, every worker must hold the client's versions of the packages whose code or bytes the
tasks depend on (checked when connecting: a missing or different one is one line, exit 2), and a
task whose worker dies is run again on another (the scheduler reschedules it; `retries` covers a
task that raises on a worker that then recovers), so a killed worker loses no result.
What the cluster did (tasks, their seconds, bytes moved, each worker's CPU and peak memory) goes to
the stage's manifest under `info.engine` (musicrec.engine_usage).
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import sys
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from musicrec.configspec import ConfigError
from musicrec.errors import InputError
from musicrec.progress import Progress, track

log = logging.getLogger("musicrec")

#: distributions whose versions must match between the client and every worker: the code the tasks
#: run and the libraries whose bytes end up in the outputs
PACKAGES = ("numpy", "polars", "scikit-learn", "lightgbm", "implicit", "musicrec", "cloudpickle", "dask",
            "distributed")
RETRIES = 2   # a task raising on a worker is tried this many more times before the map fails


def task_threads(default: int) -> int:
    """Threads a task may use: inside a Dask worker, the worker's own (give it to LightGBM's num_threads,
    scikit-learn's n_jobs, threadpoolctl); elsewhere `default` (the config's train.threads)."""
    if "distributed" not in sys.modules:   # never imported: not a worker (and the local path imports nothing)
        return default
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):
        return default


def _in_order(engine, fn, items, shared, desc: str, unit: str, progress) -> list:
    items = list(items)
    out: list = [None] * len(items)
    for i, result in engine.map_unordered(fn, items, shared, desc=desc, unit=unit, progress=progress):
        out[i] = result
    return out


def _counted(items, desc: str, unit: str, progress: Progress | None):
    """(Progress to update per result, context closing it): the caller's when given (its own count
    goes on), else one of this map's."""
    if progress is not None:
        return progress, nullcontext()
    p = Progress(len(items), desc, unit=unit)
    return p, p


class LocalEngine:
    """The tasks run here, in order: the reference every cluster run must equal."""

    kind = "local"
    client = None
    slots = 1   # tasks running at once

    def map_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any = None, *,
                      desc: str = "tasks", unit: str = "tasks", progress: Progress | None = None,
                      window: int | None = None) -> Iterator[tuple[int, Any]]:
        """fn(shared, item) for each item, in order; items are taken one at a time, so a lazy
        iterable (window) sees the previous result before it yields the next item."""
        if progress is None and window is None:
            items = track(list(items), desc, unit=unit)
        for i, item in enumerate(items):
            yield i, fn(shared, item)
            if progress is not None:
                progress.update()

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any = None, *, desc: str = "tasks",
            unit: str = "tasks", progress: Progress | None = None) -> list:
        return _in_order(self, fn, items, shared, desc, unit, progress)

    def keep(self, *objs):
        """Nothing to send: the tasks run on these objects here."""
        return nullcontext()


class _UserError:
    """An InputError or ConfigError raised by a task, carried back as a value: its message is for the user,
    and a task retry would only repeat it (InputError's own arguments do not survive pickling)."""

    def __init__(self, exc: Exception):
        self.kind = "input" if isinstance(exc, InputError) else "config"
        self.args = (exc.file, exc.column, exc.rule) if isinstance(exc, InputError) else (str(exc),)

    def raise_it(self):
        raise InputError(*self.args) if self.kind == "input" else ConfigError(*self.args)


def _run_task(fn, shared, item):
    try:
        return fn(shared, item)
    except (InputError, ConfigError) as exc:
        return _UserError(exc)


_END = object()


class _Submitter:
    """Submits one map's tasks, numbered in the order submitted (its items' positions)."""

    def __init__(self, client, fn, shared_f, desc: str, run=_run_task):
        self.client, self.fn, self.shared_f, self.run = client, fn, shared_f, run
        self.slug = re.sub(r"[^a-z0-9]+", "-", desc.lower()).strip("-")[:40] or "task"
        self.token = uuid.uuid4().hex[:8]
        self.futures: list = []
        self.index: dict[str, int] = {}

    def __call__(self, item):
        i = len(self.futures)
        f = self.client.submit(self.run, self.fn, self.shared_f, item, key=f"{self.slug}-{self.token}-{i}",
                               pure=False, retries=RETRIES)
        self.index[f.key] = i
        self.futures.append(f)
        return f


class DaskEngine:
    """Tasks on a Dask cluster: a scheduler at `engine.address`, or a LocalCluster started here."""

    kind = "dask"

    def __init__(self, client, cluster, ecfg: dict):
        self.client, self.cluster, self.ecfg = client, cluster, ecfg
        self.usage = None   # musicrec.engine_usage.Usage, set by open_engine
        self._kept: dict[int, tuple[Any, str]] = {}   # id(obj) -> (obj, the plugin holding each worker's copy)

    @property
    def slots(self) -> int:
        """Tasks the cluster runs at once: its workers' threads."""
        infos = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(int(info.get("nthreads", 1)) for info in infos))

    def _scatter(self, obj):
        """obj on every worker, as one future (a list of one: scatter would split a list, tuple or dict)."""
        if self.usage is not None:
            self.usage.shared(obj, len(self.workers))
        return self.client.scatter([obj], broadcast=True, hash=False)[0]

    @contextmanager
    def keep(self, *objs):
        """Each object installed in every worker once, as the worker's private copy, for all the maps
        of the block that share it (see the module docstring). A worker gets the object as it is
        here when the block begins: change it before, not inside."""
        from musicrec.engine_worker import Private

        added = [o for o in {id(o): o for o in objs}.values() if id(o) not in self._kept]
        try:
            for o in added:
                name = f"musicrec-shared-{uuid.uuid4().hex[:12]}"
                if self.usage is not None:
                    self.usage.shared(o, len(self.workers))
                self.client.register_plugin(Private(name, o), name=name)
                self._kept[id(o)] = (o, name)
            yield
        finally:
            for o in added:
                if id(o) in self._kept:
                    self.client.unregister_worker_plugin(self._kept.pop(id(o))[1])

    @property
    def workers(self) -> list[str]:
        """Worker addresses, sorted."""
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    def worker_names(self) -> list[str]:
        """Worker names in a fixed order, to place data on (a LocalCluster's worker restarted by its nanny
        keeps its name, not its address)."""
        infos = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return sorted((info["name"] for info in infos), key=str)

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any = None, *, desc: str = "tasks",
            unit: str = "tasks", progress: Progress | None = None) -> list:
        return _in_order(self, fn, items, shared, desc, unit, progress)

    def map_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any = None, *,
                      desc: str = "tasks", unit: str = "tasks", progress: Progress | None = None,
                      window: int | None = None) -> Iterator[tuple[int, Any]]:
        """(index, fn(shared, item)) as tasks finish. With `window`, at most that many tasks run at
        once and the next item is taken from `items` (which may be lazy) when one finishes: the items
        taken are a prefix of `items`, and every item taken is run and yielded."""
        from distributed import as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        from musicrec.engine_worker import run_private

        source = iter(items) if window is not None else iter(list(items))
        first = list(itertools.islice(source, window))
        if not first:
            return
        kept = self._kept.get(id(shared))
        own = kept is None or kept[0] is not shared        # scattered for this map alone
        shared_f = kept[1] if not own else self._scatter(shared) if shared is not None else None
        submit = _Submitter(self.client, fn, shared_f, desc, run=_run_task if own else run_private)
        pending = as_completed([submit(item) for item in first], loop=self.client.loop, with_results=True)
        p, closing = _counted(first if window is None else [], desc, unit, progress)
        try:
            with closing:
                for f, result in pending:
                    if isinstance(result, _UserError):
                        result.raise_it()
                    f.release()   # the worker may drop it: the client holds it now
                    nxt = next(source, _END) if window is not None else _END
                    if nxt is not _END:
                        pending.add(submit(nxt))
                    p.update()
                    yield submit.index[f.key], result
        except KilledWorker as exc:
            raise ConfigError(f"engine: every worker that ran task {exc.task} died ({exc.allowed_failures + 1} tries): "
                              "out of memory? docs/scale.md has the memory a worker needs per stage") from None
        except FutureCancelledError:
            raise ConfigError(f"engine: the cluster at {self.address} cancelled the tasks of {desc!r} "
                              "(the scheduler or its workers went away)") from None
        finally:
            self.client.cancel(submit.futures)
            if own and shared_f is not None:
                shared_f.release()

    @property
    def address(self) -> str:
        return self.client.scheduler.address


def _quiet_distributed() -> None:
    """distributed's own INFO lines (every worker start, every connection) would bury the stage's log:
    warnings only, here and (through the environment they inherit) in the worker processes started here."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    for name in ("distributed", "bokeh", "tornado"):
        if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
            logging.getLogger(name).setLevel(logging.WARNING)


def connect(ecfg: dict) -> DaskEngine:
    """A client on the configured scheduler, or on a LocalCluster started here; ConfigError if none answers."""
    from distributed import Client, LocalCluster

    _quiet_distributed()
    timeout = ecfg["connect_timeout_s"]
    cluster = None
    if ecfg["address"]:
        try:
            client = Client(ecfg["address"], timeout=f"{timeout}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"config key 'engine.address' = {ecfg['address']!r}: no Dask scheduler answered within "
                              f"{timeout:g} s ({reason})") from None
    else:
        cluster = LocalCluster(n_workers=ecfg["workers"], threads_per_worker=ecfg["threads_per_worker"],
                               processes=True, silence_logs=logging.WARNING)
        client = Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(1, timeout=timeout)
        check_workers(client)
    except BaseException:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    return DaskEngine(client, cluster, ecfg)


def check_workers(client) -> None:
    """Every worker has the client's version of each package in PACKAGES (and the same Python), and the
    client's musicrec source."""
    try:
        versions = client.get_versions(packages=list(PACKAGES))
    except TimeoutError:
        raise ConfigError(f"engine: the scheduler at {client.scheduler.address} has no worker") from None
    mine = versions["client"]["packages"]
    for worker, info in sorted(versions["workers"].items()):
        theirs = info.get("packages", {}) if isinstance(info, dict) else {}
        for pkg in ("python", *PACKAGES):
            if theirs.get(pkg) != mine.get(pkg):
                what = "lacks" if theirs.get(pkg) is None else f"has {pkg} {theirs.get(pkg)}, not"
                raise ConfigError(f"engine: worker {worker} {what} {pkg} {mine.get(pkg)} (the client's): install "
                                  "the same versions on every worker (pip install -r requirements.txt)")
    ours = code_hash()
    for worker, theirs in sorted(client.run(code_hash).items()):
        if theirs != ours:
            raise ConfigError(f"engine: worker {worker} runs other musicrec code than the client (source hash {theirs}, "
                              f"not {ours}): check out the same commit on every worker")


def code_hash() -> str:
    """A hash of the musicrec package's source (file names and bytes): two checkouts share a version string."""
    import musicrec

    root = Path(musicrec.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def open_engine(cfg: dict, st=None) -> Iterator[LocalEngine | DaskEngine]:
    """The configured engine, closed at the end; with a StageRun `st`, what the cluster did goes to
    its manifest (`info.engine`)."""
    ecfg = cfg["engine"]
    if ecfg["kind"] == "local":
        yield LocalEngine()
        return
    from musicrec.engine_usage import Usage

    eng = connect(ecfg)
    try:
        eng.usage = Usage(eng.client)
        where = (f"LocalCluster of {len(eng.workers)} worker processes x {ecfg['threads_per_worker']} thread(s)"
                 if eng.cluster is not None else f"scheduler {eng.address}, {len(eng.workers)} worker(s)")
        log.info("engine: dask, %s; dashboard %s", where, eng.client.dashboard_link)
        yield eng
        if st is not None:
            st.info["engine"] = eng.usage.summary(ecfg, where)
    finally:
        eng.client.close()
        if eng.cluster is not None:
            eng.cluster.close()
