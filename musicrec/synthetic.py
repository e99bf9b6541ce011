"""Synthetic KKBOX data in exactly the real CSV format, drawn from a known ground truth.

The real task: will a user replay a song within a month of its first listening event (target 0/1)?
`generate` writes train.csv, test.csv, members.csv, songs.csv and song_extra_info.csv like the real
KKBOX files, plus truth.parquet (file, row, p_true, label, flipped for every train/test row) and
generation.json (parameters and summary), so that every later stage can be checked against an oracle.
`simulate` returns the same world in memory (with the logit components of every row).

Ground truth, one logistic model with all parts known:

    logit p_true = b0 + a_u + b_s + context(source) + language/genre(s) + member(u)
                   + gamma * <p_u, q_s> + drift(row clock)

* Taste: K latent clusters with unit centres m_c. A song belongs to one cluster, q_s = m_c + noise.
  A user has a sparse preference pi_u over clusters and p_u = pi_u @ M + noise.
* Which songs a user plays follows the same taste: every event draws a cluster from pi_u (sharply
  for "my library", mixed with global cluster popularity for discover/radio/search...), then a song
  of that cluster by Zipf popularity among the songs released by that day (some contexts only
  among recent releases). So the user x song matrix a collaborative filter sees carries the
  affinity <p_u, q_s> that drives replay: off-taste plays replay less.
* Clusters correlate with language, genre and artist but are not a function of them.
* Users arrive and churn, songs are released over the whole time range (cold start); user activity
  and song popularity are heavy-tailed; every (user, song) pair occurs once (first listening events).
* b0 is calibrated so that the train.csv mean of p_true is the real 0.5035; the drift makes the
  first rows replay much more (as in the real train.csv head) and later rows slightly less.

All randomness comes from one numpy Generator built from `random_state` (children via spawn).
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import polars as pl

# ---------------------------------------------------------------------------------------------
# presets and model parameters
_MODEL = {
    "n_clusters": 24,            # latent taste clusters
    "latent_dim": 16,            # dimension of p_u, q_s
    "song_noise": 0.1,           # song-specific part of q_s (relative to the unit-norm centre)
    "user_noise": 0.1,           # user-specific part of p_u
    "user_concentration": 1.0,   # Dirichlet concentration of pi_u (small = sparse taste)
    "gamma": 2.2,                # weight of the latent affinity <p_u, q_s> in the logit
    "user_sd": 0.5,              # user propensity a_u
    "activity_propensity": 0.5,  # weight of (log) activity in a_u (unit total variance)
    "member_scale": 3.0,         # multiplier of the member (age band, registered_via) effects
    "tab_concentration": 30.0,   # Dirichlet concentration of a user's mix of source tabs
    "song_sd": 0.45,             # song appeal b_s
    "popularity_appeal": 0.6,    # weight of (log) popularity in b_s
    "artist_appeal": 0.7,        # weight of the artist's shared appeal in b_s (unit total variance)
    "activity_sigma": 1.5,       # lognormal sigma of user activity (heavy tail, capped at 2.8 sigma)
    "popularity_alpha": 0.85,    # Pareto tail index of song popularity (Zipf-like, heavy head)
    "back_catalogue": 0.8,       # share of songs available from the start
    "new_song_boost": 1.0,       # popularity multiplier of songs released during the time range
    "old_users": 0.45,           # share of users present from the start
    "arrival_tilt": 0.8,         # arrivals thin out over time: density 1 - tilt * t
    "churn": 0.6,                # share of users who stop during the time range
    "recent_window": 0.08,       # "new music" window (share of the time range)
    "recent_scale": 0.3,         # multiplier of the per-tab probability of drawing from that window
    "drift_head": 1.6,           # extra logit of the very first rows
    "drift_rows": 9_000,         # e-folding of the head drift, in rows (capped at 5% of train)
    "drift_trend": 0.4,          # linear decline of the logit over the whole time range
    "target_mean": 0.5035,       # train.csv mean of p_true (real KKBOX)
    "surplus": 2.9,              # rows drawn per row kept: repeated pairs (over half) are dropped
}
PRESETS: dict[str, dict] = {
    "tiny": {"train_rows": 20_000, "test_rows": 5_000, "n_users": 300, "n_songs": 5_000, **_MODEL},
    "small": {"train_rows": 300_000, "test_rows": 100_000, "n_users": 2_000, "n_songs": 40_000, **_MODEL},
    "kkbox": {"train_rows": 7_377_418, "test_rows": 2_556_790, "n_users": 34_403, "n_songs": 700_000,
              **_MODEL},
}
TRAIN_COLUMNS = ["msno", "song_id", "source_system_tab", "source_screen_name", "source_type", "target"]
TEST_COLUMNS = ["id", "msno", "song_id", "source_system_tab", "source_screen_name", "source_type"]
MEMBER_COLUMNS = ["msno", "city", "bd", "gender", "registered_via", "registration_init_time",
                  "expiration_date"]
SONG_COLUMNS = ["song_id", "song_length", "genre_ids", "artist_name", "composer", "lyricist", "language"]
EXTRA_COLUMNS = ["song_id", "name", "isrc"]

# ---------------------------------------------------------------------------------------------
# source context: tabs with their draw weights and effects, and the (tab, screen, type) triples
TABS = ["my library", "discover", "search", "radio", "listen with", "explore", "notification",
        "settings", None]
# Draw weights of the tabs. Taste-driven "my library" rows repeat (user, song) pairs more often and
# lose more rows to the first-listen rule, hence its larger weight: after that rule the shares are
# the real ones (my library ~50%, discover ~28%, search ~8.5%, radio ~6.5%, listen with ~3.3%, ...).
TAB_SHARE = np.array([0.593, 0.233, 0.0845, 0.058, 0.027, 0.0187, 0.0025, 0.0008, 0.0022])
TAB_SHARE = TAB_SHARE / TAB_SHARE.sum()
TAB_LOGIT = np.array([0.55, -0.25, -0.30, -1.10, -0.70, -0.20, -0.20, 0.30, 0.0])
TAB_TASTE = np.array([0.95, 0.70, 0.75, 0.60, 0.50, 0.65, 0.65, 0.90, 0.70])   # P(cluster from pi_u)
TAB_RECENT = np.array([0.05, 0.35, 0.12, 0.15, 0.15, 0.35, 0.30, 0.05, 0.10])  # P(new-music window)
TYPE_LOGIT = {"local-library": 0.10, "song-based-playlist": -0.15, "top-hits-for-artist": -0.10,
              "album": 0.05, "song": -0.10, "topic-article-playlist": -0.20}
TRIPLES = [  # (tab, screen, type, weight within tab); None = missing cell
    ("my library", "Local playlist more", "local-library", 0.540),
    ("my library", "Local playlist more", "local-playlist", 0.262),
    ("my library", "My library", "local-library", 0.012),
    ("my library", "My library", "local-playlist", 0.009),
    ("my library", "My library_Search", "local-library", 0.002),
    ("my library", "Album more", "album", 0.024),
    ("my library", "Artist more", "top-hits-for-artist", 0.008),
    ("my library", "Online playlist more", "online-playlist", 0.012),
    ("my library", "Search", "online-playlist", 0.008),
    ("my library", "Local playlist more", "album", 0.008),
    ("my library", "Radio", "radio", 0.001),
    ("my library", None, "local-library", 0.014),
    ("my library", None, "local-playlist", 0.012),
    ("my library", None, "top-hits-for-artist", 0.009),
    ("my library", None, "song", 0.005),
    ("discover", "Online playlist more", "online-playlist", 0.330),
    ("discover", "Online playlist more", "song-based-playlist", 0.040),
    ("discover", "Discover Chart", "online-playlist", 0.110),
    ("discover", "Discover Feature", "online-playlist", 0.070),
    ("discover", "Discover Feature", "song-based-playlist", 0.050),
    ("discover", "Discover Feature", "album", 0.006),
    ("discover", "Discover Feature", "my-daily-playlist", 0.002),
    ("discover", "Discover Genre", "online-playlist", 0.035),
    ("discover", "Discover New", "online-playlist", 0.008),
    ("discover", "Album more", "album", 0.070),
    ("discover", "Artist more", "top-hits-for-artist", 0.075),
    ("discover", "Search Trends", "song", 0.006),
    ("discover", "Search", "song", 0.008),
    ("discover", "Local playlist more", "local-library", 0.020),
    ("discover", "Unknown", "online-playlist", 0.025),
    ("discover", None, "song-based-playlist", 0.032),
    ("discover", None, "online-playlist", 0.028),
    ("discover", None, "top-hits-for-artist", 0.020),
    ("search", "Search", "song", 0.350),
    ("search", "Artist more", "top-hits-for-artist", 0.240),
    ("search", "Album more", "album", 0.140),
    ("search", "Online playlist more", "online-playlist", 0.120),
    ("search", "Search Home", "online-playlist", 0.020),
    ("search", "Search Trends", "song", 0.025),
    ("search", "Search", "artist", 0.010),
    ("search", "Local playlist more", "local-library", 0.015),
    ("search", None, "song", 0.050),
    ("radio", "Radio", "radio", 0.950),
    ("radio", "Artist more", "top-hits-for-artist", 0.010),
    ("radio", None, "radio", 0.030),
    ("listen with", "Others profile more", "listen-with", 0.820),
    ("listen with", "Online playlist more", "online-playlist", 0.080),
    ("listen with", "Album more", "album", 0.020),
    ("listen with", None, "listen-with", 0.070),
    ("explore", "Explore", "online-playlist", 0.520),
    ("explore", "Online playlist more", "online-playlist", 0.220),
    ("explore", "Explore", "topic-article-playlist", 0.070),
    ("explore", "Album more", "album", 0.050),
    ("explore", "Artist more", "top-hits-for-artist", 0.040),
    ("explore", None, "online-playlist", 0.100),
    ("notification", None, "online-playlist", 0.350),
    ("notification", "Local playlist more", "local-library", 0.250),
    ("notification", "Discover Feature", "online-playlist", 0.250),
    ("notification", None, "my-daily-playlist", 0.150),
    ("settings", None, "local-library", 0.500),
    ("settings", "Local playlist more", "local-library", 0.350),
    ("settings", None, "topic-article-playlist", 0.150),
    (None, None, None, 1.0),
]
EXTRA_MISSING = {"source_system_tab": 0.0006, "source_type": 0.0010}  # blanked on top of the triples
NULL_LITERAL_SHARE = 0.3   # share of missing source cells written as the string "null" (else empty)

# ---------------------------------------------------------------------------------------------
# members and songs: real-like category codes and shares
CITIES = np.array([1, 13, 5, 4, 15, 22, 6, 14, 12, 9, 8, 11, 18, 10, 21, 3, 17, 7, 16, 20, 19])
CITY_SHARE = np.array([.5652, .0987, .0766, .0503, .0443, .0426, .0265, .0206, .0143, .0090, .0084,
                       .0083, .0075, .0063, .0062, .0059, .0044, .0027, .0010, .0008, .0003])
VIA = np.array([4, 7, 9, 3, 13, 16])
VIA_SHARE = np.array([0.3311, 0.2742, 0.2508, 0.1418, 0.0020, 0.0001])
VIA_LOGIT = np.array([-0.10, 0.15, 0.05, -0.05, 0.0, 0.0])
REG_YEARS = np.arange(2004, 2016)   # registration years of users present from the start
REG_YEAR_WEIGHT = np.array([260, 396, 506, 706, 516, 497, 1215, 3070, 1872, 3102, 2699, 4679.0])
LANGUAGES = np.array([52, 3, -1, 17, 31, 24, 10, 59, 45, 38])
LANG_SHARE = np.array([0.40, 0.24, 0.15, 0.07, 0.06, 0.03, 0.03, 0.01, 0.006, 0.004])
LANG_LOGIT = np.array([-0.05, 0.10, -0.20, 0.0, 0.15, 0.05, 0.05, 0.0, 0.0, 0.0])
LANG_POPULARITY = np.array([1.0, 2.5, 0.5, 0.8, 1.5, 1.0, 1.5, 0.6, 0.6, 0.6])  # KKBOX is Mandarin-heavy
GENRES = np.array([465, 1609, 2022, 921, 958, 2122, 786, 1259, 458, 359, 139, 444, 947, 726, 437, 1152,
                   451, 873, 940, 109, 1011, 125, 798, 880, 388, 2072, 1955, 691, 829, 1180, 1995, 2130,
                   242, 409, 374, 2189, 2058, 1572, 1616, 423, 352, 893])
GENRE_SHARE = np.array([.40, .060, .055, .045, .043, .038, .036, .035, .031, .024, .022, .022, .018, .017,
                        .017, .015, .010, .009, .009, .008, .007, .007, .005, .005, .005, .004, .004,
                        .003, .003, .003, .003, .003, .002, .002, .002, .002, .002, .002, .002, .002,
                        .002, .002])
ISRC_COUNTRY = {  # language -> (country codes, shares)
    3: (["TW", "HK", "CN", "US", "QM"], [0.70, 0.10, 0.10, 0.05, 0.05]),
    10: (["HK", "TW", "CN"], [0.75, 0.20, 0.05]),
    24: (["TW", "HK", "CN"], [0.70, 0.20, 0.10]),
    17: (["JP", "US"], [0.92, 0.08]),
    31: (["KR", "US"], [0.90, 0.10]),
    None: (["US", "GB", "DE", "FR", "NL", "IT", "CA", "AU", "SE", "QM", "TC"],
        [0.42, 0.20, 0.07, 0.06, 0.04, 0.04, 0.03, 0.03, 0.03, 0.05, 0.03]),
}
LATIN_FIRST = ["Aiden", "Bella", "Carter", "Daria", "Elias", "Freya", "Gavin", "Hana", "Ivan", "Jade",
               "Kai", "Luna", "Milo", "Nora", "Owen", "Piper", "Quinn", "Rhea", "Silas", "Tessa", "Umar",
               "Vera", "Wes", "Xena", "Yuri", "Zara", "Leon", "Maya", "Noah", "Iris", "Felix", "Cleo",
               "Jonas", "Lena", "Oscar", "Ruby", "Theo", "Elsa", "Hugo", "Ada"]
LATIN_LAST = ["Hart", "Vale", "Stone", "Reed", "Frost", "Lane", "Wolfe", "Cross", "Bloom", "Gray",
              "Knight", "Rivers", "Moss", "Parker", "Shaw", "Wynn", "North", "Fox", "Blake", "Hale",
              "Quill", "Rowe", "Marsh", "Sterling", "Crane", "Dunn", "Ember", "Finch", "Grove", "Holt"]
WORDS = ["Love", "Night", "Heart", "Summer", "Rain", "Dream", "Fire", "Light", "Home", "Forever",
         "Tonight", "Stay", "Run", "Gold", "Blue", "Sky", "Alone", "Together", "Wild", "Young", "Story",
         "Stars", "Ocean", "Moon", "Shadow", "Dance", "Roads", "Morning", "Echoes", "Paradise", "Again",
         "Falling", "Closer", "Broken", "Magic", "River", "City", "Waves", "Hold", "Me", "You", "On",
         "My", "Mind", "Back", "Time", "Better", "Last", "First", "Kiss", "Neon", "Velvet", "Silver",
         "Electric", "Golden", "Crystal", "Thunder", "Lunar", "Scarlet", "Atlas", "Signal", "Harbor"]
CJK_SURNAME = list("王李張劉陳楊黃趙吳周徐孫馬朱胡郭何林羅高鄭梁謝宋唐許韓馮鄧曹彭曾蕭田董潘袁蔡蔣余杜葉程魏蘇呂丁")
CJK_GIVEN = list("偉芳娜敏靜麗強磊軍洋勇艷傑娟濤明超秀霞平剛桂英華玉萍紅玲芬燕彬鵬輝丹晨琳雪婷宇瑩怡晴嘉佳欣豪")
CJK_TITLE = list("愛我你們的心夢天光雨風花月星海夜情歌時間永遠回憶說再見等待幸福孤單城市遠方微笑眼淚青春未來相信勇氣溫柔寂寞")
HANGUL = list("가나다라마바사아자차카타하지민수현준서연우진영호은혜소윤태성하린")
KANA = list("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわん")
TITLE_SUFFIX = [" (Live)", " (Remix)", " - Radio Edit", " (Acoustic Version)", " (Instrumental)"]
B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8)
WINDOW_START = np.datetime64("2016-01-01")   # time 0 of the simulation
WINDOW_DAYS = 424                            # time 1 = 2017-02-28, the last real registration date


# ---------------------------------------------------------------------------------------------
# small vectorised helpers
def _norm(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p / p.sum()


def _cdf(p: np.ndarray) -> np.ndarray:
    """Row-wise cumulative distribution with the last column exactly 1 (searchsorted-safe)."""
    c = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    c[..., -1] = 1.0
    return c


def _rowwise_choice(rng: np.random.Generator, cdf: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One category per entry of `rows`, drawn from cdf[rows] (all rows at once, no loop).

    Row r of the table is shifted by r so one searchsorted over the flat table serves every row.
    """
    n_rows, n_cat = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    idx = np.searchsorted(flat, rows + rng.random(len(rows)), side="right")
    return (np.minimum(idx, flat.size - 1) - rows * n_cat).astype(np.int32)


