"""The engine on a real distributed.LocalCluster of worker processes: the same results as in-process,
shared objects sent once per worker, no result lost to a killed worker, one line for a bad cluster;
stage 01 on a listening log byte for byte the same as with the local engine."""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from musicrec import preprocess
from musicrec.configspec import ConfigError
from musicrec.engine import PACKAGES, LocalEngine, open_engine
from musicrec.readers import listen_events
from musicrec.synthetic import listens as synthetic_listens

from conftest import REPO, make_cfg, run_script

pytest.importorskip("distributed")


def dask_cfg(**engine) -> dict:
    return {"engine": {"kind": "dask", "address": None, "workers": 2, "threads_per_worker": 1,
                       "connect_timeout_s": 20.0, **engine}}


@pytest.fixture(scope="module")
def engine():
    """Two single-threaded worker processes, shared by the tests that leave them alive."""
    with open_engine(dask_cfg()) as eng:
        yield eng


def block_stats(shared: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A numpy task: column sums and a matrix product over a block of rows of the shared matrix."""
    block = shared[rows]
    return np.concatenate([block.sum(axis=0), (block.T @ block).ravel()])


def where_and_which(shared, item) -> tuple[int, int, int]:
    """The worker process, the shared object's identity there, and the item."""
    time.sleep(0.01)
    return os.getpid(), id(shared), item


def slow_square(shared, item):
    time.sleep(0.25)
    return (item * item + shared["offset"], os.getpid())


def test_map_equals_local_execution_with_a_shared_array(engine):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 8))
    blocks = np.array_split(rng.permutation(3000), 13)
    got = engine.map(block_stats, blocks, shared=X, desc="block stats")
    want = LocalEngine().map(block_stats, blocks, shared=X)
    assert len(got) == len(want) == 13
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)   # the same code on the same bytes: the same floats
    assert engine.map(block_stats, [], shared=X) == []


def test_the_shared_object_reaches_each_worker_once(engine):
    big = np.arange(2_000_000, dtype=np.float64)   # 16 MB
    got = engine.map(where_and_which, range(24), shared=big, desc="where")
    assert [item for _, _, item in got] == list(range(24))   # input order
    per_worker = {}
    for pid, ident, _ in got:
        per_worker.setdefault(pid, set()).add(ident)
    assert os.getpid() not in per_worker                        # ran in the worker processes
    assert all(len(ids) == 1 for ids in per_worker.values())    # one copy per worker, not one per task


def test_a_killed_worker_loses_no_result():
    items = list(range(16))
    shared = {"offset": 7}
    with open_engine(dask_cfg()) as eng:
        pids = set(eng.client.run(os.getpid).values())
        got, killed = {}, None
        for i, (value, pid) in eng.map_unordered(slow_square, items, shared=shared, desc="squares"):
            got[i] = value
            if killed is None and len(got) == 3:      # mid-map: the other worker is running a task
                killed = next(p for p in sorted(pids) if p != pid)
                os.kill(killed, signal.SIGKILL)
        alive = set(eng.client.run(os.getpid).values())
    assert killed is not None and killed not in alive          # the worker really died (its nanny started another)
    assert [got[i] for i in items] == [v for v, _ in LocalEngine().map(slow_square, items, shared=shared)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_scheduler_at_the_address_is_one_line():
    cfg = dask_cfg(address=f"tcp://127.0.0.1:{free_port()}", connect_timeout_s=1.0)
    with pytest.raises(ConfigError, match=r"engine.address.*no Dask scheduler answered within 1 s"):
        with open_engine(cfg):
            pass


def assert_foreign_worker_refused(site: Path, message: str, cwd: Path | None = None) -> None:
    """A real worker process importing from `site` first joins a scheduler: opening the engine
    there stops with the one-line error `message` (a regex)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cluster:
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                                   "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                  env={**os.environ, "PYTHONPATH": str(site)}, cwd=cwd,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with pytest.raises(ConfigError, match=message):
                with open_engine(dask_cfg(address=cluster.scheduler_address)):
                    pass
        finally:
            worker.kill()
            worker.wait()


def test_a_worker_with_another_package_version_is_one_line(tmp_path):
    """A real worker process whose scikit-learn distribution says another version than the client's."""
    fake = tmp_path / "site" / "scikit_learn-0.0.1.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: scikit-learn\nVersion: 0.0.1\n")
    assert "scikit-learn" in PACKAGES
    assert_foreign_worker_refused(tmp_path / "site", r"engine: worker tcp://\S+ has scikit-learn 0.0.1, not scikit-learn ")


