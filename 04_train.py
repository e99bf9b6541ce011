#!/usr/bin/env python3
"""Stage 04: fit the configured model families (prior, nb, lr, rf, lgbm, als) on the train split."""
import sys

from musicrec.cli import main

if __name__ == "__main__":
    sys.exit(main("04_train", __doc__.splitlines()[0].split(": ", 1)[1], "musicrec.train:run"))
