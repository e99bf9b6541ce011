"""Load and validate config.yaml.

Every key is declared once in SCHEMA with its type, default and allowed values, so a typo or an
out-of-range value stops the run at load time with one line that names the key, the value and what
is allowed, instead of failing minutes later inside a stage.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value is not allowed; the message is one line meant for the user."""


class _Loader(yaml.SafeLoader):
    """YAML as users write numbers: YAML 1.1 reads `1e-9`, `1E9` and `1.0e9` as strings (its
    exponent needs a dot and a sign); YAML 1.2 and every other tool read them as numbers."""


_EXPONENT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT, list("-+.0123456789"))


def read_yaml(text: str) -> Any:
    """Parse YAML text with numbers read as users write them (see _Loader)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class Spec:
    """One leaf of the schema: the default and the rule a value must follow."""

    default: Any
    kind: str  # int | float | bool | str | choice | choices | float_pair | optional_int
    lo: float | None = None
    hi: float | None = None
    options: tuple = ()
    open_lo: bool = False
    open_hi: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.options))
        if self.kind == "choices":
            return "a list of distinct values from " + ", ".join(map(str, self.options))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a non-empty string"
        if self.kind == "float_list":
            return f"a list of numbers{self._range()}"
        if self.kind == "float_pair":
            return f"a list [low, high] of numbers with low < high{self._range()}"
        if self.kind == "optional_str":
            return "null or a non-empty string"
        noun = {"int": "an integer", "float": "a number", "optional_int": "null or an integer"}[self.kind]
        return noun + self._range()

    def _range(self) -> str:
        if self.lo is None and self.hi is None:
            return ""
        lo = "-inf" if self.lo is None else _fmt(self.lo)
        hi = "inf" if self.hi is None else _fmt(self.hi)
        left = "(" if self.open_lo or self.lo is None else "["
        right = ")" if self.open_hi or self.hi is None else "]"
        return f" in {left}{lo}, {hi}{right}"

    def _in_range(self, v: float) -> bool:
        if self.lo is not None and (v < self.lo or (self.open_lo and v == self.lo)):
            return False
        if self.hi is not None and (v > self.hi or (self.open_hi and v == self.hi)):
            return False
        return True

    def check(self, key: str, value: Any) -> Any:
        """Return the value in its canonical type, or raise ConfigError."""
        ok, out = self._coerce(value)
        if not ok:
            raise ConfigError(f"config key '{key}' = {value!r} is not allowed: must be {self.describe()}")
        return out

    def _coerce(self, v: Any) -> tuple[bool, Any]:
        is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
        if self.kind == "int" or (self.kind == "optional_int" and v is not None):
            if isinstance(v, float) and v.is_integer():  # 1e6 or 5000.0 written for a count
                v = int(v)
            return (isinstance(v, int) and not isinstance(v, bool) and self._in_range(v)), v
        if self.kind == "optional_int":
            return True, None
        if self.kind == "float":
            return (is_num and self._in_range(float(v))), (float(v) if is_num else v)
        if self.kind == "bool":
            return isinstance(v, bool), v
        if self.kind == "str":
            return (isinstance(v, str) and v != ""), v
        if self.kind == "optional_str":
            return (v is None or (isinstance(v, str) and v != "")), v
        if self.kind == "choice":
            return v in self.options, v
        if self.kind == "choices":
            ok = isinstance(v, list) and len(v) == len(set(map(str, v))) and all(x in self.options for x in v)
            return ok, (list(v) if ok else v)
        if self.kind == "float_list":
            ok = (isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                              and self._in_range(float(x)) for x in v))
            return ok, ([float(x) for x in v] if ok else v)
        if self.kind == "float_pair":
            ok = (isinstance(v, list) and len(v) == 2
                  and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                  and v[0] < v[1] and all(self._in_range(float(x)) for x in v))
            return ok, ([float(x) for x in v] if ok else v)
        raise AssertionError(self.kind)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def Int(default, lo=None, hi=None):
    return Spec(default, "int", lo, hi)


def OptInt(default=None, lo=None, hi=None):
    return Spec(default, "optional_int", lo, hi)


def Float(default, lo=None, hi=None, open_lo=False, open_hi=False):
    return Spec(default, "float", lo, hi, open_lo=open_lo, open_hi=open_hi)


def OptStr(default=None):
    return Spec(default, "optional_str")


def Bool(default):
    return Spec(default, "bool")


def Str(default):
    return Spec(default, "str")


def Choice(default, *options):
    return Spec(default, "choice", options=tuple(options))


def Choices(default, *options):
    return Spec(default, "choices", options=tuple(options))


def FloatPair(default, lo=None, hi=None):
    return Spec(default, "float_pair", lo, hi)


FEATURE_SOURCES = ("base", "count", "share", "target_stat", "time", "als", "cluster")
INFLUENCE_MODELS = ("nb", "lr", "rf", "lgbm", "als")
MODEL_NAMES = ("prior", "nb", "lr", "rf", "lgbm", "als")
NUMERIC_IMPUTE = ("median", "mode", "constant")
CATEGORICAL_IMPUTE = ("mode", "unknown")
OUTLIER_METHODS = ("robust", "cap", "none")
LISTEN_FORMATS = ("listenbrainz", "lastfm1k", "table", "hetrec")

SCHEMA: dict = {
    "seed": Int(42, lo=0, hi=2**32 - 1),
    "paths": {
        "raw": Str("data/raw"),
        "data": Str("data"),
    },
    "data": {
        "source": Choice("synthetic", "synthetic", "kkbox", "listens"),
        "synthetic": {
            "preset": Choice("small", "tiny", "small", "kkbox"),
            "label_noise": Float(0.0, 0.0, 0.5, open_hi=True),
            "train_rows": OptInt(None, lo=1000),
            "test_rows": OptInt(None, lo=0),
        },
        "listens": {
            "format": Choice("listenbrainz", *LISTEN_FORMATS),
            "path": Str("data/listens"),
            "columns": {
                "user": Str("user"),
                "track": Str("track"),
                "time": Str("time"),
                "artist": OptStr(None),
                "album": OptStr(None),
            },
            "separator": Str(","),
            "header": Bool(True),
            "window_days": Float(30.0, 0.0, open_lo=True),
            "same_play_seconds": Float(10.0, 0.0),
            "user_sample": Float(1.0, 0.0, 1.0, open_lo=True),
        },
    },
    "preprocess": {
        "drop_duplicates": Bool(True),
        "bd_range": FloatPair([10, 80], lo=0, hi=150),
        "outliers": {
            "bd": Choice("none", *OUTLIER_METHODS),
            "song_length": Choice("cap", *OUTLIER_METHODS),
        },
        "iqr_k": Float(3.0, 0.0, open_lo=True),
        "mad_k": Float(5.0, 0.0, open_lo=True),
        "impute": {
            "bd": Choice("median", *NUMERIC_IMPUTE),
            "song_length": Choice("median", *NUMERIC_IMPUTE),
            "membership_days": Choice("median", *NUMERIC_IMPUTE),
            "registration_year": Choice("median", *NUMERIC_IMPUTE),
            "isrc_year": Choice("median", *NUMERIC_IMPUTE),
            "city": Choice("mode", *CATEGORICAL_IMPUTE),
            "registered_via": Choice("mode", *CATEGORICAL_IMPUTE),
            "gender": Choice("unknown", *CATEGORICAL_IMPUTE),
            "language": Choice("mode", *CATEGORICAL_IMPUTE),
            "genre": Choice("unknown", *CATEGORICAL_IMPUTE),
            "source": Choice("unknown", *CATEGORICAL_IMPUTE),
        },
        "impute_constant": Float(-1.0),
        "kcore": {
            "min_listeners_per_track": Int(0, 0),
            "min_tracks_per_user": Int(0, 0),
        },
    },
    "split": {
        "method": Choice("temporal", "temporal", "random", "user_holdout"),
        "test_fraction": Float(0.2, 0.0, 1.0, open_lo=True, open_hi=True),
        "valid_fraction": Float(0.1, 0.0, 1.0, open_lo=True, open_hi=True),
        "train_label_noise": Float(0.0, 0.0, 0.5, open_hi=True),
    },
    "features": {
        "use_test_interactions": Bool(True),
        "target_stats": {
            "folds": Int(5, 2, 20),
            "smoothing": Float(20.0, 0.0),
        },
        "recent_windows": Spec([0.001, 0.01], "float_list", 0.0, 1.0, open_lo=True),
        "als": {
            "enabled": Bool(True),
            "factors": Int(32, 2, 512),
            "iterations": Int(15, 1, 200),
            "regularization": Float(0.05, 0.0),
            "alpha": Float(2.0, 0.0, open_lo=True),
            "user_artist": Bool(True),
            "factor_dims": Int(0, 0, 64),
        },
        "clusters": {
            "enabled": Bool(True),
            "k": Int(24, 2, 512),
            "iterations": Int(40, 1, 500),
            "smoothing": Float(0.5, 0.0, open_lo=True),
            "ridge": Float(10.0, 0.0),
        },
    },
    "train": {
        "models": Choices(["prior", "nb", "lr", "rf", "lgbm", "als"], *MODEL_NAMES),
        "threads": Int(2, 1, 256),
        "nb": {
            "var_smoothing": Float(1e-9, 0.0, open_lo=True),
            "scale": Choice("standard", "standard", "quantile", "none"),
        },
        "lr": {
            "C": Float(1.0, 0.0, open_lo=True),
            "max_iter": Int(100, 1),
            "tol": Float(1e-4, 0.0, open_lo=True),
            "solver": Choice("newton-cholesky", "newton-cholesky", "lbfgs"),
        },
        "rf": {
            "n_estimators": Int(40, 1, 5000),
            "max_samples": Float(0.05, 0.0, 1.0, open_lo=True),
            "min_samples_leaf": Int(50, 1),
            "max_depth": OptInt(None, lo=1),
            "max_features": Float(0.1, 0.0, 1.0, open_lo=True),
        },
        "lgbm": {
            "num_leaves": Int(31, 2, 131072),
            "learning_rate": Float(0.2, 0.0, 1.0, open_lo=True),
            "n_estimators": Int(500, 1),
            "early_stopping_rounds": Int(15, 1),
            "min_child_samples": Int(100, 1),
            "feature_fraction": Float(0.8, 0.0, 1.0, open_lo=True),
            "lambda_l2": Float(1.0, 0.0),
            "max_bin": Int(255, 2, 65535),
            "exclude_sources": Choices([], *FEATURE_SOURCES),
        },
        "als": {
            "factors": Int(32, 2, 512),
            "iterations": Int(10, 1, 200),
            "regularization": Float(0.1, 0.0),
            "alpha": Float(2.0, 0.0, open_lo=True),
            "weighting": Choice("signed", "signed", "log", "bm25", "tfidf"),
            "bm25_k1": Float(100.0, 0.0),
            "bm25_b": Float(0.8, 0.0, 1.0),
        },
    },
    "predict": {
        "top_k": Int(10, 1, 1000),
        "max_k": Int(50, 1, 1000),
        "calibration_bins": Int(10, 2, 100),
        "submission_model": Choice("auto", "auto", *MODEL_NAMES),
        "popularity": {
            "method": Choice("listeners", "listeners", "damped"),
            "beta": Float(10.0, 0.0),
        },
    },
    "influence": {
        "models": Choices(list(INFLUENCE_MODELS), *INFLUENCE_MODELS),
        "validate": {
            "rows": {m: Int(n, 0) for m, n in (("nb", 20), ("lr", 20), ("rf", 10), ("lgbm", 10), ("als", 10))},
            "full_retrain": Bool(False),
            "removal_fractions": Spec([], "float_list", 0.0, 1.0, open_lo=True, open_hi=True),
            "removal_step": Float(0.0, 0.0, 1.0, open_hi=True),
            "removal_step_until": Float(0.05, 0.0, 1.0, open_lo=True),
        },
        "ablation": {
            "fractions": Spec([0.05, 0.15, 0.25, 0.35, 0.45, 0.55], "float_list", 0.0, 1.0,
                              open_lo=True, open_hi=True),
            "repeats": Int(0, 0, 100),
        },
        "groups": {
            "enabled": Bool(False),
            "power_user_share": Float(0.01, 0.0, 1.0, open_lo=True, open_hi=True),
            "top_genres": Int(5, 0, 100),
            "deciles": Int(10, 2, 100),
        },
    },
}


def _walk_defaults(schema: dict, prefix: str = "") -> dict:
    """Defaults in the canonical types `check` gives, so hashes do not depend on how a value was set."""
    return {k: (_walk_defaults(v, f"{prefix}{k}.") if isinstance(v, dict) else v.check(prefix + k, copy.deepcopy(v.default)))
            for k, v in schema.items()}


def defaults() -> dict:
    """The config every key at its default."""
    return _walk_defaults(SCHEMA)


def _merge(schema: dict, base: dict, user: Any, prefix: str) -> None:
    if not isinstance(user, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}' = {user!r} is not allowed: must be a mapping")
    for key, value in user.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in schema:
            allowed = ", ".join(schema)
            raise ConfigError(f"config key '{path}' is unknown: allowed keys here are {allowed}")
        spec = schema[key]
        if isinstance(spec, dict):
            _merge(spec, base[key], value, path)
        else:
            base[key] = spec.check(path, value)


def _spec_at(path: str):
    node: Any = SCHEMA
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "<root>"
            allowed = ", ".join(node) if isinstance(node, dict) else "none (it is a value)"
            raise ConfigError(f"config key '{path}' is unknown: keys under {where} are {allowed}")
        node = node[part]
    return node


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `--set a.b=value`; the value is read as YAML so numbers, lists and null work."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not allowed: must be KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    spec = _spec_at(key)
    if isinstance(spec, dict):
        value = read_yaml(raw) if raw.strip() else None
        if not isinstance(value, dict):
            raise ConfigError(f"--set {key}: '{key}' is a section; give a mapping such as "
                              f"{key}={{{next(iter(spec))}: ...}} or set one of its keys: {', '.join(spec)}")
        return key, value
    if spec.kind == "str":
        return key, raw
    try:
        value = read_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(cfg: dict, key: str, value: Any) -> None:
    spec = _spec_at(key)
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if isinstance(spec, dict):  # a mapping for a section: each of its keys validated as in the file
        _merge(spec, node[leaf], value, key)
    else:
        node[leaf] = spec.check(key, value)


def load(path: str | Path = "config.yaml", overrides: list[str] | tuple = ()) -> dict:
    """Read the YAML file, fill defaults, validate, then apply `--set` overrides (validated too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        user = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    cfg = defaults()
    _merge(SCHEMA, cfg, user, "")
    for text in overrides:
        apply_override(cfg, *parse_override(text))
    check_combinations(cfg)
    return cfg


def check_combinations(cfg: dict) -> None:
    """Rules that tie two keys together, checked once all keys are valid on their own."""
    models = cfg["train"]["models"]
    if not models:
        raise ConfigError("config key 'train.models' = [] is not allowed: must name at least one of "
                          + ", ".join(MODEL_NAMES))
    sub = cfg["predict"]["submission_model"]
    if sub != "auto" and sub not in models:
        raise ConfigError(f"config key 'predict.submission_model' = {sub!r} is not allowed: must be auto or one "
                          f"of train.models ({', '.join(models)})")


def section_hash(cfg: dict, section: str) -> str:
    """Stable hash of one top-level section, recorded in manifests to detect config changes."""
    blob = json.dumps(cfg[section], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
