#!/usr/bin/env python3
"""Stage 01: read the configured source (KKBOX CSVs, generated ones, or a listening log), clean, join and encode it."""
import sys

from musicrec.cli import main

if __name__ == "__main__":
    sys.exit(main("01_preprocess", __doc__.splitlines()[0].split(": ", 1)[1], "musicrec.preprocess:run"))
