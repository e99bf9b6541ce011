"""Who plays what, where and when, and the ground truth of every event: the simulation without files."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from musicrec.synthetic.constants import (
    EXTRA_MISSING,
    GENRES,
    LANG_LOGIT,
    NULL_LITERAL_SHARE,
    PRESETS,
    TAB_LOGIT,
    TAB_RECENT,
    TAB_TASTE,
    TABS,
    TRIPLES,
    TYPE_LOGIT,
    VIA_LOGIT,
    WINDOW_DAYS,
)
from musicrec.synthetic.world import (
    Clusters,
    Songs,
    Users,
    _cdf,
    _choice,
    _make_clusters,
    _make_songs,
    _make_users,
    _rowwise_choice,
)


# ---------------------------------------------------------------------------------------------
# rows: who plays what, where and when
@dataclass
class Rows:
    user: np.ndarray
    song: np.ndarray
    time: np.ndarray
    tab: np.ndarray
    triple: np.ndarray


@dataclass
class SongIndex:
    """Songs sorted by (cluster, release day) with cumulative popularity, and per (cluster, day) the
    index range of the songs released by that day [start, hi) and of the recent ones [recent, hi)."""
    order: np.ndarray
    cum: np.ndarray
    start: np.ndarray        # (K,)
    hi: np.ndarray           # (K, days + 1)
    recent: np.ndarray       # (K, days + 1)


def _song_index(songs: Songs, recent_days: int) -> SongIndex:
    day = np.where(songs.release < 0, -1, np.floor(songs.release * WINDOW_DAYS)).astype(np.int64)
    order = np.lexsort((day, songs.cluster))
    stride = WINDOW_DAYS + 2                       # key = cluster * stride + day + 1 (back catalogue: +0)
    key = songs.cluster[order] * stride + day[order] + 1
    base = np.arange(songs.cluster.max() + 1)[:, None] * stride
    days = np.arange(WINDOW_DAYS + 1)
    return SongIndex(order=order, cum=np.concatenate([[0.0], np.cumsum(songs.popularity[order])]),
                     start=np.searchsorted(key, base[:, 0]),
                     hi=np.searchsorted(key, base + days + 1, side="right"),
                     recent=np.searchsorted(key, base + np.maximum(days - recent_days, 0) + 1))


def _pick_songs(rng, cluster, t, recent, index: SongIndex) -> np.ndarray:
    """A song of `cluster` released by the row's day, by popularity; `recent` rows only among the
    songs released in the last days (when there are any)."""
    cell = cluster * (WINDOW_DAYS + 1) + np.minimum((t * WINDOW_DAYS).astype(np.int64), WINDOW_DAYS)
    hi = index.hi.ravel()[cell]
    lo_new = index.recent.ravel()[cell]
    lo = np.where(recent & (lo_new < hi), lo_new, index.start[cluster])
    x = index.cum[lo] + rng.random(cluster.size) * (index.cum[hi] - index.cum[lo])
    idx = np.clip(np.searchsorted(index.cum, x, side="right") - 1, lo, hi - 1)
    return index.order[idx].astype(np.int32)


def _triple_tables() -> np.ndarray:
    """(tab, triple) cumulative table: P(triple | tab)."""
    tab_of = np.array([TABS.index(t[0]) for t in TRIPLES])
    w = np.zeros((len(TABS), len(TRIPLES)))
    w[tab_of, np.arange(len(TRIPLES))] = [t[3] for t in TRIPLES]
    return _cdf(w)


def _draw_rows(rng, n, users: Users, cl: Clusters, index, m: dict, first_per_user: bool) -> Rows:
    """n listening events: user by activity, time in the user's active span, context, cluster, song.

    Events come grouped by user (then sorted by time later), which keeps the per-user lookups fast.
    """
    n_users = users.arrival.size
    span = users.leave - users.arrival
    rate = users.activity * span
    counts = rng.multinomial(n - n_users * first_per_user, rate / rate.sum()) + first_per_user
    user = np.repeat(np.arange(n_users, dtype=np.int32), counts)   # first_per_user: >= 1 event each
    t = users.arrival[user] + rng.random(n) * span[user]
    tab = _rowwise_choice(rng, users.tab_cdf, user)
    triple = _rowwise_choice(rng, _triple_tables(), tab)
    taste = rng.random(n) < TAB_TASTE[tab]
    cluster = np.where(taste, _rowwise_choice(rng, users.pref_cdf, user), _choice(rng, cl.share, n))
    recent = rng.random(n) < m["recent_scale"] * TAB_RECENT[tab]
    song = _pick_songs(rng, cluster, t, recent, index)
    return Rows(user, song, t, tab.astype(np.int8), triple.astype(np.int16))


def _concat(a: Rows, b: Rows) -> Rows:
    return Rows(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in Rows.__dataclass_fields__))


def _take(r: Rows, idx: np.ndarray) -> Rows:
    return Rows(*(getattr(r, f)[idx] for f in Rows.__dataclass_fields__))


def _first_events(r: Rows, n_songs: int) -> np.ndarray:
    """Indices, in time order, of the first event of every (user, song) pair.

    One sort of a combined key (pair in the high bits, quantised time in the low bits) finds them.
    """
    pair = r.user.astype(np.int64) * n_songs + r.song
    time_bits = 62 - int(n_songs * (int(r.user.max()) + 1)).bit_length()
    if time_bits < 16:
        raise ValueError("too many users x songs for the first-listen key")
    key = (pair << time_bits) | (r.time * ((1 << time_bits) - 1)).astype(np.int64)
    order = np.argsort(key, kind="stable")
    p = pair[order]
    first = order[np.concatenate([[True], p[1:] != p[:-1]])]
    return first[np.argsort(r.time[first], kind="stable")]


def _sample_rows(rng, n_total: int, users: Users, songs: Songs, cl: Clusters, m: dict) -> Rows:
    """Exactly n_total first-listening events in time order: draw a surplus, drop repeated pairs
    (keeping the first), then drop a uniform random subset, never a user's first event."""
    index = _song_index(songs, round(m["recent_window"] * WINDOW_DAYS))
    n_songs = songs.cluster.size
    drawn = int(n_total * m["surplus"]) + users.arrival.size
    rows = _take(rows := _draw_rows(rng, drawn, users, cl, index, m, True), _first_events(rows, n_songs))
    while rows.user.size < n_total:   # rare: heavier repetition than the surplus allowed for
        extra = int((n_total - rows.user.size) * drawn / rows.user.size * 1.5) + 1000
        drawn += extra
        rows = _concat(rows, _draw_rows(rng, extra, users, cl, index, m, False))
        rows = _take(rows, _first_events(rows, n_songs))
    _, first_of_user = np.unique(rows.user, return_index=True)
    protected = np.zeros(rows.user.size, dtype=bool)
    protected[first_of_user] = True
    optional = np.flatnonzero(~protected)
    keep = np.concatenate([first_of_user, rng.choice(optional, n_total - first_of_user.size, replace=False)])
    return _take(rows, np.sort(keep))   # rows are in time order: index order is time order


