#!/usr/bin/env python3
"""Stage 05: score the trained models on the test split, recommend songs, plot, write the submission."""
import sys

from musicrec.cli import main

if __name__ == "__main__":
    sys.exit(main("05_predict", __doc__.splitlines()[0].split(": ", 1)[1], "musicrec.predict:run"))
