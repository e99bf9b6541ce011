"""Shared fixtures: tiny synthetic data made by the project's own generator, and the real sample."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from musicrec import config
from musicrec.config import defaults
from musicrec.models import FeatureSet

REPO = Path(__file__).resolve().parents[1]
RAW_FILES = ("train.csv", "test.csv", "members.csv", "songs.csv", "song_extra_info.csv")


def kkbox_sample_dir() -> Path:
    return Path(os.environ.get("MUSICREC_KKBOX_SAMPLE", REPO.parent / "shared" / "kkbox_sample"))


@pytest.fixture(scope="session")
def kkbox_sample() -> Path:
    """The real KKBOX rows kept outside the project; tests using it skip when it is absent."""
    path = kkbox_sample_dir()
    if not all((path / f).is_file() for f in RAW_FILES):
        pytest.skip(f"real KKBOX sample not found in {path}")
    return path


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """Tiny synthetic data set in KKBOX format, generated once per test session (read-only)."""
    out = tmp_path_factory.mktemp("tiny_raw")
    from musicrec import synthetic

    synthetic.generate(out, "tiny", random_state=[42, 1])
    return out


@pytest.fixture
def raw_copy(tiny_raw, tmp_path) -> Path:
    """A private, writable copy of the tiny CSVs for tests that break them."""
    out = tmp_path / "raw"
    out.mkdir()
    for name in RAW_FILES:
        shutil.copy(tiny_raw / name, out / name)
    return out


def make_cfg(data_dir: Path, raw: Path | None = None, *overrides: str) -> dict:
    """config.yaml with outputs under data_dir, reading `raw` as real files when given."""
    sets = [f"paths.data={data_dir}"]
    if raw is not None:
        sets += ["data.source=kkbox", f"paths.raw={raw}"]
    else:
        sets += ["data.synthetic.preset=tiny"]
    return config.load(REPO / "config.yaml", [*sets, *overrides])


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run one numbered stage script as a process, the way users do."""
    return subprocess.run([sys.executable, str(REPO / script), "--config", str(REPO / "config.yaml"), *args],
                          cwd=REPO, capture_output=True, text=True)


# ---------------------------------------------------------------------------------------------
# shared by several test modules
# stage 06 sized for tests: few validated rows, two removal fractions, small ablations
SMALL_INFLUENCE = ["--set", "influence.validate.rows={nb: 10, lr: 6, rf: 3, lgbm: 3, als: 6}",
                   "--set", "influence.validate.full_retrain=true", "--set", "influence.groups.enabled=true",
                   "--set", "influence.validate.removal_fractions=[0.05, 0.1]",
                   "--set", "influence.ablation.fractions=[0.1, 0.3]", "--set", "influence.ablation.repeats=2",
                   "--set", "influence.groups.deciles=2", "--set", "influence.groups.top_genres=2",
                   "--set", "train.rf.n_estimators=20", "--set", "train.lgbm.n_estimators=40"]


PLANTED_NAMES = ["source_system_tab", "x1", "x2", "x3", "x_nan"]


def make_set(n, seed, n_users=60, n_songs=80):
    """Rows with a planted signal in x1/x2, in a categorical code, and in a user x song affinity."""
    rng = np.random.default_rng(seed)
    tab = rng.integers(0, 4, n)
    x = rng.normal(size=(n, 3))
    pair = rng.choice(n_users * n_songs, n, replace=False)  # each (user, song) once, as in KKBOX
    user, song = pair // n_songs, pair % n_songs
    taste = np.where((user % 2) == (song % 2), 1.0, -1.0)
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.6 * (tab == 0) + 0.9 * taste
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    x_nan = np.where(rng.random(n) < 0.2, np.nan, x[:, 2])
    X = np.column_stack([tab, x, x_nan]).astype(np.float32)
    keys = pl.DataFrame({"time_order": np.arange(n, dtype=np.int32), "user": user.astype(np.int32),
                         "song": song.astype(np.int32)})
    sources = {"source_system_tab": "base", "x1": "count", "x2": "target_stat", "x3": "time", "x_nan": "als"}
    return FeatureSet(X, y, keys, PLANTED_NAMES, ["source_system_tab"], sources)


def small_cfg():
    """The `train` section of the defaults with models small enough for unit tests."""
    t = defaults()["train"]
    t["rf"].update(n_estimators=20, max_samples=0.5, min_samples_leaf=5)
    t["lgbm"].update(n_estimators=60, num_leaves=15, min_child_samples=20)
    t["als"].update(factors=4, iterations=10)
    return t


@pytest.fixture(scope="module")
def splits():
    """Train, valid and test sets with planted signal, for the influence estimators."""
    return make_set(2500, 11), make_set(800, 12), make_set(1200, 13)


def estimator(name, splits):
    """A family's influence estimator on a model fitted to `splits`."""
    from musicrec import families

    train, valid, test = splits
    model = families.make_model(name, small_cfg(), 4).fit(train, valid)
    return families.get(name).influence(model, train, test)
