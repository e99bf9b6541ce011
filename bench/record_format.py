"""Text of the benchmark records: a figure with its interval and n, a number, a signed change."""
from __future__ import annotations


def corr_fields(c: dict | None) -> dict | None:
    return None if not c else {"value": c.get("value"), "n": c.get("n"), "ci95": c.get("ci95")}


def interval_text(c: dict | None, digits=3) -> str:
    """value [lo, hi] (n) of a figure with interval, or – where it was not measured."""
    if not c or c.get("value") is None:
        return "–"
    ci = c.get("ci95")
    text = number_text(c["value"], digits)
    if ci:
        text += f" [{number_text(ci[0], 2)}, {number_text(ci[1], 2)}]"
    return text + (f" (n={c['n']})" if c.get("n") is not None else "")


def number_text(x, digits=3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}e}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"


def change_text(c: dict | None) -> str:
    """A signed change with its interval and n, to 4 decimals."""
    if not c or c.get("value") is None:
        return "–"
    ci = c.get("ci95")
    return (f"{c['value']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")
            + (f" (n={c['n']})" if c.get("n") is not None else ""))
