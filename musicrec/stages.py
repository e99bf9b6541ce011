"""What each stage reads, which config sections it depends on, and what it writes: one table.

The staleness check (musicrec.manifest), every script's `--help`, and the README's stage table
(`python -m musicrec.stages`, tested equal) all come from STAGES, and a stage may only read an
upstream file declared here (StageRun.input refuses any other).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Read:
    """An upstream stage's output a stage reads; `when` says when, if not always. A `file` in
    <angle brackets> stands for a set of files named elsewhere (04's models.json lists them)."""

    stage: str
    file: str
    when: str = ""

    @property
    def pattern(self) -> bool:
        return self.file.startswith("<")


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    sections: tuple[str, ...]          # config sections whose hashes the manifest records
    reads: tuple[Read, ...]
    writes: tuple[str, ...]
    source: str = ""                   # what it reads from outside the pipeline


def _reads(stage: str, *files: str, when: str = "") -> tuple[Read, ...]:
    return tuple(Read(stage, f, when) for f in files)


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("01_preprocess", "read the source, clean it, encode ids, count rejects",
          ("seed", "data", "preprocess"), (),
          ("interactions.parquet", "kaggle_test.parquet", "rejects.parquet", "users.parquet", "songs.parquet",
           "categories.parquet", "quality.json", "truth.parquet (generated listening logs)"),
          source="the source of data.source: the KKBOX CSVs in paths.raw, the synthetic ones it generates, "
                 "or a listening log"),
    Stage("02_split", "split the labelled rows into train, valid and test", ("seed", "split"),
          _reads("01_preprocess", "interactions.parquet"),
          ("train.parquet", "valid.parquet", "test.parquet", "split.json")),
    Stage("03_features", "compute the features of every split", ("seed", "features"),
          _reads("02_split", "train.parquet", "valid.parquet", "test.parquet")
          + _reads("01_preprocess", "kaggle_test.parquet", when="KKBOX test.csv rows exist"),
          ("features_train.parquet", "features_valid.parquet", "features_test.parquet",
           "features_kaggle.parquet", "features.json")),
    Stage("04_train", "fit every configured model family", ("seed", "train"),
          _reads("03_features", "features.json", "features_train.parquet", "features_valid.parquet"),
          ("models.json", "metrics.json", "<model files in each family's own format>")),
    Stage("05_predict", "score the models on the test split, rank songs, write the submission",
          ("seed", "predict", "train"),
          _reads("04_train", "models.json", "<model files>")
          + _reads("04_train", "metrics.json", when="labelled events")
          + _reads("03_features", "features.json", "features_test.parquet", when="labelled events")
          + _reads("03_features", "features_kaggle.parquet", when="KKBOX test.csv rows exist")
          + _reads("02_split", "train.parquet", "test.parquet")
          + _reads("01_preprocess", "categories.parquet", when="labelled events")
          + _reads("01_preprocess", "songs.parquet", "users.parquet")
          + _reads("01_preprocess", "truth.parquet", when="a generated listening log"),
          ("predictions.parquet", "metrics.json", "recommendations.parquet", "similar_songs.parquet",
           "submission.csv", "plots/"),
          source="data/synthetic/<preset>/truth.parquet when the data are generated"),
    Stage("06_influence", "influence of every training row and of groups of rows, checked by retraining",
          ("seed", "influence"),
          _reads("03_features", "features.json", "features_train.parquet", "features_valid.parquet",
                 "features_test.parquet")
          + _reads("04_train", "models.json", "<model files>")
          + _reads("02_split", "train.parquet")
          + _reads("01_preprocess", "categories.parquet", "users.parquet")
          + _reads("01_preprocess", "truth.parquet", when="a generated listening log"),
          ("loo.parquet", "ranking.parquet", "ranking_groups.parquet", "ranking_users.parquet", "validation.json",
           "groups.parquet", "ablations.parquet", "plots/"),
          source="data/synthetic/<preset>/truth.parquet when the data are generated"),
)}

def declared(stage: str, upstream: str, file: str) -> bool:
    """True when `stage` declares reading `file` of `upstream` (or a set of files it belongs to)."""
    return any(r.stage == upstream and (r.file == file or r.pattern) for r in STAGES[stage].reads)


def help_text(stage: str) -> str:
    """The stage's inputs, config sections and outputs, for its --help."""
    s = STAGES[stage]
    reads = "; ".join(f"{r.stage}/{r.file}" + (f" ({r.when})" if r.when else "") for r in s.reads)
    lines = [f"reads: {reads or s.source}"]
    if s.reads and s.source:
        lines.append(f"also reads: {s.source}")
    lines += [f"config sections: {', '.join(s.sections)} (a change makes this stage stale)",
              f"writes (under <paths.data>/{stage}/): {', '.join(s.writes)}, manifest.json"]
    return "\n".join(lines)


def _reads_text(s: Stage) -> str:
    """'02 `a`, `b`; 01 `c` (when ...)': the reads grouped by upstream stage, in declared order."""
    groups: dict[str, list[str]] = {}
    for r in s.reads:
        groups.setdefault(r.stage, []).append(f"`{r.file}`" + (f" ({r.when})" if r.when else ""))
    parts = [f"{stage[:2]} {', '.join(files)}" for stage, files in groups.items()]
    return "; ".join(parts + ([s.source] if s.source else []))


def markdown_table() -> str:
    """The README's stage table (tests/test_docs.py checks that the README holds it)."""
    rows = ["| script | reads | config sections | writes (under `data/<stage>/`) |", "|---|---|---|---|"]
    for s in STAGES.values():
        rows.append(f"| `{s.name}.py` | {_reads_text(s)} | {', '.join(f'`{x}`' for x in s.sections)} | "
                    f"{', '.join(f'`{w}`' for w in s.writes)} |")
    return "\n".join(rows)


START, END = "<!-- stages:start -->", "<!-- stages:end -->"


def with_table(text: str) -> str:
    """`text` (the README) with the block between START and END replaced by markdown_table()."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


if __name__ == "__main__":   # python -m musicrec.stages [README.md]: print the table, or write it into the file
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        path.write_text(with_table(path.read_text()))
    else:
        sys.stdout.write(markdown_table() + "\n")