def _choice(rng: np.random.Generator, p, n: int) -> np.ndarray:
    """n draws from one categorical distribution (inverse CDF)."""
    return np.searchsorted(_cdf(_norm(p)), rng.random(n), side="right").astype(np.int32)


def _b64_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """n unique 44-character ids shaped like base64 of 32 random bytes (43 chars and '=')."""
    codes = rng.integers(0, 64, size=(n, 44), dtype=np.uint8)
    codes[:, 42] &= 0b111100          # 32 bytes leave only 4 bits for the 43rd character
    chars = B64[codes]
    chars[:, 43] = ord("=")
    ids = np.ascontiguousarray(chars).view("S44").ravel()
    if np.unique(ids).size != n:      # 2**252 possibilities: never happens, but ids must be unique
        raise RuntimeError("duplicate synthetic id")
    return pl.Series(ids).cast(pl.String)


def _yyyymmdd(days_since_window_start: np.ndarray) -> np.ndarray:
    """Integer dates YYYYMMDD, as in members.csv."""
    d = WINDOW_START + np.round(days_since_window_start).astype(np.int64).astype("timedelta64[D]")
    years = d.astype("datetime64[Y]")
    months = d.astype("datetime64[M]")
    return ((years.astype(np.int64) + 1970) * 10_000 + (months.astype(np.int64) % 12 + 1) * 100
            + (d - months).astype(np.int64) + 1)


