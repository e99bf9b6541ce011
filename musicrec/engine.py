"""Where a stage's tasks run: in this process (`engine.kind: local`) or on a Dask cluster (`dask`).

`open_engine(cfg)` yields an engine whose `map(fn, items, shared=...)` runs `fn(shared, item)` for
every item and returns the results in input order. `shared` (a model, a design matrix, a lookup
table) reaches each worker once (scattered, broadcast), never once per task, so put what is large
there and keep the items small (an index, a block of row numbers). The local engine calls the same
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
import logging
import os
import re
import uuid
from contextlib import contextmanager
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
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):
        return default


def _in_order(engine, fn, items, shared, desc: str, unit: str) -> list:
    items = list(items)
    out: list = [None] * len(items)
    for i, result in engine.map_unordered(fn, items, shared, desc=desc, unit=unit):
        out[i] = result
    return out


class LocalEngine:
    """The tasks run here, in order: the reference every cluster run must equal."""

    kind = "local"
    client = None

    def map_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any = None, *,
                      desc: str = "tasks", unit: str = "tasks") -> Iterator[tuple[int, Any]]:
        items = list(items)
        for i, item in enumerate(track(items, desc, unit=unit)):
            yield i, fn(shared, item)

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any = None, *, desc: str = "tasks",
            unit: str = "tasks") -> list:
        return _in_order(self, fn, items, shared, desc, unit)


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


class DaskEngine:
    """Tasks on a Dask cluster: a scheduler at `engine.address`, or a LocalCluster started here."""

    kind = "dask"

    def __init__(self, client, cluster, ecfg: dict):
        self.client, self.cluster, self.ecfg = client, cluster, ecfg
        self.usage = None   # musicrec.engine_usage.Usage, set by open_engine

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
            unit: str = "tasks") -> list:
        return _in_order(self, fn, items, shared, desc, unit)

    def map_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable, shared: Any = None, *,
                      desc: str = "tasks", unit: str = "tasks") -> Iterator[tuple[int, Any]]:
        from distributed import as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        items = list(items)
        if not items:
            return
        client = self.client
        # a list of one: scatter would split a list, tuple or dict into futures of their own
        shared_f = client.scatter([shared], broadcast=True, hash=False)[0] if shared is not None else None
        if shared is not None and self.usage is not None:
            self.usage.shared(shared, len(self.workers))
        slug = re.sub(r"[^a-z0-9]+", "-", desc.lower()).strip("-")[:40] or "task"
        token = uuid.uuid4().hex[:8]
        futures = [client.submit(_run_task, fn, shared_f, item, key=f"{slug}-{token}-{i}", pure=False,
                                 retries=RETRIES) for i, item in enumerate(items)]
        where = {f.key: i for i, f in enumerate(futures)}
        try:
            with Progress(len(items), desc, unit=unit) as p:
                for f, result in as_completed(futures, loop=client.loop, with_results=True):
                    if isinstance(result, _UserError):
                        result.raise_it()
                    f.release()   # the worker may drop it: the client holds it now
                    p.update()
                    yield where[f.key], result
        except KilledWorker as exc:
            raise ConfigError(f"engine: every worker that ran task {exc.task} died ({exc.allowed_failures + 1} tries): "
                              "out of memory? docs/scale.md has the memory a worker needs per stage") from None
        except FutureCancelledError:
            raise ConfigError(f"engine: the cluster at {self.address} cancelled the tasks of {desc!r} "
                              "(the scheduler or its workers went away)") from None
        finally:
            client.cancel(futures)
            if shared_f is not None:
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
