"""musicrec: KKBOX replay prediction, five model families, and data influence."""

__version__ = "0.1.0"
