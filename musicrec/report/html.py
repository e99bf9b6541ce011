"""Small HTML building blocks for the report: escaped text, tables, embedded images, number formats.

Plain strings, no template engine: the page is one file that opens anywhere, without network.
"""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any, Iterable

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2430;margin:0;background:#f4f6f9}
main{max-width:1320px;margin:0 auto;padding:8px 28px 48px}
header{background:#1d2a3a;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;color:#c5d0dc}
h2{font-size:19px;margin:0 0 8px;border-bottom:2px solid #d7dde5;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:14px 18px;margin:16px 0}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #e1e5ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.grid{display:flex;flex-wrap:wrap;gap:14px}
.grid > div{flex:1 1 380px;min-width:0}
.footer{border-top:1px dashed #d7dde5;margin-top:14px;padding-top:4px}
figure{margin:6px 0;flex:1 1 560px;max-width:100%}
figure img{max-width:100%;border:1px solid #e1e5ea}
figure.wide{flex-basis:100%}
table.rows{font-size:12px} table.rows td{white-space:nowrap} table.rows td.id{font-family:ui-monospace,monospace;font-size:11px;white-space:nowrap}
.scroll{overflow-x:auto}
figcaption{font-size:12px;color:#5b6675}
.state{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.fresh{background:#d9f2df;color:#17612b} .stale{background:#fde2c8;color:#8a4300}
.missing{background:#e5e7eb;color:#4b5563}
.note{color:#5b6675;font-size:12.5px}
details{margin:6px 0} summary{cursor:pointer;color:#2c5282}
pre{background:#f6f8fa;border:1px solid #e1e5ea;padding:8px;font-size:12px;overflow:auto;max-height:420px;white-space:pre-wrap;margin:6px 0}
nav a{color:#c5d0dc;margin-right:14px;text-decoration:none} nav{margin-top:8px}
"""


_NUMBER_TEXT = re.compile(r"^[-+]?[\d.,]+%?$|^[-+]?[\d.]+ \[[-+\d., ]+\]$")  # 12.5%, 0.71 [0.69, 0.73]


_ID_TEXT = re.compile(r"^[A-Za-z0-9+/=_-]{20,}$")  # KKBOX ids: 44 characters of base64


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any) -> str:
    """A number as a reader wants it: ints with separators, floats to 4 significant digits."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if x == 0:
            return "0"
        if abs(x) >= 1e4 and abs(x) < 1e15:
            return f"{x:,.0f}"
        if abs(x) >= 1e15 or abs(x) < 1e-3:
            return f"{x:.3g}"
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)) and len(x) <= 4 and all(isinstance(v, (int, float)) for v in x):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    return str(x)


def share(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], numeric: bool = True, cls: str = "") -> str:
    """A table; numbers right-aligned and formatted, everything escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = numeric and ((isinstance(v, (int, float)) and not isinstance(v, bool))
                               or (isinstance(v, str) and _NUMBER_TEXT.match(v) is not None))
            kind = "num" if num else ("id" if isinstance(v, str) and _ID_TEXT.match(v) else "")
            cells.append(f"<td class='{kind}'>{esc(fmt(v))}</td>" if kind else f"<td>{esc(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f" class='{esc(cls)}'" if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(pairs: Iterable[tuple[str, Any]]) -> str:
    return table(("", "value"), pairs)


def image(path: Path, caption: str) -> str:
    """The PNG embedded as base64, so the page is one self-contained file."""
    raw = Path(path).read_bytes()
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")  # PNG IHDR
    wide = " class='wide'" if height and width / height > 1.8 else ""
    data = base64.b64encode(raw).decode("ascii")
    return (f"<figure{wide}><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def section(sid: str, title: str, body: str) -> str:
    return f"<section id='{esc(sid)}'><h2>{esc(title)}</h2>{body}</section>"


def state_badge(state: str) -> str:
    return f"<span class='state {esc(state)}'>{esc(state)}</span>"


def flatten(obj: Any, prefix: str = "", depth: int = 6) -> list[tuple[str, Any]]:
    """Scalar leaves of nested JSON as (dotted.key, value), so new keys show up without code changes."""
    if isinstance(obj, dict) and depth > 0:
        out = []
        for k, v in obj.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k), depth - 1)
        return out
    if isinstance(obj, list) and obj and all(isinstance(v, (int, float)) for v in obj) and len(obj) > 4:
        return [(prefix, f"{len(obj)} values")]
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        return [(prefix, f"{len(obj)} entries")]
    return [(prefix, obj)]
