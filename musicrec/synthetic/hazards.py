"""Text columns as the real files have them, hazards included: names in several scripts, pipe-separated
lists, titles with quotes and line breaks, ISRC codes, song lengths."""
from __future__ import annotations

import numpy as np
import polars as pl

from musicrec.synthetic.constants import (
    CJK_GIVEN,
    CJK_SURNAME,
    CJK_TITLE,
    HANGUL,
    ISRC_COUNTRY,
    KANA,
    LANGUAGES,
    LATIN_FIRST,
    LATIN_LAST,
    TITLE_SUFFIX,
    WORDS,
)
from musicrec.synthetic.world import Songs, _choice


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


