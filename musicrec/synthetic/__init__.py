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

Modules: `constants` (presets, parameters, real-like codes and shares), `world` (clusters, songs,
users), `events` (who plays what and when, the truth of every event), `hazards` (text columns as
the real files have them), `summary` (check figures), `writers` (the files and `generate`).
"""
from musicrec.synthetic.constants import (EXTRA_COLUMNS, LANGUAGES, MEMBER_COLUMNS, PRESETS, SONG_COLUMNS,
                                          TEST_COLUMNS, TRAIN_COLUMNS, TRIPLES, VIA)
from musicrec.synthetic.events import Simulation, simulate
from musicrec.synthetic.summary import cold_start_shares, top_user_share
from musicrec.synthetic.writers import generate

__all__ = ["EXTRA_COLUMNS", "LANGUAGES", "MEMBER_COLUMNS", "PRESETS", "SONG_COLUMNS", "TEST_COLUMNS",
           "TRAIN_COLUMNS", "TRIPLES", "VIA", "Simulation", "cold_start_shares", "generate", "simulate",
           "top_user_share"]