def test_a_worker_with_other_musicrec_code_is_one_line(tmp_path):
    """A real worker process importing a copy of musicrec with one changed line (the same version string)."""
    import shutil

    import musicrec

    copy = tmp_path / "site" / "musicrec"
    shutil.copytree(Path(musicrec.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "rng.py").write_text((copy / "rng.py").read_text() + "\n# another checkout\n")
    assert_foreign_worker_refused(tmp_path / "site", r"engine: worker tcp://\S+ runs other musicrec code than the client",
                                  cwd=tmp_path)


# -- stage 01 on the cluster ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine") / "lb"
    synthetic_listens.generate(folder, "tiny", "listenbrainz", random_state=[42, 21])
    return folder / "listens"


def stage01(data, log, *sets):
    cfg = make_cfg(data, None, "data.source=listens", "data.listens.format=listenbrainz",
                   f"data.listens.path={log}", *sets)
    return preprocess.run(cfg)


def test_stage01_on_the_cluster_is_byte_for_byte_the_local_one(tiny_log, tmp_path, monkeypatch):
    monkeypatch.setattr(listen_events, "ROWS_PER_BUCKET", 3_000)   # ~11 buckets: ~11 tasks on 2 workers
    local = stage01(tmp_path / "local", tiny_log)
    dask = stage01(tmp_path / "dask", tiny_log, "engine.kind=dask", "engine.workers=2")
    assert local == dask   # quality.json
    a, b = tmp_path / "local" / "01_preprocess", tmp_path / "dask" / "01_preprocess"
    files = sorted(p.name for p in a.glob("*.parquet"))
    assert "interactions.parquet" in files and files == sorted(p.name for p in b.glob("*.parquet"))
    for name in files:
        assert pl.read_parquet(a / name).equals(pl.read_parquet(b / name)), name
        assert hashlib.sha256((a / name).read_bytes()).digest() == hashlib.sha256((b / name).read_bytes()).digest(), name
    assert (a / "quality.json").read_bytes() == (b / "quality.json").read_bytes()
    info = preprocess_info(b)
    assert info["tasks"] >= 10 and set(info["workers"]) and info["shared_bytes"] > 0


def preprocess_info(folder):
    import json

    return json.loads((folder / "manifest.json").read_text())["info"]["engine"]


def test_an_unreachable_scheduler_stops_the_stage_with_one_line(tiny_log, tmp_path):
    port = free_port()
    res = run_script("01_preprocess.py", "-q", "--set", f"paths.data={tmp_path}", "--set", "data.source=listens",
                     "--set", "data.listens.format=listenbrainz", "--set", f"data.listens.path={tiny_log}",
                     "--set", "engine.kind=dask", "--set", f"engine.address=tcp://127.0.0.1:{port}",
                     "--set", "engine.connect_timeout_s=1")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"01_preprocess: error: config key 'engine.address' = 'tcp://127.0.0.1:{port}': no Dask scheduler answered "
        f"within 1 s ({res.stderr.split('within 1 s (', 1)[1].strip()}"], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "01_preprocess" / "manifest.json").exists()


def test_engine_keys_are_validated_and_never_make_a_stage_stale(tmp_path):
    from musicrec import config, manifest

    with pytest.raises(ConfigError, match="'engine.kind' = 'spark' is not allowed: must be one of local, dask"):
        make_cfg(tmp_path, None, "engine.kind=spark")
    with pytest.raises(ConfigError, match="'engine.address' = 'localhost' is not allowed"):
        make_cfg(tmp_path, None, "engine.address=localhost")
    with pytest.raises(ConfigError, match="'train.lgbm.engine' = 'dask' is not allowed with engine.kind: local"):
        make_cfg(tmp_path, None, "train.lgbm.engine=dask")
    assert all("engine" not in sections for sections in manifest.STAGE_SECTIONS.values())
    a, b = make_cfg(tmp_path), make_cfg(tmp_path, None, "engine.kind=dask", "engine.workers=7")
    assert all(config.section_hash(a, s) == config.section_hash(b, s) for s in a if s != "engine")
    assert REPO.joinpath("docs", "scale.md").is_file()
