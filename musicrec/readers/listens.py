"""Reader for raw listening logs (ListenBrainz, Last.fm 1K, any listen table): listens -> labelled events.

KKBOX's target is "the user played the song again within a month of the first observed listen".
A raw log holds what that label is made from, so this reader derives it: one event per first
listen of a (user, track) pair, target 1 when the same user plays the track again more than
`same_play_seconds` and at most `window_days` after that first listen. A pair whose window runs
past the log's last listen cannot be labelled (a replay may still come) and is counted, not kept.
Every listen is one of: an event, a repeat (any later listen of its pair, same-play duplicates
included), an unlabellable first listen, a rejected row, or (with `user_sample` < 1) a listen of a
user left out of the sample -- and these add up to the rows read.

The work is split by concern: `listen_formats` scans the files, `listen_events` derives the events out of core (with
`listen_pairs`), `listen_tables` encodes them, `listen_quality` accounts for every listen and
`listen_truth` attaches a generated log's truth.
"""
from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from musicrec.outputs.quality import Quality
from musicrec.readers import listen_formats, listen_quality, listen_tables, listen_truth
from musicrec.readers.listen_events import derive_events

log = logging.getLogger("musicrec")


def build(derived: dict, lcfg: dict, interactions_path: Path) -> dict:
    """The stage-01 outputs (same keys as musicrec.readers.kkbox.preprocess) from the derived events.

    The interactions table is streamed to `interactions_path` (its entry in the result is that path);
    `events` holds the user and song codes of every event in time order (for the synthetic truth).
    """
    quality = listen_quality.accounting(derived, lcfg)
    if derived.get("n_pairs", 0) == 0 or quality["listens"]["events"] == 0:
        listen_quality.raise_empty(lcfg, quality)
    tables = listen_tables.encode(derived, interactions_path)
    quality |= listen_quality.tables_part(quality, tables, len(tables["events"]["user"]))
    rejects = derived["rejects"].select("line", "reason", pl.col("user").alias("msno"),
                                        pl.col("track").alias("song_id"), "time")
    return {"interactions": tables["interactions"], "kaggle_test": None, "rejects": rejects,
            "users": tables["users"], "songs": tables["songs"], "categories": tables["categories"],
            "quality": quality, "events": tables["events"]}


def scan_and_derive(lcfg: dict, cfg: dict, st) -> tuple[dict, list[Path]]:
    """The derived events of the configured log."""
    with st.step("scan listens"):
        files = listen_formats.files_of(lcfg)
        for f in files:
            st.external_input(f)
        log.info("01_preprocess: %s log, %d file(s) under %s", lcfg["format"], len(files), lcfg["path"])
        listens = listen_formats.scan(lcfg, files)
    with st.step("derive events (streaming, bucketed)"):
        return derive_events(listens, lcfg["window_days"], lcfg["same_play_seconds"], st.tmp / "listens-buckets",
                             user_sample=lcfg["user_sample"], seed=cfg["seed"]), files


def read(cfg: dict, st) -> dict:
    """Stage 01 for `data.source: listens`: scan the log, derive labelled events, return the outputs."""
    lcfg = cfg["data"]["listens"]
    if lcfg["format"] == "hetrec":  # play counts without time: a reader of its own
        from musicrec.readers import hetrec

        return hetrec.read(cfg, st)
    derived, files = scan_and_derive(lcfg, cfg, st)
    with st.step("encode"):
        out = build(derived, lcfg, st.output("interactions.parquet"))
        st.rows["interactions.parquet"] = out["quality"]["rows"]["out"]
    events = out.pop("events")
    truth_path = listen_truth.generator_truth(lcfg, files)
    if truth_path is not None:
        with st.step("synthetic truth"):
            out["quality"]["synthetic_truth"] = listen_truth.write_truth(events, out, truth_path, st)
    del events
    out["quality"] = Quality.validated(out["quality"], "quality.json (listens reader)")
    c = out["quality"]["listens"]
    log.info("01_preprocess: listens in %d = events %d + repeats %d + unlabellable %d + rejected %d%s",
             c["in"], c["events"], c["repeats"], c["unlabellable"], c["rejected"],
             f" + sampled out {c['sampled_out']}" if "sampled_out" in c else "")
    return out
