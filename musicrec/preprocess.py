"""Stage 01: read the configured source (musicrec.readers), write the clean, encoded tables.

Every labelled row either reaches `interactions.parquet` or `rejects.parquet` with a reason, so
rows in = rows out + rows rejected holds by construction and is written to `quality.json`.
"""
from __future__ import annotations

import logging

from musicrec.manifest import StageRun
from musicrec.readers import reader_for

log = logging.getLogger("musicrec")

STAGE = "01_preprocess"
TABLES = ("interactions", "rejects", "users", "songs", "categories")


def run(cfg: dict, force: bool = False) -> dict:
    with StageRun(STAGE, cfg, force=force) as st:
        out = reader_for(cfg).read(cfg, st)
        with st.step("write"):
            for name in TABLES:
                st.write_parquet(out[name], f"{name}.parquet")
            if out["kaggle_test"] is not None:
                st.write_parquet(out["kaggle_test"], "kaggle_test.parquet")
            st.write_json(out["quality"], "quality.json")
        rows = out["quality"]["rows"]
        st.info.update(source=cfg["data"]["source"], rows=rows)
        log.info("%s: rows in %d = out %d + rejected %d", STAGE, rows["in"], rows["out"], rows["rejected"])
    return out["quality"]
