"""Every random generator and library seed, derived from the config seed and names.

A stream is named by its stage and purpose, and by the model family where one is involved:
`stream(cfg, "06_influence", "validation", family=name)`. A (stage, purpose) maps to numbers
through NUMBERS, fixed so that the same config keeps giving the same bytes; a family adds its own
fixed number (Family.stream, or a stable hash of its name); a purpose not in the table gets a
stable hash of its name. Never a tuple's position: reordering `train.models` or
`influence.models` changes no stream. No global seeding anywhere.
"""
from __future__ import annotations

import hashlib

import numpy as np

STAGE_NUMBERS = {"01_preprocess": 1, "02_split": 2, "03_features": 3, "04_train": 4, "05_predict": 5,
                 "06_influence": 6}

NUMBERS: dict[tuple[str, str], tuple[int, ...]] = {
    ("02_split", "split"): (),
    ("02_split", "train_label_noise"): (1,),
    ("03_features", "target_folds"): (0,),
    ("03_features", "als_song"): (1,),
    ("03_features", "als_artist"): (2,),
    ("03_features", "clusters"): (3,),
    ("04_train", "model"): (),                   # the family's own seed
    ("04_train", "train_score_sample"): (6,),
    ("05_predict", "similar_songs"): (),
    ("05_predict", "ranking_intervals"): (1,),
    ("06_influence", "label_noise"): (98,),
    ("06_influence", "test_halves"): (99,),
    ("06_influence", "second_seed"): (1,),       # per family: the noise ceiling's second retraining seed
    ("06_influence", "validation"): (2,),        # per family: validated rows, bootstraps, removal order
}


def name_number(name: str) -> int:
    """A stable 32-bit number for a name (not Python's hash(), which changes between processes)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")


def stream(cfg: dict, stage: str, purpose: str, family: str | None = None) -> np.random.Generator:
    """The generator of one named stream."""
    numbers = NUMBERS[(stage, purpose)] if (stage, purpose) in NUMBERS else (name_number(purpose),)
    own = ()
    if family is not None:
        from musicrec import families

        own = (families.get(family).stream_number,)
    return np.random.default_rng([cfg["seed"], STAGE_NUMBERS[stage], *own, *numbers])


def derived_seed(rng: np.random.Generator) -> int:
    """An int seed for libraries that take one (scikit-learn, LightGBM, implicit)."""
    return int(rng.integers(2**31 - 1))


def seed(cfg: dict, stage: str, purpose: str, family: str | None = None) -> int:
    """The library seed of one named stream."""
    return derived_seed(stream(cfg, stage, purpose, family))


def model_seed(cfg: dict, name: str) -> int:
    """The seed stage 04 gives a model family: its own stream, so adding a model changes no other's."""
    return seed(cfg, "04_train", "model", name)
