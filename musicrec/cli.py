"""The one command-line front end every numbered script uses.

Known failures (bad config, stale upstream, bad input data) become one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from musicrec.config import ConfigError, load
from musicrec.errors import InputError
from musicrec.manifest import StaleError

EXIT_USER_ERROR = 2


def build_parser(stage: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{stage}.py",
        description=description,
        epilog="Example: python %(prog)s --set seed=7 --set paths.data=/tmp/out",
    )
    parser.add_argument("--config", default="config.yaml", metavar="PATH",
                        help="config file (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one config key, validated like the file; repeatable")
    parser.add_argument("--force", action="store_true",
                        help="run even if an upstream stage is missing or stale")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(stage: str, description: str, run: Callable[..., object], argv: list[str] | None = None) -> int:
    """Parse arguments, load the config and run one stage; returns the process exit code."""
    args = build_parser(stage, description).parse_args(argv)
    setup_logging(args.quiet)
    try:
        cfg = load(args.config, args.overrides)
        run(cfg, force=args.force)
    except (ConfigError, StaleError, InputError) as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
