"""Stage 01: read the configured source (musicrec.readers), write the clean, encoded tables.

Every labelled row either reaches `interactions.parquet` or `rejects.parquet` with a reason, so
rows in = rows out + rows rejected holds by construction and is written to `quality.json`; the
optional k-core filter (`preprocess.kcore`) is counted there too. A reader may stream its
interactions straight to the output (the listens reader, out of core): it then returns their path.
"""
from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from musicrec import kcore
from musicrec.manifest import StageRun
from musicrec.readers import reader_for

log = logging.getLogger("musicrec")

STAGE = "01_preprocess"
TABLES = ("interactions", "rejects", "users", "songs", "categories")


def run(cfg: dict, force: bool = False) -> dict:
    with StageRun(STAGE, cfg, force=force) as st:
        out = reader_for(cfg).read(cfg, st)
        written = out["interactions"] if isinstance(out["interactions"], Path) else None
        if written is not None and kcore.active(cfg["preprocess"]["kcore"]):
            out["interactions"] = pl.read_parquet(written, memory_map=False)  # k-core filters in memory
            written.unlink()
            written = None
        out = kcore.apply(out, cfg["preprocess"]["kcore"])
        with st.step("write"):
            for name in TABLES:
                if name == "interactions" and written is not None:
                    continue  # streamed to its output by the reader (out of core)
                st.write_parquet(out[name], f"{name}.parquet")
            if out["kaggle_test"] is not None:
                st.write_parquet(out["kaggle_test"], "kaggle_test.parquet")
            st.write_json(out["quality"], "quality.json")
        rows = out["quality"]["rows"]
        st.info.update(source=cfg["data"]["source"], rows=rows)
        if cfg["data"]["source"] != "listens":  # the listens reader logs its own four-way accounting
            log.info("%s: rows in %d = out %d + rejected %d + k-core %d", STAGE, rows["in"], rows["out"],
                     rows["rejected"], rows.get("kcore_removed", 0))
    return out["quality"]