def _days_to(date: str) -> int:
    return int((np.datetime64(date) - WINDOW_START).astype(np.int64))


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


# ---------------------------------------------------------------------------------------------
# entities
@dataclass
class Clusters:
    centre: np.ndarray       # (K, d) unit-norm taste centres
    share: np.ndarray        # (K,) global popularity of each cluster
    lang_cdf: np.ndarray     # (K, n_languages) language mix of the cluster's songs
    genre_cdf: np.ndarray    # (K, n_genres) genre mix of the cluster's songs


@dataclass
class Songs:
    cluster: np.ndarray
    artist: np.ndarray
    language: np.ndarray     # index into LANGUAGES
    genres: np.ndarray       # (S, 4) indices into GENRES, -1 = none; column 0 is the primary genre
    release: np.ndarray      # time of release; -1 = back catalogue (available from the start)
    year: np.ndarray         # calendar release year (ISRC)
    popularity: np.ndarray
    appeal: np.ndarray       # b_s
    latent: np.ndarray       # (S, d) q_s
    artist_language: np.ndarray   # per artist: index into LANGUAGES


@dataclass
class Users:
    arrival: np.ndarray
    leave: np.ndarray
    activity: np.ndarray
    pref_cdf: np.ndarray     # (U, K) cumulative pi_u
    latent: np.ndarray       # (U, d) p_u
    tab_cdf: np.ndarray      # (U, n_tabs) personal mix of source tabs
    propensity: np.ndarray   # a_u
    city: np.ndarray
    bd: np.ndarray
    gender: np.ndarray       # 0 missing, 1 male, 2 female
    via: np.ndarray          # index into VIA
    registration: np.ndarray  # YYYYMMDD
    expiration: np.ndarray    # YYYYMMDD


