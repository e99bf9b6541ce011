#!/usr/bin/env python3
"""Stage 06: leave-one-out influence of every training row and of groups, checked by exact retraining."""
import sys

from musicrec.cli import main

if __name__ == "__main__":
    sys.exit(main("06_influence", __doc__.splitlines()[0].split(": ", 1)[1], "musicrec.influence.stage:run"))
