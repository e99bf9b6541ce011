"""The rules a config value must follow: one Spec per leaf key, with its default, and YAML read as
users write numbers. musicrec.config declares the schema with these."""
from __future__ import annotations

import re
from dataclasses import dataclass
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
    kind: str  # int | float | bool | str | choice | choices | float_pair | optional_int | optional_float
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
        if self.kind == "str_list":
            return "a list of non-empty strings"
        noun = {"int": "an integer", "float": "a number", "optional_int": "null or an integer",
                "optional_float": "null or a number"}[self.kind]
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
        if self.kind == "float" or (self.kind == "optional_float" and v is not None):
            return (is_num and self._in_range(float(v))), (float(v) if is_num else v)
        if self.kind == "optional_float":
            return True, None
        if self.kind == "bool":
            return isinstance(v, bool), v
        if self.kind == "str":
            return (isinstance(v, str) and v != ""), v
        if self.kind == "optional_str":
            return (v is None or (isinstance(v, str) and v != "")), v
        if self.kind == "str_list":
            ok = isinstance(v, list) and all(isinstance(x, str) and x != "" for x in v)
            return ok, (list(v) if ok else v)
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


def OptFloat(default=None, lo=None, hi=None):
    return Spec(default, "optional_float", lo, hi)


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
