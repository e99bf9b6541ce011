"""The registry of model families: each family is one class, registered once, by name.

Generic code (stages 04-06, validation, groups, the report, the benchmark) asks `get(name)` for a
family and never tests a family's name. The built-in families are imported when first asked for
(their libraries are heavy); further families come from the config's `train.families` (a module
name or a .py file each), whose import registers them with `@register`.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from musicrec.families.base import Family
    from musicrec.models.base import Model

# name -> module that registers it; the order is the default order of train.models
BUILTIN = {
    "prior": "musicrec.families.prior",
    "nb": "musicrec.families.nb",
    "lr": "musicrec.families.lr",
    "rf": "musicrec.families.rf",
    "lgbm": "musicrec.families.lgbm",
    "als": "musicrec.families.als",
}

_families: dict[str, "Family"] = {}
_origins: dict[str, str] = {}


class FamilyError(ValueError):
    """A family that cannot be found or registered; the message is one line for the user."""


def register(cls):
    """Class decorator: make a Family subclass known under its `name` (once)."""
    name = cls.name
    if not name or not name.replace("_", "").isalnum():
        raise FamilyError(f"model family {cls.__qualname__} needs a `name` of letters, digits and _")
    known = _families.get(name)
    if known is not None and type(known).__qualname__ != cls.__qualname__:
        raise FamilyError(f"model family {name!r} is registered twice ({type(known).__qualname__}, {cls.__qualname__})")
    _families[name] = cls()
    _origins[name] = cls.__module__
    return cls


def _module_name(path: Path) -> str:
    """A stable module name for a family file, so that its pickled models load in another process."""
    digest = hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()
    return f"musicrec_family_{path.stem}_{digest}"


def load(spec: str) -> list[str]:
    """Import a family module (`package.module`) or file (`path/to/family.py`); the names it registered."""
    before = set(_families)
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        if not path.is_file():
            raise FamilyError(f"model family file {spec} does not exist")
        name = _module_name(path)
        if name not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        origin = str(path)
    else:
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            raise FamilyError(f"model family module {spec} cannot be imported ({exc})") from None
        origin = spec
    added = [n for n in _families if n not in before]
    for n in added:
        _origins[n] = origin
    return added or [n for n, o in _origins.items() if o == origin]


def get(name: str, origin: str | None = None) -> "Family":
    """The family registered as `name`; `origin` (a module or file) is loaded first if needed."""
    if name not in _families:
        source = BUILTIN.get(name, origin)
        if source is not None:
            load(source)
    if name not in _families:
        raise FamilyError(f"unknown model family {name!r}; known: {', '.join(names())}")
    return _families[name]


def origin(name: str) -> str:
    """The module or file that registered the family (recorded with every trained model)."""
    get(name)
    return _origins[name]


def names() -> list[str]:
    """Built-in families first, then every registered one, in registration order."""
    return [*BUILTIN, *(n for n in _families if n not in BUILTIN)]


def make_model(name: str, tcfg: dict, random_state: int) -> "Model":
    """A fresh, unfitted model of one family configured from the `train` config section."""
    return get(name).make(tcfg, random_state)


def load_model(name: str, folder: Path, origin: str | None = None) -> "Model":
    """A family's model as stage 04 saved it in `folder`."""
    return get(name, origin).model.load(Path(folder))
