"""What the docs and the layout promise, checked against the code."""
import re
import subprocess

from conftest import REPO
from musicrec.stages import END, START, markdown_table


def test_the_readme_stage_table_is_the_declared_one():
    text = (REPO / "README.md").read_text()
    block = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == markdown_table(), "run: python -m musicrec.stages README.md"


def test_readme_is_short_and_links_the_deep_dives():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for link in ("ARCHITECTURE.md", "docs/listens.md", "docs/influence.md", "BENCHMARKS.md"):
        assert f"]({link}" in text and (REPO / link).is_file(), link


def test_every_module_is_at_most_400_lines():
    long = {str(p.relative_to(REPO)): n for folder in ("musicrec", "bench", "tests") for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_generic_code_never_names_a_model_family():
    """Only the registry (musicrec/families) and the config's defaults spell a family's name."""
    res = subprocess.run(["grep", "-rnE", '"(nb|lr|rf|lgbm|als)"', "musicrec"], cwd=REPO, capture_output=True, text=True)
    hits = [line for line in res.stdout.splitlines()
            if not re.match(r"musicrec/(families/|config\.py:)", line)]
    assert hits == []
