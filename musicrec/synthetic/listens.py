"""Synthetic listening logs with a known truth, written in a real published format.

The generative story, per (user, track) pair a user discovers:
- users have a heavy-tailed activity (log-normal number of tracks discovered) and join at a random
  time; tracks have Zipf popularity and belong to artists of Zipf size;
- taste is low rank and shared, as in the KKBOX generator: `genres` centres in `factors` dimensions,
  an artist sits near one centre, a track near its artist; a user's vector is a Dirichlet mix of the
  centres, and it drifts linearly over the log towards a second mix (u0 + (t / T) * drift);
- a track's bias is mostly its (log) popularity and its artist's appeal, a user's partly its (log)
  activity (again as in the KKBOX generator); P(replay within window_days) =
  sigmoid(mu + b_user + b_track + taste_scale * <u, v> / sqrt(factors));
- a replay within the window is drawn with that probability (one or more plays inside the window),
  some tracks come back later than the window, a few plays are submitted twice seconds apart
  (the reader's same-play rule merges them); nothing after the log end is written;
- bots (`bot_share`, off by default) are noise accounts playing tracks drawn uniformly from the
  catalogue whatever their taste, or (`bot_tracks`) a stream farm looping a few promoted tracks
  between tracks of one genre, as if its fans (a shilling attack).

truth.parquet holds every first listen: user, track (the id the reader derives), first (epoch s),
p_true (the generating probability) and label (replayed within the window). Generation runs in
chunks of users, each written as its own file (and appended to truth.parquet), so memory stays
bounded at any preset.

    python -m musicrec.synthetic.listens --preset tiny --format lastfm1k --out /tmp/listens
    ./run.sh 01 --set data.source=listens --set data.listens.format=lastfm1k \\
        --set data.listens.path=/tmp/listens/listens
"""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from musicrec.listen_schema import DAY, GENERATOR, TRACK_SEP

LOG_START = 1_230_768_000  # 2009-01-01 UTC
FORMATS = ("lastfm1k", "listenbrainz", "table")


@dataclass(frozen=True)
class Preset:
    users: int
    tracks: int
    artists: int
    tracks_per_user: float  # median distinct tracks a user discovers (log-normal, sigma below)
    days: int = 365
    activity_sigma: float = 1.0
    factors: int = 8
    genres: int = 24  # taste centres; artists sit near one, tracks near their artist
    artist_spread: float = 0.15  # an artist's offset from its genre's centre (per dimension sd)
    track_spread: float = 0.1  # a track's offset from its artist
    user_spread: float = 0.1  # a user's offset from its mix of centres
    genre_concentration: float = 1.0  # Dirichlet concentration of a user's mix (small = few genres)
    taste_scale: float = 4.0  # a mix of centres is short: this gives taste a logit sd of ~1.2 at `small`
    drift_scale: float = 0.3  # share of the way to the second mix a user has moved by the log's end
    mu: float = -2.5
    user_bias_sd: float = 0.8
    track_bias_sd: float = 0.6
    window_days: float = 30.0
    extra_in_window: float = 1.5  # mean further plays inside the window, given a replay
    late_share: float = 0.35  # P(a play after the window) relative to P(replay)
    duplicate_share: float = 0.02  # first plays submitted twice within 5 s
    chunk_users: int = 2000
    discovery: int = 3  # candidate tracks drawn by popularity per track kept by taste
    bot_share: float = 0.0  # share of users who are bots (truth's `bot` column)
    bot_tracks: int = 0     # 0: a bot's tracks are drawn uniformly from the catalogue and kept whatever
                            # their taste (noise accounts); > 0: a stream farm: half of a bot's candidate
                            # draws are this many promoted tracks, shared by every bot, always kept and
                            # replayed with probability bot_replay; the rest is cover, kept by the taste of
                            # one genre every bot passes for a fan of (a shilling attack on its fans)
    bot_replay: float = 0.9


PRESETS = {
    "tiny": Preset(users=200, tracks=3_000, artists=300, tracks_per_user=80, days=240),
    "small": Preset(users=2_000, tracks=20_000, artists=2_000, tracks_per_user=300),
    # sized for out-of-core runs (~2.1 listens per first listen): ~18M, ~60M and ~180M listens
    "m18": Preset(users=8_000, tracks=400_000, artists=40_000, tracks_per_user=1_050, chunk_users=500),
    "m60": Preset(users=8_000, tracks=1_000_000, artists=80_000, tracks_per_user=3_500, chunk_users=200),
    "listenbrainz": Preset(users=8_000, tracks=2_000_000, artists=150_000, tracks_per_user=10_500,
                           chunk_users=100),
}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def zipf_weights(n: int, a: float, rng: np.random.Generator) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return rng.permutation(w / w.sum())


def standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() or 1.0)


def world(p: Preset, rng: np.random.Generator) -> dict:
    """Everything that is not per pair: users, tracks, artists, taste vectors, biases.

    Taste and biases are shared (genres, artists, popularity, activity) the way the KKBOX generator
    shares them, so what a track or user has in common with others can be learnt from their listens.
    """
    f = p.factors
    artist_w = zipf_weights(p.artists, 0.9, rng)
    T = p.days * DAY
    track_artist = rng.choice(p.artists, p.tracks, p=artist_w)
    track_w = zipf_weights(p.tracks, 0.8, rng)
    centres = rng.normal(0, 1, (p.genres, f))
    artist_v = centres[rng.integers(0, p.genres, p.artists)] + rng.normal(0, p.artist_spread, (p.artists, f))
    mix = rng.dirichlet(np.full(p.genres, p.genre_concentration), (2, p.users))
    u0 = mix[0] @ centres + rng.normal(0, p.user_spread, (p.users, f))
    u1 = mix[1] @ centres + rng.normal(0, p.user_spread, (p.users, f))
    n_tracks = np.maximum(2, np.rint(p.tracks_per_user * rng.lognormal(0, p.activity_sigma, p.users)
                                     / np.exp(p.activity_sigma ** 2 / 2))).astype(np.int64)
    artist_appeal = rng.normal(0, 1, p.artists)
    b_track = p.track_bias_sd * (0.6 * standardize(np.log(track_w)) + 0.7 * artist_appeal[track_artist]
                                 + np.sqrt(0.15) * rng.normal(0, 1, p.tracks))
    b_user = p.user_bias_sd * (0.5 * standardize(np.log(n_tracks)) + np.sqrt(0.75) * rng.normal(0, 1, p.users))
    out = {
        "T": T,
        "track_artist": track_artist,
        "track_w": track_w,
        "V": artist_v[track_artist] + rng.normal(0, p.track_spread, (p.tracks, f)),
        "b_track": b_track,
        "U0": u0,
        "D": p.drift_scale * (u1 - u0),
        "b_user": b_user,
        "n_tracks": n_tracks,
        "start": rng.uniform(0, 0.6 * T, p.users),
    }
    # drawn last, from a stream of their own: with bot_share 0 nothing more is drawn and the log is unchanged
    out["bot"], out["promoted"] = np.zeros(p.users, dtype=bool), np.zeros(0, dtype=np.int64)
    if p.bot_share > 0:
        brng = np.random.default_rng(rng.integers(0, 2**31, 2))
        out["bot"] = brng.uniform(size=p.users) < p.bot_share
        out["promoted"] = brng.choice(p.tracks, min(p.bot_tracks, p.tracks), replace=False)
        if p.bot_tracks:   # a farm passes for fans of one genre: its cover is kept by that genre's taste
            bots = np.flatnonzero(out["bot"])
            out["U0"][bots] = centres[brng.integers(p.genres)] + brng.normal(0, p.user_spread, (len(bots), f))
            out["D"][bots] = 0.0
    return out


