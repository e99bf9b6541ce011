"""Stage 06 on a real distributed.LocalCluster (two single-threaded worker processes): its outputs
equal the local engine's, also when a worker process is killed in the middle of its retrains."""
from __future__ import annotations

import json
import os
import shutil
import signal

import polars as pl
import pytest

from musicrec.engine import DaskEngine
from musicrec.influence import stage

from conftest import SMALL_INFLUENCE, make_cfg, run_script

pytest.importorskip("distributed")

SETS = [s for s in SMALL_INFLUENCE if s != "--set"] + ["influence.models=[nb, lr, rf, lgbm]",
                                                       "influence.ranking.enabled=false"]
TIMES = ("seconds", "loo_seconds", "retrains", "predict_seconds", "retrain_seconds", "retrain_budget")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Stages 01-05 on the tiny preset, once."""
    data = tmp_path_factory.mktemp("engine06")
    args = ["--set", f"paths.data={data}", "--set", "data.synthetic.preset=tiny", "-q"]
    for s in SETS:
        args += ["--set", s]
    for script in ("01_preprocess.py", "02_split.py", "03_features.py", "04_train.py", "05_predict.py"):
        res = run_script(script, *args)
        assert res.returncode == 0, f"{script}: {res.stderr[-3000:]}"
    return data


def run06(upstream, folder, *sets):
    for part in ("synthetic", "01_preprocess", "02_split", "03_features", "04_train", "05_predict"):
        shutil.copytree(upstream / part, folder / part)
    stage.run(make_cfg(folder, None, *SETS, *sets), force=True)
    return folder / "06_influence"


def untimed(value):
    """validation.json without its clocks (seconds differ between any two runs)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def assert_same_outputs(a, b):
    for name in ("loo.parquet", "groups.parquet", "ablations.parquet"):
        assert pl.read_parquet(a / name).equals(pl.read_parquet(b / name)), name
    assert untimed(json.loads((a / "validation.json").read_text())) == \
        untimed(json.loads((b / "validation.json").read_text()))


@pytest.fixture(scope="module")
def local06(upstream, tmp_path_factory):
    return run06(upstream, tmp_path_factory.mktemp("local06"))


def test_stage06_on_the_cluster_equals_the_local_engine(upstream, local06, tmp_path):
    out = run06(upstream, tmp_path, "engine.kind=dask", "engine.workers=2", "engine.threads_per_worker=1")
    assert_same_outputs(local06, out)
    info = json.loads((out / "manifest.json").read_text())["info"]["engine"]
    assert info["tasks"] > 0 and len(info["workers"]) == 2


def test_a_worker_killed_during_stage06_loses_no_result(upstream, local06, tmp_path, monkeypatch):
    """SIGKILL one worker process after the second result of the first retrain map: its tasks run
    again (on its restarted self or the other worker), and the outputs equal the local engine's."""
    original = DaskEngine.map_unordered
    killed = []

    def map_and_kill(self, fn, items, shared=None, **kw):
        for k, (i, result) in enumerate(original(self, fn, items, shared, **kw)):
            if not killed and k == 1 and "retrain" in kw.get("desc", ""):
                pids = sorted(self.client.run(os.getpid).values())
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            yield i, result

    monkeypatch.setattr(DaskEngine, "map_unordered", map_and_kill)
    out = run06(upstream, tmp_path, "engine.kind=dask", "engine.workers=2", "engine.threads_per_worker=1")
    assert killed, "no retrain map ran on the cluster"
    assert_same_outputs(local06, out)
