"""The command line as users meet it: one line and a documented exit code for every failure they can cause."""
from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

from musicrec import config, manifest, split
from musicrec.config import ConfigError

from conftest import REPO, make_cfg, run_script


def start_and_signal(args: list[str], sig: int, when: str) -> subprocess.CompletedProcess:
    """Start a stage script, send `sig` as soon as its log shows `when`, and collect its end."""
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if when in line:
            proc.send_signal(sig)
            break
    out, rest = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(lines) + rest)


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_ends_with_one_line_and_keeps_the_last_good_outputs(tmp_path, raw_copy, sig, code, word):
    common = [str(REPO / "01_preprocess.py"), "--set", f"paths.data={tmp_path}", "--set", "data.source=kkbox",
              "--set", f"paths.raw={raw_copy}"]
    first = subprocess.run([sys.executable, *common, "-q"], cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "01_preprocess"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    res = start_and_signal([*common, "--set", "preprocess.iqr_k=1.5"], sig, "01_preprocess: start")
    assert res.returncode == code, res.stderr
    assert res.stderr.splitlines()[-1] == f"01_preprocess: {word}; last good outputs kept"
    assert "Traceback" not in res.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing half-written, no .tmp-*


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_killed_runs_are_removed_at_the_next_start(tmp_path):
    cfg = make_cfg(tmp_path / "data")
    folder = manifest.stage_dir(cfg, "01_preprocess")
    killed = folder / f".tmp-{dead_pid()}"
    (killed / "plots").mkdir(parents=True)
    (killed / "plots" / "roc.png").write_bytes(b"half")
    (folder / ".tmp-junk").write_text("x")
    (folder / ".manifest.json.tmp").write_text("{")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = folder / f".tmp-{alive.pid}"
        running.mkdir()
        with manifest.StageRun("01_preprocess", cfg) as st:
            st.write_json({"k": 1}, "info.json")
        left = sorted(p.name for p in folder.iterdir())
        assert left == sorted([running.name, "info.json", "manifest.json"])  # a live run's folder is kept
    finally:
        alive.kill()
        alive.wait()


def test_impossible_split_is_a_config_error_naming_the_keys():
    with pytest.raises(ConfigError, match=r"'split.test_fraction' = 0.01 and 'split.valid_fraction' = 0.01: "
                                          r"a split of 20 rows gives an empty part"):
        split.split_sizes(20, 0.01, 0.01)
    with pytest.raises(ConfigError, match=r"'split.method' = 'random' is not allowed .*number of classes"):
        split.random_assignment(np.tile([0, 1], 50), 0.01, 0.5, random_state=0)


@pytest.mark.parametrize("sets, message", [
    (["train.models=[]"], "config key 'train.models' = [] is not allowed: must name at least one of prior, nb, lr, rf, lgbm, als"),
    (["train.models=[prior, nb]", "predict.submission_model=lgbm"],
     "config key 'predict.submission_model' = 'lgbm' is not allowed: must be auto or one of train.models (prior, nb)"),
])
def test_key_combinations_are_checked_at_load(sets, message):
    with pytest.raises(ConfigError) as err:
        config.load(REPO / "config.yaml", sets)
    assert str(err.value) == message


def test_config_and_file_system_errors_are_one_line_exit_2(tmp_path):
    res = run_script("02_split.py", "--set", "train.models=[]")
    assert res.returncode == 2 and res.stderr.strip() == ("02_split: error: config key 'train.models' = [] is not "
                                                          "allowed: must name at least one of prior, nb, lr, rf, "
                                                          "lgbm, als")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    res = run_script("01_preprocess.py", "--set", f"paths.data={blocker}/data", "--set",
                     "data.synthetic.preset=tiny", "-q")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().startswith("01_preprocess: error: ") and "a_file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_a_half_generated_synthetic_folder_is_removed_at_the_next_start(tmp_path):
    cfg = make_cfg(tmp_path / "data")
    from musicrec.readers.synthetic import ensure_synthetic

    out = ensure_synthetic(cfg)
    half = out.with_name(out.name + ".tmp")
    half.mkdir()
    (half / "train.csv").write_text("msno\n")
    assert ensure_synthetic(cfg) == out and not half.exists()
