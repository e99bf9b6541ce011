"""Time and order features from `time_order` (the event clock), label-free, vectorized with sort + searchsorted.

Each key's pool rows are laid out as one sorted int64 array of key * M + t (M > every t), so
"pool rows of my key strictly before me" and "... within the last w rows" are differences of two
binary-search positions. Queries are searched in sorted order, which numpy answers much faster.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from musicrec.features.keys import KeyCodes
from musicrec.features.pool import span
from musicrec.parallel import cores, thread_map

# name -> columns of the key whose history is looked up
HISTORY_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("user",),
    "song": ("song",),
    "artist": ("artist",),
    "user_artist": ("user", "artist"),
}
WINDOW_KEYS = ("song", "artist", "user")  # recent_<key>_w<i>
RATE_KEYS = ("user", "song")  # <key>_span_rows, <key>_rate
RATE_PAD = 0.01  # share of all rows added to a span before dividing, so that short spans stay finite
AGE_KEYS = ("song", "artist", "user")  # <key>_age_rows


def window_sizes(shares: list[float], total_rows: int) -> list[int]:
    """Window lengths in rows: each share of all rows on the time axis, at least one row."""
    return [max(1, int(round(s * total_rows))) for s in shares]


class History:
    """The pool rows of one key, sorted by (key, t), answering count queries for every row."""

    def __init__(self, key: np.ndarray, t: np.ndarray, in_pool: np.ndarray):
        key, t = key.astype(np.int64), t.astype(np.int64)
        self.m = int(t.max()) + 1
        if key.max() >= (np.iinfo(np.int64).max // self.m):
            raise OverflowError("key x t does not fit in int64")
        comp = key * self.m + t
        self.order = np.argsort(comp)  # ties (equal t) get equal answers, so any order will do
        self.comp = comp[self.order]  # every row, sorted: the queries
        self.t = t[self.order]
        self.pool = self.comp[in_pool[self.order]]
        self.before = np.searchsorted(self.pool, self.comp, side="left")  # pool rows < (key, t)
        self.start = np.searchsorted(self.pool, self.comp - self.t, side="left")  # first of the key

    def _unsort(self, sorted_values: np.ndarray) -> np.ndarray:
        out = np.empty_like(sorted_values)
        out[self.order] = sorted_values
        return out

    def earlier(self) -> np.ndarray:
        """Pool rows of the same key strictly before each row."""
        return self._unsort(self.before - self.start)

    def recent(self, width: int) -> np.ndarray:
        """Pool rows of the same key in [t - width, t)."""
        lo = np.searchsorted(self.pool, self.comp - np.minimum(self.t, width), side="left")
        return self._unsort(self.before - lo)

    def age(self) -> np.ndarray:
        """Rows since the key's first pool row at or before this one (0 for its first appearance)."""
        has_past = self.before > self.start
        first = np.where(has_past, self.pool[np.minimum(self.start, len(self.pool) - 1)] % self.m, self.t)
        return self._unsort(self.t - first)


def time_features(work: pl.DataFrame, keys: KeyCodes, shares: list[float]) -> tuple[pl.DataFrame, list[dict]]:
    """Play indexes, ages and recent-window counts, as Float32 columns in the frame's row order."""
    t, in_pool = work["time_order"].to_numpy(), work["in_pool"].to_numpy().astype(bool)
    widths = window_sizes(shares, work.height)
    keys.prepare([*HISTORY_KEYS.values(), *((name,) for name in RATE_KEYS)])

    def history(item: tuple[str, tuple[str, ...]]) -> tuple[dict, list[dict]]:
        """One key's play indexes, age and windows (a key per core: its sort releases the GIL)."""
        name, key_cols = item
        hist = History(keys(key_cols)[0], t, in_pool)
        label = " x ".join(key_cols)
        cols = {f"play_index_{name}": hist.earlier()}
        docs = [{"name": f"play_index_{name}", "description": f"pool rows of the same {label} before this row"}]
        if name in AGE_KEYS:
            cols[f"{name}_age_rows"] = hist.age()
            docs.append({"name": f"{name}_age_rows",
                         "description": f"rows since the {label}'s first pool row (0 at its first appearance)"})
        if name in WINDOW_KEYS:
            for i, w in enumerate(widths):
                cols[f"recent_{name}_w{i}"] = hist.recent(w)
                docs.append({"name": f"recent_{name}_w{i}",
                             "description": f"pool rows of the same {label} in the previous {w} rows "
                                            f"(share {shares[i]:g} of all rows)"})
        return cols, docs

    cols, docs = {}, []
    for key_cols, key_docs in thread_map(history, HISTORY_KEYS.items(), cores()):
        cols.update(key_cols)
        docs += key_docs
    pad = max(1.0, RATE_PAD * work.height)
    for name in RATE_KEYS:
        ids, n_groups = keys((name,))
        first, last, plays = span(ids, n_groups, t, in_pool)
        cols[f"{name}_span_rows"] = np.maximum(last - first, 0)[ids]
        cols[f"{name}_rate"] = (plays / (np.maximum(last - first, 0) + pad))[ids]
        docs += [{"name": f"{name}_span_rows", "description": f"rows between the {name}'s first and last pool row "
                                                                f"(0 with at most one)"},
                 {"name": f"{name}_rate", "description": f"the {name}'s pool rows per row of its span (span padded "
                                                         f"by {RATE_PAD:g} of all rows): activity net of lifetime"}]
    for d in docs:
        d["nan"] = False
    return pl.DataFrame({k: v.astype(np.float32) for k, v in cols.items()}), docs
