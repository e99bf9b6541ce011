"""Shared fixtures: tiny synthetic data made by the project's own generator, and the real sample."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musicrec import config

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