def _make_clusters(rng: np.random.Generator, m: dict) -> Clusters:
    """Taste centres plus language/genre mixes that lean per cluster without identifying it."""
    k, d = m["n_clusters"], m["latent_dim"]
    centre = rng.standard_normal((k, d))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    share = _norm(rng.lognormal(0.0, 0.6, k))
    lang = rng.dirichlet(6.0 * LANG_SHARE + 1e-3, size=k) + 1e-9
    genre = rng.dirichlet(25.0 * GENRE_SHARE + 1e-3, size=k) + 1e-9
    return Clusters(centre, share, _cdf(lang), _cdf(genre))


def _make_songs(rng: np.random.Generator, n: int, cl: Clusters, m: dict) -> Songs:
    """Catalogue: artists with a home cluster and language, Zipf popularity, release times."""
    k = len(cl.share)
    n_art = max(20, n // 8)
    art_cluster = _choice(rng, np.ones(k), n_art)
    art_lang = _rowwise_choice(rng, cl.lang_cdf, art_cluster)
    art_genre = _rowwise_choice(rng, cl.genre_cdf, art_cluster)
    art_weight = rng.pareto(1.5, n_art) + 1.0
    art_weight = np.minimum(art_weight, 0.008 * art_weight.sum())  # prolific artists: up to ~1% of songs
    art_weight[0] = 0.04 / 0.96 * art_weight[1:].sum()        # artist 0 = "Various Artists": ~4%
    artist = _choice(rng, art_weight, n)
    various = artist == 0
    home = (rng.random(n) < 0.6) & ~various                    # songs mostly in the artist's cluster
    cluster = np.where(home, art_cluster[artist], _choice(rng, np.ones(k), n)).astype(np.int32)
    cluster[:k] = np.arange(k)                                 # every cluster has songs
    own_lang = (rng.random(n) < 0.9) & ~various
    language = np.where(own_lang, art_lang[artist], _rowwise_choice(rng, cl.lang_cdf, cluster))
    genres = np.full((n, 4), -1, dtype=np.int32)
    cluster_genre = _rowwise_choice(rng, cl.genre_cdf, cluster)
    genres[:, 0] = np.where(rng.random(n) < 0.5, art_genre[artist], cluster_genre)
    n_genres = 1 + _choice(rng, [0.92, 0.06, 0.015, 0.005], n)
    for j in range(1, 4):   # extra genres of multi-genre songs (a loop over 3 columns, not rows)
        extra = _choice(rng, GENRE_SHARE, n)
        genres[:, j] = np.where((n_genres > j) & (extra != genres[:, 0]), extra, -1)
    back = rng.random(n) < m["back_catalogue"]
    back[np.unique(cluster, return_index=True)[1]] = True       # every cluster playable from t=0
    release = np.where(back, -1.0, rng.random(n))
    year = np.where(back, np.maximum(1955.0, 2016.0 - rng.exponential(5.0, n)),
                    2016.0 + release * WINDOW_DAYS / 365.25)
    popularity = ((rng.pareto(m["popularity_alpha"], n) + 1.0) * LANG_POPULARITY[language]
                  * np.where(back, 1.0, m["new_song_boost"]))
    # appeal: popularity, the artist's own appeal (shared by the artist's songs, so it is known for a
    # new song of a known artist) and the song's own part
    w_pop, w_art = m["popularity_appeal"], m["artist_appeal"]
    art_appeal = rng.standard_normal(n_art)
    appeal = m["song_sd"] * (w_pop * _zscore(np.log(popularity)) + w_art * art_appeal[artist]
                             + np.sqrt(max(1.0 - w_pop ** 2 - w_art ** 2, 0.0)) * rng.standard_normal(n))
    latent = cl.centre[cluster] + m["song_noise"] * rng.standard_normal((n, cl.centre.shape[1])) / np.sqrt(
        cl.centre.shape[1])
    return Songs(cluster, artist.astype(np.int32), language.astype(np.int32), genres, release,
                 np.floor(year).astype(np.int32), popularity, appeal, latent, art_lang)


def _make_users(rng: np.random.Generator, n: int, cl: Clusters, m: dict) -> Users:
    """Users with arrival/churn times, heavy-tailed activity, sparse taste and a member profile."""
    d = cl.centre.shape[1]
    old = rng.random(n) < m["old_users"]
    tilt, u = m["arrival_tilt"], rng.random(n)
    later = (1 - np.sqrt(1 - tilt * (2 - tilt) * u)) / tilt if tilt else u   # density ~ 1 - tilt * t
    arrival = np.where(old, 0.0, later)
    churn = rng.random(n) < m["churn"]
    leave = np.where(churn, np.minimum(1.0, arrival + rng.exponential(0.35, n) + 0.01), 1.0)
    activity = np.exp(m["activity_sigma"] * np.clip(rng.standard_normal(n), -4.0, 2.8))
    pref = rng.dirichlet(m["user_concentration"] * cl.share, size=n) + 1e-9
    latent = pref @ cl.centre + m["user_noise"] * rng.standard_normal((n, d)) / np.sqrt(d)
    tabs = rng.dirichlet(m["tab_concentration"] * TAB_SHARE, size=n) + 1e-12
    w_act = m["activity_propensity"]   # heavy users replay more: the part of a_u visible in activity
    propensity = m["user_sd"] * (w_act * _zscore(np.log(activity)) + np.sqrt(1 - w_act ** 2) * rng.standard_normal(n))
    city, bd, gender, via = _member_profile(rng, n)
    registration, expiration = _member_dates(rng, arrival, old)
    return Users(arrival, leave, activity, _cdf(pref), latent, _cdf(tabs), propensity, city, bd, gender,
                 via, registration, expiration)


def _member_profile(rng: np.random.Generator, n: int):
    """city, bd, gender, registered_via with the real shares (bd 0 and gender empty go together)."""
    city = CITIES[_choice(rng, CITY_SHARE, n)]
    given = rng.random(n) < 0.42
    gender = np.where(given, 1 + (rng.random(n) < 0.49), 0)
    age = np.clip(np.round(14 + rng.gamma(3.0, 4.8, n)), 3, 97).astype(np.int64)
    has_age = np.where(given, rng.random(n) < 0.98, rng.random(n) < 0.015)
    bd = np.where(has_age, age, 0)
    odd = rng.choice(n, size=max(2, round(7e-4 * n)), replace=False)     # outliers of the real data
    bd[odd] = np.where(rng.random(odd.size) < 0.12, -rng.integers(1, 50, odd.size),
                       np.where(rng.random(odd.size) < 0.8, rng.integers(101, 150, odd.size),
                                rng.integers(900, 1052, odd.size)))
    bd[odd[0]], bd[odd[1]] = -rng.integers(1, 50), rng.integers(1000, 1052)  # always one of each
    via = _choice(rng, VIA_SHARE, n)
    return city.astype(np.int64), bd, gender, via


def _member_dates(rng: np.random.Generator, arrival: np.ndarray, old: np.ndarray):
    """registration_init_time (tied to arrival) and expiration_date (mostly 2017), YYYYMMDD."""
    n = arrival.size
    year = REG_YEARS[_choice(rng, REG_YEAR_WEIGHT, n)]
    start = np.array([_days_to(f"{y}-01-01") for y in REG_YEARS])[year - REG_YEARS[0]]
    old_reg = np.maximum(start + rng.random(n) * 365, _days_to("2004-03-26"))
    new_reg = arrival * WINDOW_DAYS - rng.random(n) * 3
    reg = np.where(old, old_reg, np.maximum(new_reg, 0))
    kind = _choice(rng, [0.55, 0.22, 0.16, 0.05, 0.0145, 0.0005], n)
    bounds = [("2017-01-01", "2017-12-31"), ("2017-01-01", "2017-12-31"), ("2016-01-01", "2016-12-31"),
              ("2018-01-01", "2018-12-31"), ("2004-06-01", "2015-12-31"), ("2019-01-01", "2020-10-17")]
    lo = np.array([_days_to(a) for a, _ in bounds])[kind]
    hi = np.array([_days_to(b) for _, b in bounds])[kind]
    exp = lo + rng.random(n) * (hi - lo)
    autumn = np.clip(_days_to("2017-09-20") + 25 * rng.standard_normal(n), lo, hi)
    exp = np.maximum(np.where(kind == 0, autumn, exp), reg)
    expiration = _yyyymmdd(exp)
    expiration[rng.choice(n, size=max(1, round(n / 34_403)), replace=False)] = 19700101
    return _yyyymmdd(reg), expiration


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


# ---------------------------------------------------------------------------------------------
# text columns
def _cat(*parts, sep: str = "") -> pl.Series:
    """Element-wise concatenation of string Series and literal strings."""
    return pl.select(pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts], separator=sep)
                     ).to_series()


