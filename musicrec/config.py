"""Load and validate config.yaml.

Every key is declared once in SCHEMA with its type, default and allowed values (musicrec.configspec),
so a typo or an out-of-range value stops the run at load time with one line that names the key,
the value and what is allowed, instead of failing minutes later inside a stage. A model family
named in `train.families` adds its own section, `train.<name>` (musicrec.families).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from musicrec import families
from musicrec.configspec import (Bool, Choice, Choices, ConfigError, Float, FloatPair, Int, OptFloat, OptInt, OptStr, Spec,
                                 Str, read_yaml)
from musicrec.families import BUILTIN, FamilyError


ALS_FEATURES = "als"   # stage 03's ALS feature family: its features.<name> section and feature source
FEATURE_SOURCES = ("base", "count", "share", "target_stat", "time", ALS_FEATURES, "cluster")
MODEL_NAMES = tuple(BUILTIN)                          # the built-in model families (musicrec.families)
INFLUENCE_MODELS = ("nb", "lr", "rf", "lgbm", "als")  # those stage 06 explains by default
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
    "engine": {   # where tasks run (musicrec.engine); in no stage's manifest: outputs do not depend on it
        "kind": Choice("local", "local", "dask"),
        "address": OptStr(None),
        "workers": Int(2, 1, 4096),
        "threads_per_worker": Int(1, 1, 256),
        "connect_timeout_s": Float(10.0, 0.0, open_lo=True),
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
        ALS_FEATURES: {
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
        "models": Choices(list(MODEL_NAMES), *MODEL_NAMES),
        "families": Spec([], "str_list"),   # further families: modules or .py files that register one
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
            "engine": Choice("local", "local", "dask"),
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
            "rows": {m: OptInt(None, lo=0) for m in INFLUENCE_MODELS},   # null: as many as `seconds` allow
            "seconds": Float(3.0, 0.0),
            "min_rows": Int(5, 0),
            "full_retrain": Bool(False),
            "removal_fractions": Spec([], "float_list", 0.0, 1.0, open_lo=True, open_hi=True),
            "removal_step": Float(0.0, 0.0, 1.0, open_hi=True),
            "removal_step_until": Float(0.05, 0.0, 1.0, open_lo=True),
            "removal_set_block": Float(0.0, 0.0, 1.0, open_hi=True),
            "removal_random_repeats": Int(1, 1, 100),
        },
        "ablation": {
            "fractions": Spec([0.05, 0.15, 0.25, 0.35, 0.45, 0.55], "float_list", 0.0, 1.0,
                              open_lo=True, open_hi=True),
            "repeats": Int(0, 0, 100),
        },
        "ranking": {
            "enabled": Bool(True),
            "k": Int(10, 1, 1000),
            "negatives": Int(100, 1, 100_000),
            "seconds": OptFloat(120.0, lo=0.0),
            "group_seconds": OptFloat(120.0, lo=0.0),
            "users": Int(10, 0),
            "retrain": OptInt(5, lo=0),
            "check_rows": Int(20, 0),
            "prune_fraction": Float(0.0, 0.0, 1.0, open_hi=True),
            "prune_repeats": Int(3, 1, 100),
            "prune_by": Choice("rows", "rows", "users"),
        },
        "groups": {
            "enabled": Bool(True),
            "retrain": OptInt(5, lo=0),
            "seconds": OptFloat(60.0, lo=0.0),
            "replay_rows": OptInt(500_000, lo=1),
            "als_sweeps": Int(1, 0, 50),
            "curve_fractions": Spec([0.1, 0.3, 0.5], "float_list", 0.0, 1.0, open_lo=True, open_hi=True),
            "ceiling": Bool(False),
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


def defaults(schema: dict | None = None) -> dict:
    """The config every key at its default."""
    return _walk_defaults(SCHEMA if schema is None else schema)


def with_families(names: list[str]) -> dict:
    """SCHEMA with the families of `train.families` added: their `train.<name>` section, their
    name among the models' choices, and their `influence.validate.rows.<name>`."""
    if not names:
        return SCHEMA
    schema = copy.deepcopy(SCHEMA)

    def add(spec: Spec, name: str) -> Spec:
        return dataclasses.replace(spec, options=(*spec.options, name))

    for name in names:
        family = families.get(name)
        schema["train"][name] = dict(family.params)
        schema["train"]["models"] = add(schema["train"]["models"], name)
        schema["predict"]["submission_model"] = add(schema["predict"]["submission_model"], name)
        if family.estimator is not None:
            schema["influence"]["models"] = add(schema["influence"]["models"], name)
            schema["influence"]["validate"]["rows"][name] = OptInt(family.validate_rows, lo=0)
    return schema


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


