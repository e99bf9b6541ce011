"""quality.json of a listen log: where every listen went, and what each KKBOX column holds.

listens in = events + repeats + unlabellable + rejected (+ sampled out): each part is counted, so
a reader of quality.json can check that nothing was lost between the log and the events.
"""
from __future__ import annotations

from datetime import datetime, timezone

from musicrec.errors import InputError
from musicrec.readers.listen_tables import ABSENT_CATEGORICAL, ABSENT_NUMERIC, UNKNOWN
from musicrec.stats import wilson_interval

DIGITS = 6  # shares and intervals are rounded so that quality.json stays readable


def iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def rounded_interval(k: int, n: int) -> list[float] | None:
    ci = wilson_interval(k, n)
    return None if ci is None else [round(x, DIGITS) for x in ci]


def accounting(derived: dict, lcfg: dict) -> dict:
    """The log's part of quality.json: the listen counts, the rejects by reason, the unlabellable pairs, the target."""
    counts, rejects = dict(derived["counts"]), derived["rejects"]
    events, replayed = counts["events"], derived["replayed"]
    by_reason = rejects.group_by("reason").len().sort("reason")
    out = {
        "source": "listens", "format": lcfg["format"],
        "listens": counts,
        "rejected_by_reason": dict(zip(by_reason["reason"].to_list(), by_reason["len"].to_list())),
        "unlabellable": {
            "pairs": counts["unlabellable"],
            "reason": f"first listen less than window_days={lcfg['window_days']:g} days before the log's "
                      f"last listen ({iso(derived['log_end'])}): a replay could still follow",
            "replayed_before_log_end": derived["unlabellable_replayed"],
        },
        "target": {"events": events, "replayed": replayed,
                   "rate": round(replayed / events, DIGITS) if events else None,
                   "interval95": rounded_interval(replayed, events)},
        "log": {"first_listen": iso(derived.get("log_start")), "last_listen": iso(derived["log_end"]),
                "window_days": lcfg["window_days"], "same_play_seconds": lcfg["same_play_seconds"]},
    }
    if "sample" in derived:
        out["user_sample"] = derived["sample"] | {
            "note": "users drawn by a seeded hash of the user id (FNV-1a of 'seed:user'); the log's last "
                    "listen is still the whole log's"}
    return out


def raise_empty(lcfg: dict, quality: dict) -> None:
    """No event to learn from: one line saying where the listens went."""
    c = quality["listens"]
    raise InputError(lcfg["path"], "listens", f"no labellable event: {c['in']} listens give {c['events']} events "
                                              f"({c['unlabellable']} first listens within window_days="
                                              f"{lcfg['window_days']:g} of the log end, {c['rejected']} rejected"
                                              + (f", {c['sampled_out']} of users left out by user_sample"
                                                 if c.get("sampled_out") else "") + ")")


def column_notes(n_events: int, artist_missing: int) -> dict:
    """quality.json's `columns`: what each KKBOX column holds for a listen log."""
    note = "not in a listen log (KKBOX-only column)"
    out = {c: {"missing_before": 1.0, "missing_after": 0.0, "filled_with": UNKNOWN, "note": note}
           for c in ABSENT_CATEGORICAL}
    out |= {c: {"missing_before": 1.0, "missing_after": 1.0, "filled_with": None, "note": note + "; left missing"}
            for c in ABSENT_NUMERIC}
    out["bd"] = {"missing_before": 1.0, "missing_after": 0.0, "filled_with": 0, "note": note + "; 0 = not given "
                 "(as in KKBOX's members.csv), bd_missing = 1"}
    out["artist"] = {"missing_before": round(artist_missing / max(n_events, 1), DIGITS), "missing_after": 0.0,
                     "filled_with": UNKNOWN, "note": "artist name of the track in the log"}
    out["registration_year"] = {"missing_before": 0.0, "missing_after": 0.0, "filled_with": None,
                                "note": "year of the user's first listen in the log"}
    out["membership_days"] = {"missing_before": 0.0, "missing_after": 0.0, "filled_with": None,
                              "note": "days from the user's first listen in the log to this event"}
    return out


def tables_part(quality: dict, tables: dict, n_events: int) -> dict:
    """The parts every source writes (rows, test_rows, columns, coverage, distinct), from the encoded tables."""
    c = quality["listens"]
    rows = {"in": c["in"], "out": n_events, "rejected": c["rejected"], "repeats": c["repeats"],
            "unlabellable": c["unlabellable"]}
    if "sampled_out" in c:
        rows["sampled_out"] = c["sampled_out"]
    missing = tables["artist_missing"]
    return {
        "rows": rows,
        "test_rows": None,
        "columns": column_notes(n_events, missing),
        "coverage": {"rows_without_member": 0.0, "rows_without_song_metadata": round(missing / n_events, DIGITS),
                     "rows_without_song_extra": 1.0},
        "distinct": {"users": tables["users"].height, "songs": tables["songs"].height, "artists": tables["artists"]},
    }
