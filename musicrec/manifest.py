"""Stage manifests: what a stage read, wrote and was configured with, and the staleness check.

A stage writes its outputs under temporary names, renames them into place, and writes
`manifest.json` last, so a manifest exists only for a stage that finished. Downstream stages compare
the manifests of every upstream stage with the current config and with the files on disk before
they start; they never rerun an upstream stage themselves.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from musicrec import stages
from musicrec.config import section_hash
from musicrec.progress import peak_rss_gb, rss_gb

log = logging.getLogger("musicrec")

STAGES = tuple(stages.STAGES)
# Config sections each stage reads itself (musicrec.stages); a stage's manifest records their hashes.
STAGE_SECTIONS = {name: s.sections for name, s in stages.STAGES.items()}

LIBRARIES = ("polars", "pyarrow", "numpy", "scipy", "scikit-learn", "lightgbm", "implicit", "matplotlib")


class StaleError(RuntimeError):
    """An upstream stage is missing or out of date; the message names the command that refreshes it."""


def stage_number(stage: str) -> str:
    return stage[:2]


def refresh_hint(stage: str) -> str:
    return f"run ./run.sh {stage_number(stage)}"


def file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: Path, known: dict | None = None) -> dict:
    """Hash, size and mtime of a file; reuses a known hash when size and mtime still match."""
    st = path.stat()
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
        return dict(known)
    return {"hash": file_hash(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def stage_dir(cfg: dict, stage: str) -> Path:
    return Path(cfg["paths"]["data"]) / stage


def read_manifest(cfg: dict, stage: str) -> dict | None:
    path = stage_dir(cfg, stage) / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _changed_sections(cfg: dict, manifest: dict) -> list[str]:
    recorded = manifest.get("config", {})
    return [s for s, h in recorded.items() if section_hash(cfg, s) != h]


def _unchanged(path: Path, rec: dict) -> bool:
    """True when a file still is what a manifest recorded (cheap size/mtime check first)."""
    if not path.is_file():
        return False
    st = path.stat()
    if st.st_size == rec["size"] and st.st_mtime_ns == rec["mtime_ns"]:
        return True
    return st.st_size == rec["size"] and file_hash(path) == rec["hash"]


def _same_folder(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b) or os.path.realpath(a) == os.path.realpath(b)


def _raw_changed(cfg: dict, raw: dict) -> str | None:
    """Why the raw input folder a stage read is no longer the one the config names, or None."""
    if raw.get("source") == "kkbox" and cfg["data"]["source"] == "kkbox":
        if not _same_folder(raw["paths.raw"], cfg["paths"]["raw"]):
            return f"paths.raw changed: was {raw['paths.raw']}, now {cfg['paths']['raw']}"
    for name in raw.get("absent", []):
        if (Path(raw["folder"]) / name).exists():
            return f"{Path(raw['folder']) / name} appeared"
    return None


def stale_reason(cfg: dict, stage: str, manifests: dict[str, dict]) -> str | None:
    """Why `stage`'s manifest no longer matches the config and files on disk, or None when it does.

    `manifests` holds the manifests of the stages before it (their outputs are its inputs).
    """
    m = manifests[stage]
    changed = _changed_sections(cfg, m)
    if changed:
        return ", ".join(f"config.{s}" for s in changed) + " changed"
    if "raw" in m and (why := _raw_changed(cfg, m["raw"])):
        return why
    for path, rec in m.get("inputs", {}).items():
        producer = rec.get("stage")
        if producer is None:  # an external file (raw CSV)
            if not _unchanged(Path(path), rec):
                return f"its input {path} changed"
        else:
            produced = manifests.get(producer, {}).get("outputs", {}).get(Path(path).name)
            if produced is None or produced["hash"] != rec["hash"]:
                return f"{producer} reran since, {Path(path).name} changed"
    return None


def check_upstream(cfg: dict, stage: str) -> None:
    """Raise StaleError naming the earliest upstream stage that is missing or out of date."""
    upstream = STAGES[: STAGES.index(stage)]
    manifests: dict[str, dict] = {}
    for up in upstream:
        m = read_manifest(cfg, up)
        if m is None:
            raise StaleError(f"{up} has not run (no {stage_dir(cfg, up) / 'manifest.json'}): {refresh_hint(up)}")
        manifests[up] = m
        why = stale_reason(cfg, up, manifests)
        if why:
            raise StaleError(f"{up} is stale ({why}): {refresh_hint(up)}")


def stage_states(cfg: dict) -> dict[str, tuple[str, str]]:
    """(state, why) per stage: 'fresh', 'stale' (with the reason) or 'missing' (never ran)."""
    manifests: dict[str, dict] = {}
    states: dict[str, tuple[str, str]] = {}
    earlier_bad = None
    for stage in STAGES:
        m = read_manifest(cfg, stage)
        if m is None:
            states[stage] = ("missing", "has not run")
            earlier_bad = earlier_bad or stage
            continue
        manifests[stage] = m
        why = stale_reason(cfg, stage, manifests)
        if why is None:
            bad = [n for n, rec in m.get("outputs", {}).items() if not _unchanged(stage_dir(cfg, stage) / n, rec)]
            why = f"its output {bad[0]} changed or is missing" if bad else None
        if why is None and earlier_bad:
            why = f"{earlier_bad} is not fresh"
        states[stage] = ("fresh", "") if why is None else ("stale", why)
        if why is not None:
            earlier_bad = earlier_bad or stage
    return states


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_leftovers(folder: Path) -> list[str]:
    """Delete `.tmp-<pid>` folders and `.manifest.json.tmp` that killed runs left in a stage folder.

    A folder whose process is still alive belongs to a run in progress and is kept.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.glob(".tmp-*"):
        pid = path.name.removeprefix(".tmp-")
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    stray = folder / ".manifest.json.tmp"
    if stray.exists():
        stray.unlink()
        removed.append(stray.name)
    if removed:
        log.info("%s: removed leftovers of an interrupted run: %s", folder.name, ", ".join(sorted(removed)))
    return removed


