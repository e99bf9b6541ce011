"""`<paths.data>/report.html`: one self-contained page about the whole run, refreshed after every stage.

Each stage's section is built from that stage's files on disk (never from the running stage's
memory), so the page shows what the folders hold now, each stage marked fresh or stale against
the current config and inputs. Images are embedded as base64 PNG: the file can be mailed or opened
without the data folder.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from musicrec.manifest import STAGES, read_manifest, stage_states
from musicrec.report import influence, sections
from musicrec.report.html import CSS, esc, fmt, section, state_badge

SECTIONS = (  # (stage, section id, title, body builder)
    ("01_preprocess", "data", "Data and quality", sections.data_quality),
    ("02_split", "split", "The split", sections.split_part),
    ("03_features", "features", "Features", sections.features_part),
    ("04_train", "training", "Training", sections.training_part),
    ("05_predict", "models", "The models on the test split", sections.test_part),
    ("06_influence", "influence", "Data influence", influence.influence_part),
)
REPORT_NAME = "report.html"


def overview(cfg: dict, manifests: dict, states: dict) -> str:
    rows = []
    for stage, sid, title, _ in SECTIONS:
        m = manifests.get(stage) or {}
        state, why = states[stage]
        total = m.get("timings_s", {}).get("total")
        rows.append(f"<tr><td><a href='#{sid}'>{esc(stage)}</a></td><td>{state_badge(state)}</td>"
                    f"<td>{esc(why)}</td><td>{esc(str(m.get('created', ''))[:19].replace('T', ' '))}</td>"
                    f"<td class='num'>{esc(fmt(total))}</td></tr>")
    total = sum((manifests.get(s) or {}).get("timings_s", {}).get("total", 0) or 0 for s in STAGES)
    return ("<table><thead><tr><th>stage</th><th>state</th><th>why</th><th>finished</th><th>seconds</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p class='note'>Stage time in total: {fmt(round(total, 1))} s. Source: {esc(cfg['data']['source'])}"
            + (f" (preset {esc(cfg['data']['synthetic']['preset'])})" if cfg["data"]["source"] == "synthetic" else
               f" ({esc(cfg['paths']['raw'])})")
            + f"; seed {esc(cfg['seed'])}. A stale stage's section shows its last outputs; "
              "rerun it with the command its line names.</p>")


def render(cfg: dict) -> str:
    """The whole page as a string."""
    data = Path(cfg["paths"]["data"])
    states = stage_states(cfg)
    manifests = {s: read_manifest(cfg, s) for s in STAGES}
    parts = [section("overview", "Stages", overview(cfg, manifests, states))]
    for stage, sid, title, build in SECTIONS:
        m = manifests.get(stage)
        if m is None:
            body = f"<p class='note'>{esc(stage)} has not run: run ./run.sh {stage[:2]}</p>"
        else:
            body = build(data) + sections.stage_footer(cfg, stage, m, states[stage])
        parts.append(section(sid, f"{stage[:2]} · {title}", body))
    nav = "".join(f"<a href='#{sid}'>{esc(title)}</a>" for _, sid, title, _ in SECTIONS)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>musicrec report · {esc(data)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>musicrec report</h1><p>{esc(data.resolve())} · refreshed "
            f"{esc(time.strftime('%Y-%m-%d %H:%M:%S'))}</p><nav>{nav}</nav></header>"
            f"<main>{''.join(parts)}</main></body></html>")


def write_report(cfg: dict) -> Path:
    """Write `<paths.data>/report.html` atomically (a reader never sees half a page)."""
    data = Path(cfg["paths"]["data"])
    path = data / REPORT_NAME
    tmp = data / f".{REPORT_NAME}.tmp-{os.getpid()}"
    try:
        tmp.write_text(render(cfg), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
