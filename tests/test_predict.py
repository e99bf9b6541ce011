"""Stage 05's helpers on hand-made inputs: segments, the submission model, rankings, similar songs."""
import numpy as np
import polars as pl
import pytest

from musicrec.config import ConfigError
from musicrec.families import make_model
from musicrec.outputs.train import Classification, FitMetrics, TrainMetrics, TrainRows
from musicrec.predict import best_model, segment_labels, quality_on_test
from musicrec.ranking import rank_songs, similar_table

from conftest import make_set, small_cfg


def test_segments_name_seen_and_unseen_users_and_songs_and_the_tab():
    train = pl.DataFrame({"user": [1, 2], "song": [10, 11]})
    test = pl.DataFrame({"user": [1, 3, 2], "song": [11, 10, 12]})
    seg = segment_labels(test, train, np.array([0, 2, 1]), {0: "radio", 1: "search"})
    assert seg["user_seen"].tolist() == ["seen", "unseen", "seen"]
    assert seg["song_seen"].tolist() == ["seen", "seen", "unseen"]
    assert seg["source_system_tab"].tolist() == ["radio", "2", "search"]   # a code without a name stays a code


def metrics_with(valid_auc: dict) -> TrainMetrics:
    models = {n: FitMetrics(1.0, valid=Classification(auc=a, logloss=0.6, accuracy=0.6, brier=0.2))
              for n, a in valid_auc.items()}
    return TrainMetrics(TrainRows(10, 5, 10), 3, models)


def test_the_submission_model_is_the_best_validation_auc_or_the_one_configured():
    m = metrics_with({"prior": 0.6, "lr": 0.74, "lgbm": 0.73})
    assert best_model(m, "auto", ["prior", "lr", "lgbm"]) == "lr"
    assert best_model(m, "lgbm", ["prior", "lr", "lgbm"]) == "lgbm"
    with pytest.raises(ConfigError, match="was not trained"):
        best_model(m, "rf", ["prior", "lr", "lgbm"])


def test_test_quality_carries_intervals_that_contain_the_values():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 500), 0.01, 0.99)
    q = quality_on_test(y, p)
    assert q.auc_ci95[0] < q.auc < q.auc_ci95[1] and q.accuracy_ci95[0] < q.accuracy < q.accuracy_ci95[1]


@pytest.fixture(scope="module")
def als_and_rows():
    train, valid, _ = make_set(2500, 11), make_set(800, 12), None
    cfg = small_cfg()
    model = make_model("als", cfg, 0).fit(train, valid)
    rows = pl.DataFrame({"user": train.keys["user"], "song": train.keys["song"], "target": train.y.astype(np.int8),
                         "genre": train.keys["song"] % 5, "artist": train.keys["song"] % 17})
    return model, rows


def test_rankings_never_repeat_a_train_song_and_score_every_model_on_the_same_users(als_and_rows):
    model, rows = als_and_rows
    train, test = rows.head(2000), rows.tail(500)
    pcfg = {"top_k": 5, "max_k": 8, "popularity": {"method": "listeners", "beta": 10.0}}
    side = (np.arange(80) % 5, np.arange(80) % 17)
    recs, ranking, curves = rank_songs({"als": model}, train, test, 80, pcfg, 1, side, np.random.default_rng(0))
    assert set(ranking) == {"als", "popularity"} and ranking["als"].users == ranking["popularity"].users
    played = set(zip(train["user"].to_list(), train["song"].to_list()))
    assert not any((u, s) in played for u, s in zip(recs["user"].to_list(), recs["song"].to_list()))
    assert recs.group_by("user").len()["len"].max() <= 5 and len(curves["als"]["ndcg"]) == 8
    diff = ranking["als"].minus_popularity["ndcg"]
    assert diff.value == pytest.approx(ranking["als"].ndcg - ranking["popularity"].ndcg, abs=1e-12)


def test_similar_songs_are_named_and_never_the_song_itself(als_and_rows):
    model, rows = als_and_rows
    names = pl.DataFrame({"song": np.arange(80, dtype=np.int32), "song_id": [f"s{i}" for i in range(80)]})
    table = similar_table(model, rows, names, np.random.default_rng(0), 1)
    assert table.height > 0 and (table["song"] != table["similar"]).all()
    assert (table["similar_song_id"] == "s" + table["similar"].cast(pl.String)).all()
    assert set(table["sampled_as"].unique()) == {"most listened", "random"}
