"""report.html: every section present, every embedded image a real PNG, influence rows in the input's ids."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import polars as pl
import pytest
from PIL import Image

from musicrec import cli
from musicrec.report import SECTIONS, render

from conftest import REPO, make_cfg

FAST = ["data.synthetic.preset=tiny", "split.train_label_noise=0.1", "train.models=[prior, nb, als]",
        "influence.models=[nb]",
        "influence.validate.rows={nb: 6, lr: 0, rf: 0, lgbm: 0, als: 0}", "influence.validate.removal_fractions=[]",
        "influence.ablation.repeats=0", "influence.groups.enabled=true", "influence.groups.deciles=2",
        "influence.groups.top_genres=1"]
SCRIPTS = (("01_preprocess", "musicrec.preprocess:run"), ("02_split", "musicrec.split:run"),
           ("03_features", "musicrec.features:run"), ("04_train", "musicrec.train:run"),
           ("05_predict", "musicrec.predict:run"), ("06_influence", "musicrec.influence.stage:run"))


class Page(HTMLParser):
    """Section ids, headings per section, images and table cells of a page."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.cells, self.links = [], [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("link", "script") or (tag == "img" and not a.get("src", "").startswith("data:")):
            self.links.append((tag, a))
        if tag == "td":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell.strip())
            self._cell = None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The six stages through the command-line entry point (which refreshes the report), small settings."""
    data = tmp_path_factory.mktemp("report")
    args = ["--config", str(REPO / "config.yaml"), "-q", "--set", f"paths.data={data}",
            *[x for s in FAST for x in ("--set", s)]]
    for stage, target in SCRIPTS:
        assert cli.main(stage, stage, target, args) == 0, stage
    return data


def test_every_section_present_and_every_image_decodes(run_dir):
    text = (run_dir / "report.html").read_text()
    page = Page()
    page.feed(text)
    assert page.sections == ["overview", *[sid for _, sid, _, _ in SECTIONS]]
    assert page.links == []  # self-contained: no stylesheet, script or image from elsewhere
    pngs = sorted((run_dir / "05_predict" / "plots").glob("*.png")) + sorted(
        (run_dir / "06_influence" / "plots").glob("*.png"))
    assert len(page.images) == len(pngs) > 0
    for src in page.images:
        head, data = src.split(",", 1)
        assert head == "data:image/png;base64"
        img = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        img.verify()
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    for stage, _ in SCRIPTS:  # each stage's run details: state, timings, config
        chunk = text[text.index(f"{stage[:2]} · "):]
        chunk = chunk[:chunk.index("</section>")]
        assert "<h3>Timings (seconds)</h3>" in chunk and "<h3>Config</h3>" in chunk
        assert "<span class='state fresh'>fresh</span>" in chunk
    assert "<span class='state fresh'>fresh</span>" in text.split("</section>")[0]
    ranking = text[text.index("<h3>Ranking of unseen songs"):]
    ranking = Page()
    ranking.feed(text[text.index("<h3>Ranking of unseen songs"):].split("</table>")[0])
    als = ranking.cells[ranking.cells.index("als"):][:12]
    assert re.fullmatch(r"-?[0-9.]+ \[-?[0-9.]+, -?[0-9.]+\]", als[-1])   # ALS minus popularity, paired interval
    assert re.fullmatch(r"[0-9.]+ \[[0-9.]+, [0-9.]+\]", als[2])        # NDCG@10 with its interval


def test_the_noisy_label_table_shows_every_ranking_and_the_oracle(run_dir):
    """With flipped training labels, each ranking of nb is scored as a detector beside the oracle,
    with the lift's interval, as validation.json holds them."""
    from musicrec.outputs.influence import Validation

    text = (run_dir / "report.html").read_text()
    block = text[text.index("<h3>Noisy labels"):].split("</table>")[0]
    page = Page()
    page.feed(block)
    v = Validation.read(run_dir / "06_influence" / "validation.json")
    rankings = v.models["nb"].label_noise.rankings
    assert set(rankings) == {"test_loss_influence", "self_influence", "loo_own_loss"}
    for name, d in rankings.items():
        row = page.cells[page.cells.index(name) - 1:][:5]
        assert row[0] == "nb" and row[2] == f"{d.lift_10pct.value:.2f} [{d.lift_10pct.ci95[0]:.2f}, {d.lift_10pct.ci95[1]:.2f}]"
    oracle = page.cells[page.cells.index("oracle"):][:5]
    assert float(oracle[2].split()[0]) == pytest.approx(v.label_noise.oracle.lift_10pct.value, abs=0.005)


def test_most_harmful_rows_are_the_input_files_rows(run_dir):
    """The rows shown for nb are loo.parquet's extremes, named by the msno/song_id of that train.csv line."""
    page = Page()
    page.feed((run_dir / "report.html").read_text())
    text = (run_dir / "report.html").read_text()
    block = text[text.index("<h3>nb: most harmful and most helpful training rows</h3>"):]
    block = block[:block.index("</table>")]
    sub = Page()
    sub.feed(block)
    ncols = block[:block.index("</thead>")].count("<th>")
    rows = [sub.cells[i:i + ncols] for i in range(0, len(sub.cells), ncols)]
    header = re.findall(r"<th>(.*?)</th>", block[:block.index("</thead>")])
    loo = pl.read_parquet(run_dir / "06_influence" / "loo.parquet")
    expect = loo.sort("nb_logloss").head(len(rows))
    raw_train = pl.read_csv(run_dir / "synthetic" / "tiny" / "train.csv", infer_schema=False)
    assert len(rows) == 5
    for row, exp in zip(rows, expect.iter_rows(named=True)):
        r = dict(zip(header, row))
        line = int(r["train.csv data row"].replace(",", ""))
        assert line == exp["time_order"] + 1
        assert (r["msno"], r["song_id"]) == (raw_train["msno"][line - 1], raw_train["song_id"][line - 1])
        assert r["target"] == raw_train["target"][line - 1]
        assert float(r["nb_logloss"]) == pytest.approx(exp["nb_logloss"], rel=1e-3, abs=1e-12)


def test_a_stale_stage_is_marked_and_a_missing_one_named(run_dir, tmp_path):
    stale = render(make_cfg(run_dir, None, *FAST, "split.test_fraction=0.3"))
    first = stale.split("</section>")[0]
    assert "<span class='state fresh'>fresh</span>" in first  # 01 still fresh
    assert "config.split changed" in first and "02_split is not fresh" in first
    empty = render(make_cfg(tmp_path / "nothing"))
    assert empty.count("has not run: run ./run.sh") == 6
