"""The one way random generators are made: from the config seed and the stage number."""
from __future__ import annotations

import numpy as np

from musicrec.config import MODEL_NAMES


def stage_rng(cfg: dict, stage: int, *stream: int) -> np.random.Generator:
    """Generator for one stage (and optionally one named stream inside it), never global state."""
    return np.random.default_rng([cfg["seed"], stage, *stream])


def derived_seed(rng: np.random.Generator) -> int:
    """An int seed for libraries that take one (scikit-learn, LightGBM, implicit)."""
    return int(rng.integers(2**31 - 1))


def model_seed(cfg: dict, name: str) -> int:
    """The seed stage 04 gives a model family; its own stream, so adding a model changes no other's."""
    return derived_seed(stage_rng(cfg, 4, MODEL_NAMES.index(name)))
