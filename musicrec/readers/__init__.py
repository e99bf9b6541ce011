"""Input sources behind one interface, so that another source is one more module.

A reader module has `read(cfg, st) -> dict` and returns stage 01's tables: `interactions` (labelled
rows in time order, ids as compact ints), `kaggle_test` (unlabelled rows to predict, or None),
`rejects` (rows that cannot be used, with the reason), `users`, `songs`, `categories` (code <->
original value) and `quality` (rows in = out + rejected). It records the files it read with
`st.external_input` so that a changed input makes stage 01 stale.
"""
from __future__ import annotations

import importlib
from types import ModuleType

SOURCES = {"synthetic": "musicrec.readers.synthetic", "kkbox": "musicrec.readers.kkbox",
           "listens": "musicrec.readers.listens"}


def reader_for(cfg: dict) -> ModuleType:
    """The reader module of `data.source` (the config schema allows only the keys of SOURCES)."""
    return importlib.import_module(SOURCES[cfg["data"]["source"]])