# ---------------------------------------------------------------------------------------------
# missing source cells (two conventions: empty and the literal "null")
def _source_codes(rng, rows: Rows) -> dict[str, tuple[list, np.ndarray]]:
    """Per source column: the vocabulary (with None and "null") and one code per row."""
    out = {}
    for j, col in enumerate(["source_system_tab", "source_screen_name", "source_type"]):
        values = [t[j] for t in TRIPLES]
        vocab = sorted({v for v in values if v is not None}) + [None, "null"]
        table = np.array([vocab.index(v) for v in values], dtype=np.int16)   # None: the empty code
        code = table[rows.triple]
        blank = rng.random(code.size) < EXTRA_MISSING.get(col, 0.0)
        code[blank] = len(vocab) - 2
        missing = code == len(vocab) - 2
        code[missing & (rng.random(code.size) < NULL_LITERAL_SHARE)] = len(vocab) - 1
        out[col] = (vocab, code)
    return out


# ---------------------------------------------------------------------------------------------
# ground truth
def _logit_components(rows: Rows, users: Users, songs: Songs, n_train: int,
                      m: dict) -> dict[str, np.ndarray]:
    """The parts of logit p_true for every row (b0 excluded); their sum plus b0 is the logit.

    The context part uses the true source (a cell blanked in the CSV still had its effect).
    """
    n = rows.user.size
    type_eff = np.array([TYPE_LOGIT.get(t[2], 0.0) for t in TRIPLES])[rows.triple]
    genre_eff = np.where(songs.genres[:, 0] >= 0, _genre_logit()[songs.genres[:, 0]], 0.0)
    bd = users.bd
    age_eff = np.where((bd >= 18) & (bd <= 35), 0.08, np.where(bd == 0, 0.0, -0.05))
    clock = np.arange(n) / n
    tau = min(m["drift_rows"], 0.05 * n_train) / n
    affinity = np.empty(n)
    for a in range(0, n, 1 << 20):  # chunks: the gathered latent vectors would need GBs at once
        b = min(n, a + (1 << 20))
        affinity[a:b] = np.einsum("ij,ij->i", users.latent[rows.user[a:b]], songs.latent[rows.song[a:b]])
    return {
        "user": users.propensity[rows.user],
        "song": songs.appeal[rows.song],
        "context": TAB_LOGIT[rows.tab] + type_eff,
        "metadata": LANG_LOGIT[songs.language[rows.song]] + genre_eff[rows.song],
        "member": m["member_scale"] * (age_eff + VIA_LOGIT[users.via])[rows.user],
        "affinity": m["gamma"] * affinity,
        "drift": m["drift_head"] * np.exp(-clock / tau) + m["drift_trend"] * (0.5 - clock),
    }