class StageRun:
    """One run of one stage: checks upstream, hands out temporary output paths, commits atomically.

    Use as a context manager; outputs become visible only when the block ends without error.
    """

    def __init__(self, stage: str, cfg: dict, force: bool = False):
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.stage = stage
        self.cfg = cfg
        self.force = force
        self.dir = stage_dir(cfg, stage)
        self.tmp = self.dir / f".tmp-{os.getpid()}"
        self.inputs: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.rows: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.peak_gb: dict[str, float] = {}
        self.info: dict[str, Any] = {}
        self.raw: dict[str, Any] | None = None
        self._t0 = time.perf_counter()
        self._upstream: dict[str, dict] = {}
        self._previous = read_manifest(cfg, stage) or {}

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "StageRun":
        if not self.force:
            check_upstream(self.cfg, self.stage)
        remove_leftovers(self.dir)
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            self.tmp.mkdir(parents=True)
            log.info("%s: start (outputs in %s)", self.stage, self.dir)
        except BaseException:  # Ctrl-C before `with` owns the folder: __exit__ will not run
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- inputs --------------------------------------------------------------------------------
    def input(self, stage: str, name: str) -> Path:
        """Path of an upstream stage's output, verified against that stage's manifest; only what
        musicrec.stages declares this stage reads."""
        if not stages.declared(self.stage, stage, name):
            raise RuntimeError(f"{self.stage} reads {stage}/{name}, which musicrec.stages does not declare")
        if stage not in self._upstream:
            m = read_manifest(self.cfg, stage)
            if m is None:
                raise StaleError(f"{stage} has not run: {refresh_hint(stage)}")
            self._upstream[stage] = m
        rec = self._upstream[stage]["outputs"].get(name)
        path = stage_dir(self.cfg, stage) / name
        if rec is None:
            raise StaleError(f"{stage} did not write {name}: {refresh_hint(stage)}")
        if not path.is_file():
            raise StaleError(f"{path} is missing: {refresh_hint(stage)}")
        if not self.force and not _unchanged(path, rec):
            raise StaleError(f"{path} changed after {stage} wrote it: {refresh_hint(stage)}")
        self.inputs[str(path)] = {**file_record(path, rec), "stage": stage}
        return path

    def external_input(self, path: Path) -> Path:
        """Record a file from outside the pipeline (raw CSVs); its hash is cached across runs."""
        path = Path(path)
        key = str(path.resolve())  # absolute: the check must not depend on the folder it runs from
        known = self._previous.get("inputs", {}).get(key)
        self.inputs[key] = file_record(path, known)
        return path

    def raw_folder(self, folder: Path, absent: list[str] = ()) -> None:
        """Record which raw folder was read (and which optional files it lacked) for the staleness check."""
        self.raw = {"source": self.cfg["data"]["source"], "paths.raw": self.cfg["paths"]["raw"],
                    "folder": str(Path(folder).resolve()), "absent": list(absent)}

    # -- outputs -------------------------------------------------------------------------------
    def output(self, name: str) -> Path:
        """Temporary path to write output `name` to; it is moved into place on commit."""
        self.outputs.setdefault(name, {})
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)  # names may hold a subfolder, e.g. plots/roc.png
        return path

    def write_parquet(self, df: pl.DataFrame, name: str) -> Path:
        """zstd at level 1: at KKBOX size it writes 03's feature tables in 60% of the default level's
        time for files about 9% larger."""
        path = self.output(name)
        df.write_parquet(path, compression="zstd", compression_level=1, statistics=True)
        self.rows[name] = df.height
        return path

    def write_json(self, obj: Any, name: str) -> Path:
        path = self.output(name)
        path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
        return path

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step; timings go to the log and the manifest.

        The log says when a step starts and, when this stage ran before, how long it took then and
        about how long the stage has left, so a long step is never silent.
        """
        before = self._previous.get("timings_s", {})
        hint = f" (last run {before[name]:.1f}s)" if isinstance(before.get(name), (int, float)) else ""
        log.info("%s: %s ...%s", self.stage, name, hint)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = round(self.timings.get(name, 0.0) + dt, 3)
        peak = peak_rss_gb()
        self.peak_gb[name] = peak
        left = self._left_by_last_run(before)
        log.info("%s: %s done in %.2fs, %.2f GB in use, peak so far %.2f GB%s", self.stage, name, dt,
                 rss_gb(), peak,
                 f", about {left:.0f}s left (by the last run)" if left is not None and left >= 1 else "")

    def _left_by_last_run(self, before: dict) -> float | None:
        """Seconds the steps not yet run took in the last run of this stage, or None without one."""
        steps = {k: v for k, v in before.items() if k != "total" and isinstance(v, (int, float))}
        if not steps:
            return None
        return sum(v for k, v in steps.items() if k not in self.timings)

    def _commit(self) -> None:
        for name in self.outputs:
            if not (self.tmp / name).is_file():
                raise RuntimeError(f"{self.stage}: output {name} was declared but not written")
        records = {name: file_record(self.tmp / name) for name in self.outputs}
        manifest_path = self.dir / "manifest.json"
        manifest_path.unlink(missing_ok=True)  # a half-renamed set of outputs must not look valid
        for name in self.outputs:
            (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tmp / name, self.dir / name)
            records[name]["mtime_ns"] = (self.dir / name).stat().st_mtime_ns
        for name in set(self._previous.get("outputs", {})) - set(self.outputs):
            (self.dir / name).unlink(missing_ok=True)  # an output this run no longer produces
        self.timings["total"] = round(time.perf_counter() - self._t0, 3)
        manifest = {
            "stage": self.stage,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": self.cfg["seed"],
            "config": {s: section_hash(self.cfg, s) for s in STAGE_SECTIONS[self.stage]},
            "forced": self.force,
            "inputs": self.inputs,
            **({"raw": self.raw} if self.raw is not None else {}),
            "outputs": records,
            "rows": self.rows,
            "timings_s": self.timings,
            "peak_rss_gb_after_step": self.peak_gb,
            "info": self.info,
            "versions": library_versions(),
            "command": " ".join(sys.argv),
        }
        tmp = self.dir / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
        os.replace(tmp, manifest_path)
        log.info("%s: done in %.1fs, wrote %s", self.stage, self.timings["total"], ", ".join(self.outputs))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")
