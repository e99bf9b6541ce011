"""The entities of the world: taste clusters, songs (with artists) and users, drawn from one generator;
plus the small vectorised sampling helpers every part of the generator uses."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from musicrec.synthetic.constants import (
    B64,
    CITIES,
    CITY_SHARE,
    GENRE_SHARE,
    LANG_POPULARITY,
    LANG_SHARE,
    REG_YEAR_WEIGHT,
    REG_YEARS,
    TAB_SHARE,
    VIA_SHARE,
    WINDOW_DAYS,
    WINDOW_START,
)


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


