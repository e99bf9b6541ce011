"""The one command-line front end every numbered script uses.

Known failures (bad config, stale upstream, bad input data, a file the system refuses) become one
line on stderr and exit code 2; Ctrl-C becomes one line and exit code 130, a termination signal
one line and 143; in every case the last good outputs stay as they were (a stage commits only
when it finishes). Anything else is a bug and keeps its traceback.

The stage's own module is imported inside `main`, so Ctrl-C while the heavy libraries load is
handled like Ctrl-C anywhere else.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from typing import Callable

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every `finally` (temporary outputs) runs."""


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated()


def build_parser(stage: str, description: str) -> argparse.ArgumentParser:
    from musicrec.stages import help_text

    parser = argparse.ArgumentParser(
        prog=f"{stage}.py",
        description=description,
        epilog=help_text(stage).replace("%", "%%") + "\n\nExample: python %(prog)s --set seed=7 --set paths.data=/tmp/out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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


def resolve(run: Callable[..., object] | str) -> Callable[..., object]:
    """The stage function, given as itself or as 'package.module:function' (imported now)."""
    if callable(run):
        return run
    module, _, name = run.partition(":")
    return getattr(importlib.import_module(module), name)


def os_error_line(exc: OSError) -> str:
    """'PATH: reason' for a file the system refuses (permissions, disk full, missing folder)."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}"


def main(stage: str, description: str, run: Callable[..., object] | str, argv: list[str] | None = None) -> int:
    """Parse arguments, load the config and run one stage; returns the process exit code."""
    args = build_parser(stage, description).parse_args(argv)
    setup_logging(args.quiet)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from musicrec.config import ConfigError, load
        from musicrec.errors import InputError
        from musicrec.manifest import StaleError

        try:
            cfg = load(args.config, args.overrides)
            stage_run = resolve(run)
            stage_run(cfg, force=args.force)
        except (ConfigError, StaleError, InputError) as exc:
            print(f"{stage}: error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        except OSError as exc:
            print(f"{stage}: error: {os_error_line(exc)}", file=sys.stderr)
            return EXIT_USER_ERROR
        after_success(stage, cfg)
    except KeyboardInterrupt:
        print(f"{stage}: interrupted; last good outputs kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{stage}: terminated; last good outputs kept", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def after_success(stage: str, cfg: dict) -> None:
    """Refresh what sums up the whole run (the HTML report); never fails the stage that just succeeded."""
    try:
        from musicrec.report import write_report
    except ImportError:
        return
    try:
        path = write_report(cfg)
        logging.getLogger("musicrec").info("%s: report refreshed: %s", stage, path)
    except (KeyboardInterrupt, Terminated):
        raise
    except Exception as exc:  # the stage's outputs are committed; a report bug must not undo that
        logging.getLogger("musicrec").warning("%s: report not refreshed (%s: %s)", stage, type(exc).__name__, exc)