def _genre_logit() -> np.ndarray:
    """Fixed small genre effects (a deterministic function of the genre id, no randomness)."""
    return 0.15 * np.sin(GENRES.astype(np.float64) * 0.7)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate_b0(rest: np.ndarray, target: float) -> float:
    """Intercept such that the mean of sigmoid(b0 + rest) is `target` (Newton steps)."""
    b0 = float(np.log(target / (1 - target)) - np.median(rest))
    for _ in range(30):
        p = _sigmoid(b0 + rest)
        step = (p.mean() - target) / max((p * (1 - p)).mean(), 1e-9)
        b0 -= step
        if abs(step) < 1e-10:
            break
    return b0


# ---------------------------------------------------------------------------------------------
# the simulation (everything but the files)
@dataclass
class Simulation:
    """The drawn world: entities, rows in time order (train first), truth per row."""
    params: dict
    clusters: Clusters
    users: Users
    songs: Songs
    rows: Rows
    codes: dict
    n_train: int
    components: dict      # logit parts per row (train rows first, then test rows)
    b0: float
    p_true: np.ndarray    # float64
    label: np.ndarray     # int8, drawn label (before any noise)


def _params(preset: str, train_rows, test_rows) -> dict:
    """Preset parameters with row overrides; users/songs scale with the total row count."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    p = dict(PRESETS[preset], preset=preset)
    base = p["train_rows"] + p["test_rows"]
    for name, value in (("train_rows", train_rows), ("test_rows", test_rows)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 100:
                raise ValueError(f"{name} must be an integer >= 100, got {value!r}")
            p[name] = int(value)
    scale = (p["train_rows"] + p["test_rows"]) / base
    p["n_users"] = max(20, min(round(p["n_users"] * scale), (p["train_rows"] + p["test_rows"]) // 10))
    p["n_songs"] = max(10 * p["n_clusters"], round(p["n_songs"] * scale))
    return p


def _check_random_state(random_state):
    """A non-negative int or a non-empty sequence of them (what numpy.random.default_rng takes)."""
    def ok(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
    if ok(random_state):
        return int(random_state)
    if isinstance(random_state, (Sequence, np.ndarray)) and not isinstance(random_state, (str, bytes)) \
            and len(random_state) and all(ok(v) for v in random_state):
        return [int(v) for v in random_state]
    raise ValueError(f"random_state must be a non-negative int or a non-empty sequence of them, "
                     f"got {random_state!r}")


def _check_label_noise(label_noise) -> float:
    if isinstance(label_noise, bool) or not isinstance(label_noise, Real) or not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be a number in [0, 0.5), got {label_noise!r}")
    return float(label_noise)


def _streams(random_state) -> dict[str, np.random.Generator]:
    """Independent child generators of the one Generator, so e.g. label noise never moves rows."""
    names = ["world", "rows", "labels", "text", "noise"]
    return dict(zip(names, np.random.default_rng(random_state).spawn(len(names))))


def _simulate(p: dict, streams: dict) -> Simulation:
    """Entities, then events, then the truth: each from its own child stream."""
    world = streams["world"]
    clusters = _make_clusters(world, p)
    songs = _make_songs(world, p["n_songs"], clusters, p)
    users = _make_users(world, p["n_users"], clusters, p)
    n_train = p["train_rows"]
    rows = _sample_rows(streams["rows"], n_train + p["test_rows"], users, songs, clusters, p)
    codes = _source_codes(streams["rows"], rows)
    comps = _logit_components(rows, users, songs, n_train, p)
    rest = np.sum(list(comps.values()), axis=0)
    b0 = _calibrate_b0(rest[:n_train], p["target_mean"])
    p_true = _sigmoid(b0 + rest)
    label = (streams["labels"].random(p_true.size) < p_true).astype(np.int8)
    return Simulation(p, clusters, users, songs, rows, codes, n_train, comps, b0, p_true, label)


def simulate(preset: str = "small", *, random_state=0, train_rows=None, test_rows=None) -> Simulation:
    """The world that `generate` writes for the same arguments, in memory (no files, no text)."""
    return _simulate(_params(preset, train_rows, test_rows), _streams(_check_random_state(random_state)))


