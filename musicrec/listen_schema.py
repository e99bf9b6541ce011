"""Conventions of a listening log that the generator writes and the reader relies on.

Kept below both `musicrec.synthetic` and `musicrec.readers` so that neither imports the other: the
generator must spell track keys and its source.json marker exactly as the reader expects them.
"""
from __future__ import annotations

DAY = 86_400  # seconds; the log's times are epoch seconds
TRACK_SEP = "\u241f"  # joins artist and track name into one key; never in real names
GENERATOR = "musicrec.synthetic.listens"  # source.json marker of generated logs (their truth is read)
