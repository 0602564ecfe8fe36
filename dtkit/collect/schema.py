"""Typed tables: TOML tables checked against, and built into, frozen dataclasses.

The dataclass is the schema. :func:`from_table` walks its fields and type hints
(``int``, ``float``, ``bool``, ``str``, ``Literal``, ``X | None``, ``tuple[X, ...]``
from a list, ``dict``, a nested dataclass from a table) and their ``Annotated``
:class:`Bounds`: a key no field names, a value of the wrong type, a missing
required field or a value out of bounds raises :class:`RecipeError` with the
dotted key (``tiers[1].fraction``) and the fix. Rules across fields belong in the
dataclass's ``__post_init__``, raising :class:`RecipeError` with a key relative
to its own table.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from dtkit.errors import DtkitError

__all__ = ["Bounds", "RecipeError", "from_table"]


class RecipeError(DtkitError):
    """A bad recipe value: ``key`` is its dotted path (``tiers[1].fraction``), ``why`` what is wrong and the fix."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"`{key}` {why}")
        self.key, self.why = key, why


@dataclass(frozen=True)
class Bounds:
    """A closed range a number must lie in; used as ``Annotated[int, Bounds(low=1)]``."""

    low: float | None = None
    high: float | None = None
    meaning: str = ""

    def check(self, key: str, value: float) -> None:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            what = ("a positive integer" if self.low == 1 and self.high is None else f"in [{self.low:g}, {self.high:g}]")
            raise RecipeError(key, f"must be {what}{self.meaning}, got {value!r}; change the value")


def from_table(cls: type, table: Any, key: str = "") -> Any:
    """Build dataclass ``cls`` from a TOML table, checking every key against its fields and type hints.

    ``key`` is the table's dotted path, for error messages. Raises
    :class:`RecipeError` naming the full key of the first bad value.

    Example:
        >>> from_table(TrainSpec, {"algo": "ppo", "steps": 10, "checkpoint_every": 5}).n_envs
        1
    """
    where = f"{key}." if key else ""
    if not isinstance(table, dict):
        raise RecipeError(key, f"must be a table, got {table!r}; write it as [{key}] or {{ ... }}")
    hints = get_type_hints(cls, include_extras=True)
    known = [f.name for f in dataclasses.fields(cls)]
    for name in table:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise RecipeError(where + name, f"is not a known key; {hint}(known: {', '.join(known)})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in table:
            values[f.name] = _convert(hints[f.name], table[f.name], where + f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(where + f.name, f"is missing; add it ({_describe(hints[f.name])})")
    try:
        return cls(**values)
    except RecipeError as e:  # a rule across fields: its key is relative to this table
        raise RecipeError(where + e.key, e.why) from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    """``value`` checked against (and, for tuples, floats and tables, converted to) type ``hint``."""
    bounds: list[Bounds] = []
    if get_origin(hint) is Annotated:
        hint, *bounds = get_args(hint)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):  # `X | None`: TOML has no null, so a given value is an X
        return _convert(next(a for a in args if a is not type(None)), value, key)
    if origin is Literal:
        if value not in args:
            raise RecipeError(key, f"must be {_describe(hint)}, got {value!r}; use one of those")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise RecipeError(key, f"must be {_describe(hint)}, got {value!r}")
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_table(hint, value, key)
    want = {bool: (bool,), int: (int,), float: (int, float), str: (str,), dict: (dict,)}.get(origin or hint)
    # bool is an int subclass: `steps = true` must not pass as an integer.
    if want is not None and (not isinstance(value, want) or (isinstance(value, bool) and bool not in want)):
        raise RecipeError(key, f"must be {_describe(hint)}, got {value!r} ({type(value).__name__}); fix its type")
    for b in bounds:
        b.check(key, value)
    return float(value) if hint is float else value


def _describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like, in the words of a TOML file."""
    if get_origin(hint) is Annotated:
        return _describe(get_args(hint)[0])
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return _describe(next(a for a in args if a is not type(None)))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if dataclasses.is_dataclass(hint):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            dict: "a table"}.get(origin or hint, str(hint))
