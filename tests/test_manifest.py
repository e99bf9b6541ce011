import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from musicrec import manifest, preprocess, split
from musicrec.manifest import StageRun, StaleError, check_upstream, file_record

from conftest import make_cfg, run_script


def test_outputs_appear_only_on_success(tmp_path):
    cfg = make_cfg(tmp_path / "data")
    with StageRun("01_preprocess", cfg) as st:
        st.write_parquet(pl.DataFrame({"a": [1, 2]}), "x.parquet")
        st.write_json({"k": 1}, "info.json")
    folder = tmp_path / "data" / "01_preprocess"
    good = (folder / "x.parquet").read_bytes()
    m = json.loads((folder / "manifest.json").read_text())
    assert set(m["outputs"]) == {"x.parquet", "info.json"} and m["rows"] == {"x.parquet": 2}
    assert m["outputs"]["x.parquet"]["hash"] == manifest.file_hash(folder / "x.parquet")

    with pytest.raises(RuntimeError, match="killed"):
        with StageRun("01_preprocess", cfg) as st:
            st.write_parquet(pl.DataFrame({"a": [9]}), "x.parquet")
            raise RuntimeError("killed")
    assert (folder / "x.parquet").read_bytes() == good  # last good output untouched
    assert json.loads((folder / "manifest.json").read_text()) == m
    assert [p.name for p in folder.iterdir() if p.name.startswith(".tmp")] == []


def test_known_hash_is_reused_while_size_and_mtime_match(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"abcd")
    rec = file_record(f)
    st = f.stat()
    f.write_bytes(b"wxyz")  # same size; restore the mtime so only content differs
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_record(f, rec)["hash"] == rec["hash"]  # trusted, not re-hashed
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert file_record(f, rec)["hash"] == manifest.file_hash(f) != rec["hash"]


@pytest.fixture
def stages_01_02(tmp_path, raw_copy):
    cfg = make_cfg(tmp_path / "data", raw_copy)
    preprocess.run(cfg)
    split.run(cfg)
    return cfg, raw_copy


def test_missing_upstream_names_the_command(tmp_path):
    cfg = make_cfg(tmp_path / "data")
    with pytest.raises(StaleError, match=r"01_preprocess has not run .*: run ./run.sh 01"):
        check_upstream(cfg, "02_split")


def test_config_change_marks_the_stage_that_reads_it(stages_01_02):
    cfg, raw = stages_01_02
    check_upstream(cfg, "03_features")  # fresh
    changed = make_cfg(cfg["paths"]["data"], raw, "split.test_fraction=0.3")
    with pytest.raises(StaleError, match=r"^02_split is stale \(config.split changed\): run ./run.sh 02$"):
        check_upstream(changed, "03_features")
    changed = make_cfg(cfg["paths"]["data"], raw, "preprocess.iqr_k=1.5")
    with pytest.raises(StaleError, match=r"^01_preprocess is stale \(config.preprocess changed\)"):
        check_upstream(changed, "03_features")


def test_rerun_upstream_makes_downstream_stale(stages_01_02):
    cfg, raw = stages_01_02
    preprocess.run(make_cfg(cfg["paths"]["data"], raw, "preprocess.iqr_k=1.5"))
    cfg2 = make_cfg(cfg["paths"]["data"], raw, "preprocess.iqr_k=1.5")
    with pytest.raises(StaleError, match=r"^02_split is stale \(01_preprocess reran since, interactions.parquet"):
        check_upstream(cfg2, "03_features")


def test_changed_raw_file_makes_01_stale(stages_01_02):
    cfg, raw = stages_01_02
    with open(raw / "members.csv", "a") as f:
        f.write("ZZZZ,1,0,,7,20110820,20170920\n")
    with pytest.raises(StaleError, match=r"01_preprocess is stale \(its input .*members.csv changed\)"):
        check_upstream(cfg, "02_split")


def test_cli_refuses_stale_upstream_and_force_runs(stages_01_02):
    cfg, raw = stages_01_02
    common = ["--set", f"paths.data={cfg['paths']['data']}", "--set", "data.source=kkbox",
              "--set", f"paths.raw={raw}", "--set", "preprocess.iqr_k=1.5", "-q"]
    res = run_script("02_split.py", *common)
    assert res.returncode == 2
    assert res.stderr.strip() == ("02_split: error: 01_preprocess is stale (config.preprocess changed): "
                                  "run ./run.sh 01")
    res = run_script("02_split.py", *common, "--force")
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp := manifest.stage_dir(cfg, "02_split") / "manifest.json").read_text())
    assert m["forced"] is True and tmp.is_file()


def test_raw_folder_identity_is_recorded(stages_01_02):
    cfg, raw = stages_01_02
    m = manifest.read_manifest(cfg, "01_preprocess")
    assert m["raw"] == {"source": "kkbox", "paths.raw": str(raw), "folder": str(raw.resolve()), "absent": []}
    for name in ("train.csv", "members.csv"):
        rec = m["inputs"][str((raw / name).resolve())]
        assert rec["size"] == (raw / name).stat().st_size and rec["hash"] == manifest.file_hash(raw / name)


def test_another_raw_folder_makes_01_and_everything_after_it_stale(stages_01_02, tmp_path):
    cfg, raw = stages_01_02
    other = tmp_path / "other_raw"
    shutil.copytree(raw, other)  # same bytes, another folder: the user pointed at different data
    moved = make_cfg(cfg["paths"]["data"], other)
    with pytest.raises(StaleError, match=rf"^01_preprocess is stale \(paths.raw changed: was {raw}, now {other}\): "
                                         r"run ./run.sh 01$"):
        check_upstream(moved, "02_split")
    states = manifest.stage_states(moved)
    assert states["01_preprocess"][0] == "stale" and states["02_split"] == ("stale", "01_preprocess is not fresh")
    assert manifest.stage_states(cfg)["02_split"] == ("fresh", "")
    check_upstream(make_cfg(cfg["paths"]["data"], Path(f"{raw}/./")), "03_features")  # same folder, other spelling

    common = ["--set", f"paths.data={cfg['paths']['data']}", "--set", "data.source=kkbox", "-q"]
    res = run_script("02_split.py", *common, "--set", f"paths.raw={other}")
    assert res.returncode == 2
    assert res.stderr.strip() == (f"02_split: error: 01_preprocess is stale (paths.raw changed: was {raw}, "
                                  f"now {other}): run ./run.sh 01")


def test_a_raw_file_that_appears_or_changes_in_place_makes_01_stale(tmp_path, raw_copy):
    (raw_copy / "test.csv").rename(tmp_path / "test.csv")
    cfg = make_cfg(tmp_path / "data", raw_copy)
    preprocess.run(cfg)
    check_upstream(cfg, "02_split")
    (tmp_path / "test.csv").rename(raw_copy / "test.csv")
    with pytest.raises(StaleError, match=r"01_preprocess is stale \(.*test.csv appeared\)"):
        check_upstream(cfg, "02_split")
    (raw_copy / "test.csv").unlink()
    check_upstream(cfg, "02_split")

    songs = raw_copy / "songs.csv"
    text = songs.read_bytes()
    i = text.index(b"\n", text.index(b"\n") + 1) - 1  # last byte of the first data row
    songs.write_bytes(text[:i] + (b"1" if text[i:i + 1] != b"1" else b"2") + text[i + 1:])  # same size
    with pytest.raises(StaleError, match=r"01_preprocess is stale \(its input .*songs.csv changed\)"):
        check_upstream(cfg, "02_split")