def _where(mask: np.ndarray, a: pl.Series, b: pl.Series) -> pl.Series:
    """np.where for string Series."""
    return pl.select(pl.when(pl.lit(pl.Series(mask))).then(a).otherwise(b)).to_series()


def _pick(style: np.ndarray, options: dict[int, pl.Series]) -> pl.Series:
    """Row-wise choice among equally long string Series by an integer code."""
    out = options[0]
    for code, s in options.items():
        out = _where(style == code, s, out) if code else out
    return out


def _words(rng, vocab: list[str], n: int, lo: int, hi: int, sep: str) -> pl.Series:
    """n strings of lo..hi words from vocab (one column per word slot, no loop over rows)."""
    voc = pl.Series(vocab + [None], dtype=pl.String)
    k = rng.integers(lo, hi + 1, n)
    slots = {f"w{j}": voc.gather(np.where(k > j, rng.integers(0, len(vocab), n), len(vocab)))
             for j in range(hi)}
    return pl.DataFrame(slots).select(pl.concat_str(pl.all(), separator=sep, ignore_nulls=True)).to_series()


def _lang_style(language_idx: np.ndarray) -> np.ndarray:
    """Writing style of names: 0 latin, 1 Chinese, 2 Japanese, 3 Korean (by KKBOX language code)."""
    code = LANGUAGES[language_idx]
    return np.select([np.isin(code, [3, 10, 24]), code == 17, code == 31], [1, 2, 3], 0)


