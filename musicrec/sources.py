"""What the configured input source allows, asked by the stages that behave differently on it."""
from __future__ import annotations


def untimed(cfg: dict) -> bool:
    """Play counts without time (hetrec's user-artist counts): no temporal split, no labelled event."""
    return cfg["data"]["source"] == "listens" and cfg["data"]["listens"]["format"] == "hetrec"
