"""How far a long step is, about how long is left, and how much memory the process holds.

On a terminal a tqdm bar; otherwise (CI, pipes, log files) plain log lines, at most one every
`every` seconds plus the last one, so a log stays readable. Every stage uses this for steps that can
take more than a few seconds: `for x in track(items, "validate lr"): ...` or `with Progress(n, ...)`.
"""
from __future__ import annotations

import logging
import os
import resource
import sys
import time
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("musicrec")
T = TypeVar("T")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


class Progress:
    """A counter towards `total` that reports itself; `update(n)` after each unit of work."""

    def __init__(self, total: int, desc: str, *, unit: str = "", every: float = 10.0, tty: bool | None = None):
        self.total, self.desc, self.unit, self.every = max(int(total), 0), desc, unit, every
        self.done = 0
        self.start = self.last = time.monotonic()
        use_bar = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        if use_bar and self.total:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, desc=desc, unit=unit or "it", leave=False, file=sys.stderr)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.desc}: {self.done}/{self.total}{unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {_duration(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", ~{_duration(elapsed * (self.total - self.done) / self.done)} left"
        return text

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            log.info("%s", self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        log.info("%s", self.line())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "",
          every: float = 10.0) -> Iterator[T]:
    """Iterate over `items`, reporting progress; `total` defaults to len(items)."""
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit=unit, every=every) as p:
        for item in items:
            yield item
            p.update()


def peak_rss_gb() -> float:
    """The process's peak resident memory so far (GB): after each step, it tells which step set it."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024**2, 2)


def rss_gb() -> float:
    """Resident memory now (GB), from /proc (0.0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1024**3, 2)
