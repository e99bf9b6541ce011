"""Reader for raw listening logs (ListenBrainz, Last.fm 1K, any listen table): listens -> labelled events.

KKBOX's target is "the user played the song again within a month of the first observed listen".
A raw log holds what that label is made from, so this reader derives it: one event per first
listen of a (user, track) pair, target 1 when the same user plays the track again more than
`same_play_seconds` and at most `window_days` after that first listen. A pair whose window runs
past the log's last listen cannot be labelled (a replay may still come) and is counted, not kept.
Every listen is one of: an event, a repeat (any later listen of its pair, same-play duplicates
included), an unlabellable first listen, a rejected row, or (with `user_sample` < 1) a listen of a
user left out of the sample -- and these add up to the rows read.

The work is split by concern: `listen_formats` scans the files, `unreadable_lines` rescans a log
whose bytes the fast parsers refuse, `listen_events` derives the events out of core (with
`listen_pairs`), `listen_tables` encodes them, `listen_quality` accounts for every listen and
`listen_truth` attaches a generated log's truth.
"""
from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from musicrec.engine import open_engine
from musicrec.errors import InputError
from musicrec.outputs.quality import Quality
from musicrec.readers import listen_formats, listen_quality, listen_tables, listen_truth, unreadable_lines
from musicrec.readers.listen_events import derive_events
from musicrec.readers.listen_formats import one_line

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
    """The derived events of the configured log, read by the fast parsers or, if they refuse it, tolerantly.

    Polars' CSV and JSON readers stop at the first byte that is not UTF-8 or line that is not JSON.
    Only then is the log read a second time by `unreadable_lines`, which turns such lines into
    rejected rows with their reason; a log the fast parsers accept is read exactly as before.
    """
    with st.step("scan listens"):
        files = listen_formats.files_of(lcfg)
        for f in files:
            st.external_input(f)
        log.info("01_preprocess: %s log, %d file(s) under %s", lcfg["format"], len(files), lcfg["path"])
    try:
        return derive(listen_formats.scan, lcfg, files, cfg, st), files
    except pl.exceptions.ComputeError as err:
        if not unreadable_lines.applies(lcfg, files):
            listen_formats.check_parquet(files)  # a broken file is named; anything else is a bug
            raise
        log.warning("01_preprocess: the fast parser refused the log (%s); reading it again, rejecting the "
                    "lines it cannot read", one_line(err))
    try:
        return derive(unreadable_lines.scan, lcfg, files, cfg, st), files
    except pl.exceptions.ComputeError as err:
        raise InputError(lcfg["path"], None, f"cannot be read, even line by line: {one_line(err)}") from None


def derive(scan, lcfg: dict, files: list[Path], cfg: dict, st) -> dict:
    with st.step("scan listens"):
        listens = scan(lcfg, files)
    with st.step("derive events (streaming, bucketed)"), open_engine(cfg, st) as engine:
        return derive_events(listens, lcfg["window_days"], lcfg["same_play_seconds"], st.tmp / "listens-buckets",
                             user_sample=lcfg["user_sample"], seed=cfg["seed"], engine=engine)


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