def _person_names(rng, style: np.ndarray, bands: bool = True) -> pl.Series:
    """Person (or band) names in the style of the language; some carry a latin or native alias in
    parentheses, like the real "張信哲 (Jeff Chang)"."""
    n = style.size
    person = _cat(_words(rng, LATIN_FIRST, n, 1, 1, ""), _words(rng, LATIN_LAST, n, 1, 1, ""), sep=" ")
    band = _words(rng, WORDS, n, 1, 2, " ")
    band = _where(rng.random(n) < 0.4, _cat("The ", band), band.str.to_uppercase())
    latin = _where(rng.random(n) < 0.35 * bands, band, person)
    cjk = _cat(_words(rng, CJK_SURNAME, n, 1, 1, ""), _words(rng, CJK_GIVEN, n, 1, 2, ""))
    cjk = _where(rng.random(n) < 0.35, _cat(cjk, " (", person, ")"), cjk)
    kana = _words(rng, KANA, n, 3, 6, "")
    kana = _where(rng.random(n) < 0.3, _cat(person, " (", kana, ")"), kana)
    hangul = _where(rng.random(n) < 0.5 * bands, band.str.to_uppercase(), _words(rng, HANGUL, n, 2, 3, ""))
    return _pick(style, {0: latin, 1: cjk, 2: kana, 3: hangul})


def _name_lists(rng, style: np.ndarray, present: np.ndarray, pool: pl.Series, pool_style: np.ndarray,
                max_k: int) -> pl.Series:
    """'A| B| C' lists (the real separator) of 1..max_k people of the row's style from the pool,
    prolific people more often; None where not `present`."""
    n = style.size
    order = np.argsort(pool_style, kind="stable")
    start = np.searchsorted(pool_style[order], np.arange(4))
    size = np.diff(np.append(start, order.size))
    k = 1 + _choice(rng, [0.62, 0.22, 0.1, 0.06][:max_k], n)
    pool = pool.append(pl.Series([None], dtype=pl.String))
    slots = {}
    for j in range(max_k):  # one column per list slot
        pos = start[style] + np.floor(size[style] * rng.random(n) ** 2.5).astype(np.int64)
        idx = np.where(present & (k > j), order[np.minimum(pos, order.size - 1)], pool.len() - 1)
        slots[f"c{j}"] = pool.gather(idx)
    joined = pl.concat_str(pl.all(), separator="| ", ignore_nulls=True)
    return pl.DataFrame(slots).select(pl.when(joined != "").then(joined)).to_series()


def _titles(rng, style: np.ndarray) -> pl.Series:
    """Song names by language style, a few with suffixes like ' (Live)'."""
    n = style.size
    out = _pick(style, {0: _words(rng, WORDS, n, 1, 4, " "), 1: _words(rng, CJK_TITLE, n, 2, 5, ""),
                        2: _words(rng, KANA, n, 3, 7, ""), 3: _words(rng, HANGUL, n, 2, 4, "")})
    suffix = pl.Series(TITLE_SUFFIX + [""]).gather(
        np.where(rng.random(n) < 0.08, rng.integers(0, len(TITLE_SUFFIX), n), len(TITLE_SUFFIX)))
    return _cat(out, suffix)


def _with_csv_hazards(rng, names: pl.Series) -> pl.Series:
    """Put double quotes, commas and line breaks into a few names, so the file has quoted and
    multi-line records as the real one does (a fixed minimum count, also for tiny catalogues)."""
    n = names.len()
    counts = [max(3, round(0.006 * n)), max(3, round(0.004 * n)), max(2, round(3e-4 * n))]
    chosen = rng.choice(n, size=sum(counts), replace=False)
    kind = np.repeat([0, 1, 2], counts)
    old, word = names.gather(chosen), _words(rng, WORDS, chosen.size, 1, 2, " ")
    new = _pick(kind, {0: _cat(old, ' (From "', word, '")'), 1: _cat(old, ", ", word),
                       2: _cat(old, "\n", word)})
    return names.scatter(chosen, new)


