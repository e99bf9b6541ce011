"""A smoke run of the benchmark script on the tiny preset (timing itself is not tested)."""
import json
import subprocess
import sys

from conftest import REPO
from conftest import SMALL_INFLUENCE


def test_benchmark_smoke(tmp_path):
    sets = [a for a in SMALL_INFLUENCE if a != "--set"]
    cmd = [sys.executable, str(REPO / "bench" / "benchmark.py"), "--preset", "tiny", "--out", str(tmp_path / "out"),
           "--results", str(tmp_path / "results"), "--markdown", str(tmp_path / "BENCHMARKS.md"),
           "--naive-seconds", "0.5", *[x for s in sets for x in ("--set", s)]]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    r = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert list(r["steps"]) == ["generate", "01_preprocess", "02_split", "03_features", "04_train", "05_predict",
                                "06_influence"]
    for step in r["steps"].values():
        assert step["exit_code"] == 0 and step["wall_s"] > 0 and step["peak_rss_gb"] > 0.05
    assert r["naive"]["lr"]["naive_retrains"] >= 1 and r["naive"]["lr"]["speedup"] > 1
    assert "| 06_influence |" in (tmp_path / "BENCHMARKS.md").read_text()
