#!/usr/bin/env python3
"""Stage 02: split the labelled rows into train, valid and test (temporal by default)."""
import sys

from musicrec.cli import main

if __name__ == "__main__":
    sys.exit(main("02_split", __doc__.splitlines()[0].split(": ", 1)[1], "musicrec.split:run"))
