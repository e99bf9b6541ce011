"""The default source: KKBOX-format CSVs generated from a known truth, then read like the real files."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from musicrec.config import section_hash
from musicrec.readers.kkbox import STAGE, read_folder
from musicrec.truth import synthetic_dir

log = logging.getLogger("musicrec")


def ensure_synthetic(cfg: dict) -> Path:
    """Generate the synthetic CSVs unless they exist for the same `data` section and seed."""
    out = synthetic_dir(cfg)
    stamp = {"data": section_hash(cfg, "data"), "seed": cfg["seed"]}
    stamp_path = out / "source.json"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a generation that was killed half-way
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        log.info("%s: synthetic data in %s is current", STAGE, out)
        return out
    from musicrec import synthetic  # only needed when generating

    scfg = cfg["data"]["synthetic"]
    log.info("%s: generating synthetic data (preset %s) into %s", STAGE, scfg["preset"], out)
    synthetic.generate(tmp, scfg["preset"], label_noise=scfg["label_noise"],
                       random_state=[cfg["seed"], 1], train_rows=scfg["train_rows"], test_rows=scfg["test_rows"])
    (tmp / "source.json").write_text(json.dumps(stamp) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def read(cfg: dict, st) -> dict:
    with st.step("locate input"):
        folder = ensure_synthetic(cfg)
    return read_folder(folder, cfg, st)