def _spec_at(path: str, schema: dict | None = None):
    node: Any = SCHEMA if schema is None else schema
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "<root>"
            allowed = ", ".join(node) if isinstance(node, dict) else "none (it is a value)"
            raise ConfigError(f"config key '{path}' is unknown: keys under {where} are {allowed}")
        node = node[part]
    return node


def parse_override(text: str, schema: dict | None = None) -> tuple[str, Any]:
    """Parse one `--set a.b=value`; the value is read as YAML so numbers, lists and null work."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not allowed: must be KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    spec = _spec_at(key, schema)
    if isinstance(spec, dict):
        value = read_yaml(raw) if raw.strip() else None
        if not isinstance(value, dict):
            raise ConfigError(f"--set {key}: '{key}' is a section; give a mapping such as "
                              f"{key}={{{next(iter(spec), 'key')}: ...}} or set one of its keys: {', '.join(spec)}")
        return key, value
    if spec.kind == "str":
        return key, raw
    try:
        value = read_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(cfg: dict, key: str, value: Any, schema: dict | None = None) -> None:
    spec = _spec_at(key, schema)
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if isinstance(spec, dict):  # a mapping for a section: each of its keys validated as in the file
        _merge(spec, node[leaf], value, key)
    else:
        node[leaf] = spec.check(key, value)


def _family_specs(user: Any, overrides) -> list[str]:
    """`train.families` as the file and the overrides give it (the last word wins), validated."""
    spec = SCHEMA["train"]["families"]
    found = user.get("train", {}).get("families", []) if isinstance(user, dict) and isinstance(
        user.get("train"), dict) else []
    for text in overrides:
        key, value = parse_override(text) if text.split("=", 1)[0].strip() == "train.families" else (None, None)
        if key is not None:
            found = value
    return spec.check("train.families", found)


def load_families(specs: list[str]) -> list[str]:
    """Import the families `train.families` names; their names, for the schema."""
    names = []
    for spec in specs:
        try:
            names += families.load(spec)
        except FamilyError as exc:
            raise ConfigError(f"config key 'train.families': {exc}") from None
    return names


def load(path: str | Path = "config.yaml", overrides: list[str] | tuple = ()) -> dict:
    """Read the YAML file, fill defaults, validate, then apply `--set` overrides (validated too).
    The families of `train.families` are imported first: they extend what the schema allows."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        user = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    schema = with_families(load_families(_family_specs(user, overrides)))
    cfg = defaults(schema)
    _merge(schema, cfg, user, "")
    for text in overrides:
        apply_override(cfg, *parse_override(text, schema), schema)
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
    address = cfg["engine"]["address"]
    if address is not None and not re.fullmatch(r"[a-z0-9+]+://\S+:\d+|\S+:\d+", address):
        raise ConfigError(f"config key 'engine.address' = {address!r} is not allowed: must be null or a scheduler "
                          "address such as tcp://host:8786")
    if cfg["train"]["lgbm"]["engine"] == "dask" and cfg["engine"]["kind"] != "dask":
        raise ConfigError("config key 'train.lgbm.engine' = 'dask' is not allowed with engine.kind: local: "
                          "set engine.kind: dask (a cluster to train on)")


def section_hash(cfg: dict, section: str) -> str:
    """Stable hash of one top-level section, recorded in manifests to detect config changes."""
    blob = json.dumps(cfg[section], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