def _isrc(rng, songs: Songs) -> pl.Series:
    """country(2) + registrant(3, one per artist) + YY(2, release year) + designation(5); ~13% missing."""
    n, n_art = songs.cluster.size, songs.artist_language.size
    art_code = LANGUAGES[songs.artist_language]
    country = np.zeros((n_art, 2), dtype=np.uint8)
    for lang, (codes, share) in ISRC_COUNTRY.items():  # loop over a handful of languages
        sel = art_code == lang if lang is not None else ~np.isin(art_code, [3, 10, 24, 17, 31])
        pick = np.array([list(c.encode()) for c in codes], dtype=np.uint8)[_choice(rng, share, sel.sum())]
        country[sel] = pick
    alnum = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    registrant = alnum[rng.integers(0, 36, (n_art, 3))]
    digits = np.frombuffer(b"0123456789", dtype=np.uint8)
    yy = songs.year % 100
    code = np.concatenate([country[songs.artist], registrant[songs.artist],
                           digits[np.stack([yy // 10, yy % 10], axis=1)],
                           digits[rng.integers(0, 10, (n, 5))]], axis=1)
    isrc = pl.Series(np.ascontiguousarray(code).view("S12").ravel()).cast(pl.String)
    return isrc.scatter(np.flatnonzero(rng.random(n) < 0.13), None)


def _song_length(rng, n: int) -> np.ndarray:
    """Milliseconds: lognormal around 235 s, plus rare jingles and hour-long tracks."""
    body = rng.lognormal(np.log(234_000), 0.22, n)
    short = rng.lognormal(np.log(90_000), 0.8, n)
    long = rng.lognormal(np.log(420_000), 0.6, n)
    kind = _choice(rng, [0.93, 0.035, 0.035], n)
    return np.clip(np.select([kind == 1, kind == 2], [short, long], body), 1_000, 12_000_000).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# frames
def _rows_frame(sim: Simulation, user_ids: pl.Series, song_ids: pl.Series, sl: slice) -> pl.DataFrame:
    """msno, song_id and the three source columns of the rows in `sl`."""
    cols = {"msno": user_ids.gather(sim.rows.user[sl]), "song_id": song_ids.gather(sim.rows.song[sl])}
    for name, (vocab, code) in sim.codes.items():
        cols[name] = pl.Series(vocab, dtype=pl.String).gather(code[sl])
    return pl.DataFrame(cols)


def _members_frame(users: Users, ids: pl.Series, keep: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({
        "msno": ids.gather(keep),
        "city": users.city[keep],
        "bd": users.bd[keep],
        "gender": pl.Series([None, "male", "female"], dtype=pl.String).gather(users.gender[keep]),
        "registered_via": VIA[users.via[keep]],
        "registration_init_time": users.registration[keep],
        "expiration_date": users.expiration[keep],
    })


def _genre_ids(rng, songs: Songs) -> pl.Series:
    """'465' or '465|958' (pipe-separated), ~4% missing."""
    names = pl.Series([str(g) for g in GENRES] + [None], dtype=pl.String)
    slots = {f"g{j}": names.gather(np.where(songs.genres[:, j] >= 0, songs.genres[:, j], len(GENRES)))
             for j in range(songs.genres.shape[1])}
    ids = pl.DataFrame(slots).select(pl.concat_str(pl.all(), separator="|", ignore_nulls=True)).to_series()
    return ids.scatter(np.flatnonzero(rng.random(ids.len()) < 0.041), None)


def _songs_frame(rng, songs: Songs, ids: pl.Series) -> pl.DataFrame:
    """songs.csv for the whole catalogue: artists, composers (~47% missing), lyricists (~85%)."""
    n = songs.cluster.size
    style = _lang_style(songs.language)
    artists = _person_names(rng, _lang_style(songs.artist_language)).scatter(0, "Various Artists")
    artist_name = artists.gather(songs.artist)
    pool_style = _lang_style(_choice(rng, LANG_SHARE, max(50, n // 3)))
    pool = _person_names(rng, pool_style, bands=False)
    has_composer = rng.random(n) < 0.53
    composer = _name_lists(rng, style, has_composer, pool, pool_style, 4)
    self_written = has_composer & (rng.random(n) < 0.2) & (songs.artist != 0)
    composer = _where(self_written, artist_name, composer)
    has_lyricist = rng.random(n) < 0.15
    lyricist = _name_lists(rng, style, has_lyricist, pool, pool_style, 2)
    lyricist = _where(has_lyricist & has_composer & (rng.random(n) < 0.5), composer, lyricist)
    return pl.DataFrame({"song_id": ids, "song_length": _song_length(rng, n),
                         "genre_ids": _genre_ids(rng, songs), "artist_name": artist_name,
                         "composer": composer, "lyricist": lyricist, "language": LANGUAGES[songs.language]})


def _song_frames(rng, songs: Songs, ids: pl.Series, played: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """songs.csv and song_extra_info.csv, rows shuffled; ~0.5% (songs) and ~0.2% (extra) of the
    played songs have no row, unplayed catalogue songs do have one."""
    n = songs.cluster.size
    songs_df = _songs_frame(rng, songs, ids)
    names = _with_csv_hazards(rng, _titles(rng, _lang_style(songs.language)))
    extra_df = pl.DataFrame({"song_id": ids, "name": names, "isrc": _isrc(rng, songs)})
    played_idx = np.flatnonzero(played)
    frames = []
    for df, share in ((songs_df, 0.005), (extra_df, 0.002)):
        drop = rng.choice(played_idx, size=max(1, round(share * played_idx.size)), replace=False)
        frames.append(df[rng.permutation(np.setdiff1d(np.arange(n), drop))])
    return frames[0], frames[1]


# ---------------------------------------------------------------------------------------------
# summary figures
def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC (ties share their average rank), equal to sklearn's roc_auc_score."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    bounds = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [s.size]])
    avg_rank = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    pos = label[order].astype(bool)
    n_pos = pos.sum()
    n_neg = s.size - n_pos
    return float((avg_rank[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def cold_start_shares(user: np.ndarray, song: np.ndarray, fraction: float = 0.8) -> dict:
    """Shares of the distinct users/songs of the last (1 - fraction) rows unseen in the first part."""
    cut = int(round(fraction * user.size))

    def unseen(x):
        late = np.unique(x[cut:])
        return float(1.0 - np.isin(late, np.unique(x[:cut])).mean()) if late.size else 0.0
    return {"test_songs_unseen_share": unseen(song), "test_users_unseen_share": unseen(user)}


def top_user_share(user: np.ndarray, top: float = 0.01) -> float:
    """Share of rows made by the most active `top` share of users (of those with rows)."""
    counts = np.sort(np.bincount(user)[np.unique(user)])[::-1]
    return float(counts[: max(1, int(round(top * counts.size)))].sum() / user.size)


def _summary(sim: Simulation, target: np.ndarray, n_flipped: int, n_members: int, n_songs_csv: int) -> dict:
    """Figures to check a generated set against its targets: sizes, target mean (also of the first
    10k rows), oracle AUC of p_true vs the drawn train label, top-1% user row share, cold start on the
    80/20 time split of train.csv, share of each logit part in the logit variance, missing sources."""
    n = sim.n_train
    tr, te = slice(0, n), slice(n, None)
    r = sim.rows
    comps = {k: v[tr] for k, v in sim.components.items()}
    total_var = np.var(np.sum(list(comps.values()), axis=0))
    missing = {}
    for col, (vocab, code) in sim.codes.items():
        missing[col] = round(float((code[tr] >= len(vocab) - 2).mean()), 5)
    return {
        "preset": sim.params["preset"],
        "train_rows": n, "test_rows": int(r.user.size - n),
        "train_users": int(np.unique(r.user[tr]).size), "train_songs": int(np.unique(r.song[tr]).size),
        "test_users": int(np.unique(r.user[te]).size), "test_songs": int(np.unique(r.song[te]).size),
        "members_rows": n_members, "songs_rows": n_songs_csv,
        "target_mean": float(target.mean()),
        "label_mean_before_noise": float(sim.label[tr].mean()),
        "head_10k_target_mean": float(target[:10_000].mean()),
        "test_label_mean": float(sim.label[te].mean()) if r.user.size > n else None,
        "oracle_auc": _auc(sim.p_true[tr], sim.label[tr]),
        "flipped": n_flipped,
        "top1pct_user_row_share": top_user_share(r.user[tr]),
        "cold_start": cold_start_shares(r.user[tr], r.song[tr]),
        "logit_variance_share": {k: round(float(np.var(v) / total_var), 4) for k, v in comps.items()},
        "source_missing_share": missing,
    }


# ---------------------------------------------------------------------------------------------
# public entry point
def generate(out_dir, preset: str = "small", *, label_noise: float = 0.0, random_state=0,
             train_rows=None, test_rows=None) -> dict:
    """Write train.csv, test.csv, members.csv, songs.csv, song_extra_info.csv (real KKBOX format),
    truth.parquet and generation.json into out_dir (created if needed); return the summary.

    label_noise flips exactly round(label_noise * train rows) train.csv labels (truth.parquet keeps
    the drawn label and marks the flips). Same arguments give byte-identical files, so the timing
    ("seconds") is only in the returned summary, not in generation.json.
    """
    started = time.perf_counter()
    label_noise = _check_label_noise(label_noise)
    p = _params(preset, train_rows, test_rows)
    rs = _check_random_state(random_state)
    streams = _streams(rs)
    sim = _simulate(p, streams)
    flipped = _flips(streams["noise"], sim.n_train, label_noise)
    target = sim.label[: sim.n_train] ^ flipped.astype(np.int8)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_members, n_songs_csv = _write_csvs(out, sim, target, streams["text"])
    _write_truth(out / "truth.parquet", sim, flipped)
    summary = _summary(sim, target, int(flipped.sum()), n_members, n_songs_csv)
    params = dict(p, label_noise=label_noise, random_state=rs, b0=sim.b0)
    (out / "generation.json").write_text(json.dumps({"params": params, "summary": summary}, indent=2) + "\n")
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def _flips(rng, n_train: int, label_noise: float) -> np.ndarray:
    """Exactly round(label_noise * n_train) train rows, chosen uniformly, get their label flipped."""
    flipped = np.zeros(n_train, dtype=bool)
    flipped[rng.choice(n_train, size=int(round(label_noise * n_train)), replace=False)] = True
    return flipped


def _write_csvs(out: Path, sim: Simulation, target: np.ndarray, rng) -> tuple[int, int]:
    """The five KKBOX files; returns the row counts of members.csv and songs.csv."""
    n = sim.n_train
    user_ids = _b64_ids(rng, sim.users.arrival.size)
    song_ids = _b64_ids(rng, sim.songs.cluster.size)
    train = _rows_frame(sim, user_ids, song_ids, slice(0, n)).with_columns(target=pl.Series(target))
    train.select(TRAIN_COLUMNS).write_csv(out / "train.csv")
    del train
    test = _rows_frame(sim, user_ids, song_ids, slice(n, None))
    test.with_columns(id=pl.int_range(test.height, dtype=pl.Int64)).select(TEST_COLUMNS).write_csv(out / "test.csv")
    del test
    members = _members_frame(sim.users, user_ids, np.unique(sim.rows.user))
    members.select(MEMBER_COLUMNS).write_csv(out / "members.csv")
    played = np.zeros(sim.songs.cluster.size, dtype=bool)
    played[sim.rows.song] = True
    songs, extra = _song_frames(rng, sim.songs, song_ids, played)
    songs.select(SONG_COLUMNS).write_csv(out / "songs.csv")
    extra.select(EXTRA_COLUMNS).write_csv(out / "song_extra_info.csv")
    return members.height, songs.height


def _write_truth(path: Path, sim: Simulation, flipped: np.ndarray) -> None:
    """One row per train.csv row, then per test.csv row: file, row, p_true, label (drawn), flipped."""
    n, m = sim.n_train, sim.rows.user.size - sim.n_train
    pl.DataFrame({
        "file": pl.Series(["train", "test"], dtype=pl.String).gather(np.repeat([0, 1], [n, m])),
        "row": np.concatenate([np.arange(n), np.arange(m)]).astype(np.int64),
        "p_true": sim.p_true.astype(np.float64),
        "label": sim.label.astype(np.int8),
        "flipped": np.concatenate([flipped, np.zeros(m, dtype=bool)]),
    }).write_parquet(path)