def pairs_for(users: np.ndarray, w: dict, p: Preset, rng: np.random.Generator) -> dict:
    """First listens of a chunk of users: tracks found by popularity and kept by taste, times, probabilities.

    Each user draws `discovery` times as many candidate tracks as it keeps, by popularity, and keeps
    those with the highest taste + Gumbel noise: who plays what carries the same taste that drives
    replays (as in KKBOX's generator), so collaborative features can find it.
    """
    n = np.minimum(w["n_tracks"][users], p.tracks // (2 * p.discovery))
    user = np.repeat(users, n * p.discovery)
    track = rng.choice(p.tracks, len(user), p=w["track_w"])
    bot = np.flatnonzero(w["bot"][user])
    if len(bot) and len(w["promoted"]):      # a farm: half promoted tracks, half popular ones as cover
        bot = bot[rng.uniform(size=len(bot)) < 0.5]
        track[bot] = w["promoted"][rng.integers(0, len(w["promoted"]), len(bot))]
    elif len(bot):
        track[bot] = rng.integers(0, p.tracks, len(bot))
    key = np.unique(user.astype(np.int64) * p.tracks + track)
    user, track = key // p.tracks, key % p.tracks
    start = w["start"][user]
    first = start + rng.uniform(0, 1, len(user)) * (w["T"] - start)
    frac = (first / w["T"])[:, None]
    taste = np.einsum("ij,ij->i", w["U0"][user] + frac * w["D"][user], w["V"][track]) / np.sqrt(p.factors)
    bot = w["bot"][user]
    looped = bot & np.isin(track, w["promoted"])
    if not len(w["promoted"]):
        taste = np.where(bot, 0.0, taste)   # noise accounts keep and replay tracks whatever their taste
    pick = np.where(looped, np.inf, p.taste_scale * taste + rng.gumbel(size=len(user)))   # a farm keeps its loop
    keep_n = n[np.searchsorted(users, user)]
    rank = pl.DataFrame({"u": user, "k": -pick}).select(pl.col("k").rank("ordinal").over("u"))["k"].to_numpy()
    keep = rank <= keep_n
    user, track, first, taste, looped = user[keep], track[keep], first[keep], taste[keep], looped[keep]
    p_true = np.where(looped, p.bot_replay, sigmoid(p.mu + w["b_user"][user] + w["b_track"][track]
                                                    + p.taste_scale * taste))
    return {"user": user, "track": track, "first": first, "p_true": p_true}


def listens_for(pairs: dict, p: Preset, w: dict, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """Every listen (pair index, time) of the pairs, and each pair's label (replayed within the window)."""
    n = len(pairs["user"])
    window = p.window_days * DAY
    first = pairs["first"]
    replay = rng.uniform(size=n) < pairs["p_true"]
    k_in = np.where(replay, 1 + rng.poisson(p.extra_in_window, n), 0)
    late = rng.uniform(size=n) < p.late_share * pairs["p_true"]
    k_late = np.where(late, 1 + rng.poisson(1.0, n), 0)
    dup = rng.uniform(size=n) < p.duplicate_share
    idx = [np.arange(n), np.repeat(np.arange(n), k_in), np.repeat(np.arange(n), k_late), np.flatnonzero(dup)]
    times = [first,
             first[idx[1]] + rng.uniform(60, window, len(idx[1])),
             first[idx[2]] + window + 1 + rng.exponential(60 * DAY, len(idx[2])),
             first[idx[3]] + rng.uniform(0, 5, len(idx[3]))]
    pair = np.concatenate(idx)
    t = np.concatenate(times)
    keep = t <= w["T"]  # nothing after the log end
    inside = np.zeros(n, dtype=bool)  # label: a replay inside the window, written (before the log end)
    inside[idx[1][times[1] <= w["T"]]] = True
    return {"pair": pair[keep], "time": (LOG_START + np.floor(t[keep])).astype(np.int64)}, inside


def mbid(track: pl.Expr) -> pl.Expr:
    """A deterministic MusicBrainz-shaped id per track number."""
    return pl.concat_str(pl.lit("00000000-0000-4000-8000-"), track.cast(pl.String).str.zfill(12))


def frame_for(listens: dict, pairs: dict, w: dict) -> pl.DataFrame:
    pi = listens["pair"]
    track = pairs["track"][pi]
    return pl.DataFrame({"user": pairs["user"][pi].astype(np.int64), "track": track.astype(np.int64),
                         "artist": w["track_artist"][track].astype(np.int64), "time": listens["time"]})


def write_chunk(df: pl.DataFrame, fmt: str, path: Path) -> None:
    """One chunk of listens in the real format's layout."""
    user = pl.format("user_{}", pl.col("user").cast(pl.String).str.zfill(6))
    artist = pl.format("Artist {}", pl.col("artist"))
    name = pl.format("Track {}", pl.col("track"))
    if fmt == "lastfm1k":
        out = df.sort("user", "time", descending=[False, True]).select(
            user.alias("u"), pl.from_epoch("time", "s").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("t"),
            pl.lit("").alias("artist_mbid"), artist.alias("artist"), pl.lit("").alias("track_mbid"),
            name.alias("track"))
        out.write_csv(path, separator="\t", include_header=False, quote_style="never")
    elif fmt == "listenbrainz":
        out = df.select(
            pl.from_epoch("time", "s").cast(pl.Datetime("ms")).alias("listened_at"),
            pl.from_epoch("time", "s").cast(pl.Datetime("ms")).alias("created"),
            pl.col("user").alias("user_id"),
            pl.format("msid-{}", pl.col("track")).alias("recording_msid"),
            artist.alias("artist_name"), pl.format("Album {}", pl.col("artist")).alias("release_name"),
            name.alias("recording_name"), mbid(pl.col("track")).alias("recording_mbid"))
        out.write_parquet(path)
    else:
        df.select(user.alias("user"), name.alias("track"), pl.col("time"), artist.alias("artist")).write_csv(path)


def truth_ids(pairs: dict, w: dict, fmt: str) -> pl.DataFrame:
    """user and track as the reader derives them from the written log."""
    df = pl.DataFrame({"u": pairs["user"].astype(np.int64), "t": pairs["track"].astype(np.int64),
                       "a": w["track_artist"][pairs["track"]].astype(np.int64)})
    if fmt == "lastfm1k":
        track = pl.format("Artist {}{}Track {}", pl.col("a"), pl.lit(TRACK_SEP), pl.col("t"))
    elif fmt == "listenbrainz":
        track = mbid(pl.col("t"))
    else:
        track = pl.format("Track {}", pl.col("t"))
    user = (pl.col("u").cast(pl.String) if fmt == "listenbrainz"
            else pl.format("user_{}", pl.col("u").cast(pl.String).str.zfill(6)))
    return df.select(user.alias("user"), track.alias("track"))


def generate(out: Path, preset: str | Preset, fmt: str = "lastfm1k", random_state=0) -> dict:
    """Write out/listens/ (the log, one file per user chunk), out/truth.parquet and out/source.json."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "listens").mkdir(parents=True)
    rng = np.random.default_rng(random_state)
    w = world(p, rng)
    suffix = {"lastfm1k": "tsv", "listenbrainz": "parquet", "table": "csv"}[fmt]
    n_listens, n_pairs, writer = 0, 0, None
    try:  # the truth is appended chunk by chunk (one row group each): memory stays one chunk's
        for c, lo in enumerate(range(0, p.users, p.chunk_users)):
            crng = np.random.default_rng([*np.atleast_1d(random_state), 1, c])
            pairs = pairs_for(np.arange(lo, min(lo + p.chunk_users, p.users)), w, p, crng)
            listens, label = listens_for(pairs, p, w, crng)
            write_chunk(frame_for(listens, pairs, w), fmt, out / "listens" / f"{c:05d}.{suffix}")
            n_listens += len(listens["time"])
            truth = truth_ids(pairs, w, fmt).with_columns(
                pl.Series("first", LOG_START + np.floor(pairs["first"]).astype(np.int64)),
                pl.Series("p_true", pairs["p_true"]), pl.Series("label", label.astype(np.int8)),
                *([pl.Series("bot", w["bot"][pairs["user"]].astype(np.int8))] if p.bot_share > 0 else [])).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(out / "truth.parquet", truth.schema, compression="zstd")
            writer.write_table(truth.cast(writer.schema))
            n_pairs += truth.num_rows
    finally:
        if writer is not None:
            writer.close()
    info = {"generator": GENERATOR, "preset": asdict(p), "format": fmt, "listens": n_listens,
            "pairs": n_pairs, "seed": np.atleast_1d(random_state).tolist(),
            "window_days": p.window_days}
    (out / "source.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m musicrec.synthetic.listens", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=list(PRESETS))
    ap.add_argument("--format", default="lastfm1k", choices=FORMATS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--users", type=int, default=None, help="override the preset's user count")
    ap.add_argument("--bots", type=float, default=0.0, help="share of users who are bots (see Preset.bot_share)")
    ap.add_argument("--bot-tracks", type=int, default=0, help="promoted tracks the bots loop (Preset.bot_tracks)")
    a = ap.parse_args(argv)
    if not 0.0 <= a.bots < 1.0:
        ap.error(f"--bots is a share of users: 0 <= share < 1, got {a.bots}")
    if a.bot_tracks < 0 or (a.bot_tracks and not a.bots):
        ap.error("--bot-tracks needs --bots and is a count of tracks (>= 0)")
    preset = replace(PRESETS[a.preset], bot_share=a.bots, bot_tracks=a.bot_tracks)
    if a.users is not None:
        preset = replace(preset, users=a.users)
    info = generate(Path(a.out), preset, a.format, random_state=[a.seed, 14])
    print(f"{info['listens']} listens, {info['pairs']} first listens in {a.out}/listens ({a.format})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
