"""What a Dask cluster did for one stage: its tasks, their seconds, the bytes they moved, and each
worker's CPU seconds and peak memory; stored in the stage's manifest (`info.engine`), read by
bench/benchmark.py.

Sources: the scheduler's task stream (`client.get_task_stream`: every task's compute and transfer
intervals and its result's size), and `client.run` on every worker at the start and the end of the
stage (`resource.getrusage` of the worker process and the worker's count of bytes it sent to other
workers and to the client); `shared_bytes` counts each shared object once per worker it reached.
CPU seconds and bytes are differences over the stage; the peak memory is the worker process's
lifetime peak (the OS keeps no other), which is the stage's own on a LocalCluster started
for it and an upper bound on a long-lived cluster.
"""
from __future__ import annotations

import resource
import time


def worker_usage(dask_worker=None) -> dict:
    """On a worker (client.run): CPU seconds and peak RSS of its process, bytes it sent (to other workers
    and to the client)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": r.ru_utime + r.ru_stime, "peak_rss_gb": r.ru_maxrss / 1024**2,
            "sent_bytes": int(getattr(dask_worker, "transfer_outgoing_bytes_total", 0) or 0)}


def closure_values(fn) -> list:
    """What a function's closure holds, cell by cell (None for a cell not yet assigned)."""
    out = []
    for cell in fn.__closure__ or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:   # an empty cell
            out.append(None)
    return out


def payload_bytes(obj, depth: int = 5, seen: set | None = None) -> int:
    """The bytes of what an object holds (dask's sizeof of each array or table), looking inside lists,
    tuples, dicts, objects' attributes and functions' closures (a closure brings its estimator), each
    object counted once."""
    from dask.sizeof import sizeof

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if depth == 0 or isinstance(obj, (str, bytes, int, float)) or hasattr(obj, "__array__"):
        return int(sizeof(obj))
    if isinstance(obj, dict):
        parts = list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        parts = list(obj)
    elif callable(obj) and getattr(obj, "__closure__", None):
        parts = closure_values(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        parts = list(vars(obj).values())
    else:
        return int(sizeof(obj))
    return sum(payload_bytes(x, depth - 1, seen) for x in parts)


class Usage:
    """Counters from the engine's start; `summary()` at the end of the stage."""

    def __init__(self, client):
        self.client = client
        self.start = time.time()
        self.wall0 = time.perf_counter()
        client.get_task_stream(start=self.start)   # registers the scheduler's task-stream plugin from now on
        self.before = client.run(worker_usage)
        self.shared_bytes = 0

    def shared(self, obj, workers: int) -> None:
        """Count a shared object sent to `workers` workers (its arrays' bytes, also inside an object)."""
        self.shared_bytes += workers * payload_bytes(obj)

    def summary(self, ecfg: dict, where: str) -> dict:
        stream = self.client.get_task_stream(start=self.start)
        after = self.client.run(worker_usage)
        compute = transfer = 0.0
        result_bytes, done, erred = 0, 0, 0
        for rec in stream:
            for ss in rec.get("startstops", ()):
                if ss.get("action") == "compute":
                    compute += ss["stop"] - ss["start"]
                elif ss.get("action") == "transfer":
                    transfer += ss["stop"] - ss["start"]
            if rec.get("status") == "OK":
                done += 1
                result_bytes += int(rec.get("nbytes") or 0)
            else:
                erred += 1
        workers = {}
        for addr, now in sorted(after.items()):
            was = self.before.get(addr, {"cpu_s": 0.0, "sent_bytes": 0})   # a worker started since (a restart)
            workers[addr] = {"cpu_s": round(now["cpu_s"] - was["cpu_s"], 2), "peak_rss_gb": round(now["peak_rss_gb"], 3),
                             "sent_bytes": now["sent_bytes"] - was["sent_bytes"]}
        return {
            "kind": "dask", "cluster": where, "workers_configured": ecfg["workers"] if not ecfg["address"] else None,
            "threads_per_worker": ecfg["threads_per_worker"] if not ecfg["address"] else None,
            "wall_s": round(time.perf_counter() - self.wall0, 2),
            "tasks": done, "tasks_erred": erred, "task_compute_s": round(compute, 3),
            "task_transfer_s": round(transfer, 3), "output_bytes": result_bytes,
            "shared_bytes": self.shared_bytes, "worker_sent_bytes": sum(w["sent_bytes"] for w in workers.values()),
            "workers": workers, "source": "task stream (client.get_task_stream) and client.run(resource.getrusage)",
        }
