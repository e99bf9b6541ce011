"""Stage 01's quality.json: where every input row went, for every source (kkbox, synthetic, listens, hetrec).

Every reader validates its dict against `Quality` before returning it, so a key misspelt in a reader
fails there, not in the report that reads the file. The parts every source writes are dataclasses;
what only one source writes is a plain dict (None where the source does not write it).

JSON's `in` is a Python keyword, so the row counts hold it as the field `in_` (`q.rows.in_`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from musicrec.outputs.base import Record, SchemaError


@dataclass
class Counts(Record):
    """Row counts whose JSON key `in` is the field `in_`."""

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None):
        if isinstance(data, dict):
            if "in_" in data:
                raise SchemaError(f"{where or cls.__name__}: field(s) in_ not declared by {cls.__name__} (write 'in')")
            data = {("in_" if k == "in" else k): v for k, v in data.items()}
        return super().from_dict(data, where)

    def to_dict(self) -> dict:
        return {("in" if k == "in_" else k): v for k, v in super().to_dict().items()}


@dataclass
class Rows(Counts):
    """Labelled rows: in = out + rejected (+ repeats + unlabellable + sampled_out for a listen log) + kcore_removed."""

    in_: int
    out: int
    rejected: int
    repeats: int | None = None           # listens: later listens of a pair already seen
    unlabellable: int | None = None      # listens: first listens whose window runs past the log's end
    sampled_out: int | None = None       # listens with user_sample < 1
    kcore_removed: int | None = None     # preprocess.kcore, any source


@dataclass
class TestRows(Counts):
    """KKBOX's test.csv: every row must get a prediction, so only empty rows are rejected."""

    in_: int
    out: int
    rejected: int
    rejected_by_reason: dict[str, int]


@dataclass
class Column(Record):
    """One KKBOX column: its share of missing values before and after filling, and the fill."""

    missing_before: float | None
    missing_after: float | None
    filled_with: Any
    note: str | None = None


@dataclass
class Coverage(Record):
    """Share of interaction rows without a member row, song metadata or song extra info."""

    rows_without_member: float
    rows_without_song_metadata: float
    rows_without_song_extra: float


@dataclass
class Distinct(Record):
    users: int
    songs: int
    artists: int | None = None


@dataclass
class Kcore(Record):
    """preprocess.kcore's filter (written by musicrec.kcore when it is on)."""

    min_listeners_per_track: int
    min_tracks_per_user: int
    iterations: int
    rows_before: int
    rows_after: int
    rows_removed: int
    users_removed: int
    songs_removed: int


@dataclass
class Quality(Record):
    """01's quality.json."""

    rows: Rows
    rejected_by_reason: dict[str, int]
    test_rows: TestRows | None
    columns: dict[str, Column]
    coverage: Coverage
    distinct: Distinct
    source: str | None = None            # listens, hetrec: "listens" (kkbox and synthetic write none)
    format: str | None = None            # listens, hetrec: data.listens.format
    # kkbox and synthetic
    empty_rows: dict | None = None       # file -> rows whose every field is empty
    outliers: dict | None = None         # column -> method, bounds, clipped, ...
    entities: dict | None = None         # members.csv, songs.csv, song_extra_info.csv -> counts
    # listens
    listens: dict | None = None          # in, events, repeats, same_play_merged, unlabellable, rejected[, sampled_out]
    target: dict | None = None           # events, replayed, rate, interval95
    log: dict | None = None              # first_listen, last_listen, window_days, same_play_seconds
    user_sample: dict | None = None      # share, seed, users_in, users_kept, listens_sampled_out, note
    synthetic_truth: dict | None = None  # generated logs: file, events_with_truth, label_equals_target
    # listens and hetrec
    unlabellable: dict | None = None     # pairs, reason[, replayed_before_log_end]
    # hetrec
    plays: dict | None = None            # total, median_per_pair
    # any source, added by stage 01 after the reader
    kcore: Kcore | None = None

    def to_dict(self) -> dict:
        d = super().to_dict()
        for f in dataclasses.fields(self):  # nested counts spell their own `in`
            value = getattr(self, f.name)
            if isinstance(value, Counts):
                d[f.name] = value.to_dict()
        return d

    @classmethod
    def validated(cls, data: dict, where: str) -> dict:
        """`data` itself once it matches the schema (SchemaError naming the field otherwise).

        The dict is returned as built, so quality.json keeps the reader's key order and leaves out
        what a source does not write."""
        cls.from_dict(data, where)
        return data
