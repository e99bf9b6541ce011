import re

import pytest

from musicrec import config
from musicrec.config import ConfigError

from conftest import REPO


def test_config_yaml_lists_every_key_at_its_default():
    # config.yaml is the user's reference: it must match the schema defaults exactly
    assert config.load(REPO / "config.yaml") == config.defaults()


@pytest.mark.parametrize("override, message", [
    ("split.foo=1", "config key 'split.foo' is unknown: keys under split are method, test_fraction"),
    ("split.test_fraction=1.5", "config key 'split.test_fraction' = 1.5 is not allowed: must be a number in (0, 1)"),
    ("split.method=future", "must be one of temporal, random"),
    ("seed=abc", "config key 'seed' = 'abc' is not allowed: must be an integer"),
    ("seed=true", "must be an integer"),
    ("preprocess.bd_range=[80, 10]", "low < high"),
    ("data.synthetic.preset=huge", "must be one of tiny, small, kkbox"),
    ("split=1", "'split' is a section; give a mapping"),
    ("influence.validate.rows={nb: 5, xx: 1}", "config key 'influence.validate.rows.xx' is unknown"),
    ("influence.validate.rows={nb: -1}", "'influence.validate.rows.nb' = -1 is not allowed"),
    ("nothing", "must be KEY.PATH=VALUE"),
])
def test_bad_override_names_key_value_and_rule(override, message):
    with pytest.raises(ConfigError) as err:
        config.load(REPO / "config.yaml", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_are_typed_like_yaml():
    cfg = config.load(REPO / "config.yaml", ["split.test_fraction=0.25", "data.synthetic.train_rows=5000",
                                             "paths.data=/tmp/x y", "preprocess.drop_duplicates=false",
                                             "preprocess.bd_range=[5, 90]"])
    assert cfg["split"]["test_fraction"] == 0.25
    assert cfg["data"]["synthetic"]["train_rows"] == 5000
    assert cfg["paths"]["data"] == "/tmp/x y"
    assert cfg["preprocess"]["drop_duplicates"] is False
    assert cfg["preprocess"]["bd_range"] == [5.0, 90.0]
    assert config.load(REPO / "config.yaml", ["data.synthetic.train_rows=null"])["data"]["synthetic"][
        "train_rows"] is None


def test_a_section_can_be_set_as_a_mapping():
    cfg = config.load(REPO / "config.yaml", ["influence.validate.rows={nb: 5, lr: 3}"])
    assert cfg["influence"]["validate"]["rows"] == {**config.defaults()["influence"]["validate"]["rows"],
                                                    "nb": 5, "lr": 3}


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("split: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("splitt:\n  method: temporal\n")
    with pytest.raises(ConfigError, match="'splitt' is unknown: allowed keys here are seed, paths"):
        config.load(unknown)


def test_partial_file_gets_defaults(tmp_path):
    part = tmp_path / "part.yaml"
    part.write_text("split:\n  method: random\n")
    cfg = config.load(part)
    assert cfg["split"] == {**config.defaults()["split"], "method": "random"}


def test_section_hash_changes_only_with_its_section():
    a = config.defaults()
    b = config.load(REPO / "config.yaml", ["split.test_fraction=0.3"])
    assert config.section_hash(a, "split") != config.section_hash(b, "split")
    assert config.section_hash(a, "preprocess") == config.section_hash(b, "preprocess")


@pytest.mark.parametrize("text, value", [("1e-9", 1e-9), ("1E-9", 1e-9), (".5", 0.5), ("5.", 5.0),
                                         ("1e9", 1e9), ("+2.5E+3", 2500.0), ("-1e-3", -0.001), ("3", 3.0)])
def test_numbers_as_users_write_them_on_the_command_line(text, value):
    cfg = config.load(REPO / "config.yaml", [f"train.nb.var_smoothing={text}"] if value > 0 else
                      [f"preprocess.impute_constant={text}"])
    got = cfg["train"]["nb"]["var_smoothing"] if value > 0 else cfg["preprocess"]["impute_constant"]
    assert isinstance(got, float) and got == float(text)  # Python's own float() is the reference


@pytest.mark.parametrize("text", ["1e-9", "1E-9", ".5", "5.", "2e0"])
def test_numbers_as_users_write_them_in_the_file_and_in_lists(tmp_path, text):
    f = tmp_path / "c.yaml"
    f.write_text(f"train:\n  lr:\n    tol: {text}\n"
                 f"influence:\n  ablation:\n    fractions: [{text if float(text) < 1 else '.5'}, 0.25]\n")
    cfg = config.load(f)
    assert cfg["train"]["lr"]["tol"] == float(text)
    assert cfg["influence"]["ablation"]["fractions"][0] == float(text if float(text) < 1 else ".5")


def test_integral_numbers_count_for_integer_keys_but_fractions_do_not():
    cfg = config.load(REPO / "config.yaml", ["data.synthetic.train_rows=1e4", "train.rf.n_estimators=50."])
    assert cfg["data"]["synthetic"]["train_rows"] == 10000 and isinstance(cfg["data"]["synthetic"]["train_rows"], int)
    assert cfg["train"]["rf"]["n_estimators"] == 50 and isinstance(cfg["train"]["rf"]["n_estimators"], int)
    with pytest.raises(ConfigError, match=r"'train.rf.n_estimators' = 2.5 is not allowed: must be an integer"):
        config.load(REPO / "config.yaml", ["train.rf.n_estimators=2.5"])


@pytest.mark.parametrize("text", ["1e", "e9", "1e-9x", "abc", "1.2.3", "--1"])
def test_strings_that_only_look_numeric_keep_the_error(text):
    with pytest.raises(ConfigError, match=rf"'train.nb.var_smoothing' = '{re.escape(text)}' is not allowed: "
                                          r"must be a number in \(0, inf\)$"):
        config.load(REPO / "config.yaml", [f"train.nb.var_smoothing={text}"])
