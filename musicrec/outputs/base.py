"""A dataclass that is written to and read from JSON through the same fields.

Writers build the dataclass (a misspelt field fails where it is written), readers get attributes
(a misspelt field fails where it is read), and `from_dict` refuses keys the class does not declare,
so a file and its readers cannot drift apart silently. Nested dataclasses, lists, dicts and
optional fields are converted by their type hints.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="Record")


class SchemaError(ValueError):
    """A JSON file does not match its declared schema (the message names the file and the field)."""


def _plain(value: Any) -> Any:
    """JSON-ready form: dataclasses to dicts, numpy scalars and arrays to Python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):   # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def _build(tp: Any, value: Any, where: str) -> Any:
    """`value` read from JSON, converted to the annotated type `tp` where that is a dataclass."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for a in (a for a in typing.get_args(tp) if a is not type(None)):   # the first member that fits
            kind = typing.get_origin(a) or a
            if (kind is dict or (isinstance(a, type) and dataclasses.is_dataclass(a))) and isinstance(value, dict):
                return _build(a, value, where)
            if kind is list and isinstance(value, list):
                return _build(a, value, where)
        return value
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return [_build(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, arg = typing.get_args(tp) or (str, Any)
        return {k: _build(arg, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp.from_dict(value, where) if issubclass(tp, Record) else _dataclass(tp, value, where)
    return value


def _dataclass(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SchemaError(f"{where}: field(s) {', '.join(unknown)} not declared by {cls.__name__}")
    kwargs = {k: _build(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:   # a required field is missing
        raise SchemaError(f"{where}: {exc}") from None


@dataclasses.dataclass
class Record:
    """Base of every typed output file."""

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls: type[T], data: dict, where: str | None = None) -> T:
        return _dataclass(cls, data, where or cls.__name__)

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls: type[T], path: Path) -> T:
        path = Path(path)
        return cls.from_dict(json.loads(path.read_text()), str(path))
