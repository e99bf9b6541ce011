#!/usr/bin/env python3
"""Stage 03: build count, share, target-statistic, time and ALS features for every split."""
import sys

from musicrec.cli import main

if __name__ == "__main__":
    sys.exit(main("03_features", __doc__.splitlines()[0].split(": ", 1)[1], "musicrec.features:run"))
