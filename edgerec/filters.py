"""Filters: which items an answer may hold, by their metadata ("year<=1998", "genres=Comedy|Drama").

A filter is a conjunction of ``Where`` clauses: a field, an operator and one or
more values. ``=`` holds when the field equals one of the values (so
``genres=Comedy|Drama`` is "one of"), ``!=`` when it equals none of them,
``<``, ``<=``, ``>``, ``>=`` compare numbers. A list-valued field (MovieLens
genres are stored as a JSON list; text "A|B", as a CSV catalogue would hold
them, counts as the list [A, B]) holds when any element does; for ``!=``,
when no element equals a value. Equality ignores case and reads numbers as
numbers ("1998" equals 1998 and 1998.0); a clause never holds on an item
without the field, except ``!=``, which does. Comparisons need numbers: a
value a CSV catalogue stored as the text "1998" counts as the number.

The API takes a ``Where``, a clause as text, a list of those, or a dict
({"year": {"<=": 1998}, "genres": ["Comedy", "Drama"], "title": "Heat"}: a
list is one-of, a dict holds comparisons). ``ItemColumns`` turns a filter
into a boolean mask over the items; each field's column is read from the item
file the first time a filter names it, so queries without filters never pay.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from .errors import InputError
from .items import ItemTable

EQUALITY = ("=", "!=")
COMPARISONS = ("<", "<=", ">", ">=")
OPERATORS = EQUALITY + COMPARISONS
# The longest operators first, so that "<=" is not read as "<" followed by "=1998".
_CLAUSE = re.compile(r"^\s*([^<>!=]+?)\s*(<=|>=|!=|==|=|<|>)\s*(.*?)\s*$")
_IN_CLAUSE = re.compile(r"^\s*(\S+)\s+in\s+(.+?)\s*$")


@dataclass(frozen=True)
class Where:
    """One clause: ``field op value``; with several values, ``=`` is one of them and ``!=`` none of them."""

    field: str
    op: str
    values: tuple[str | float, ...]

    def __post_init__(self) -> None:
        if isinstance(self.values, (str, int, float)):  # Where("year", "<=", 1998): one value
            object.__setattr__(self, "values", (self.values,))
        elif isinstance(self.values, list):
            object.__setattr__(self, "values", tuple(self.values))
        if not isinstance(self.values, tuple):
            raise TypeError(f"Where values must be a tuple, got {type(self.values).__name__}")
        if not isinstance(self.field, str) or not self.field:
            raise InputError(f"bad filter {self}: the field must be a non-empty str")
        if self.op not in OPERATORS:
            raise InputError(f"bad filter {self}: the operator must be one of {' '.join(OPERATORS)}")
        if not self.values:
            raise InputError(f"bad filter {self}: give at least one value")
        if self.op in COMPARISONS:
            if len(self.values) != 1 or _number(self.values[0]) is None:
                raise InputError(f"bad filter {self}: {self.op} needs one number")

    def __str__(self) -> str:
        return f"'{self.field}{self.op}{'|'.join(map(_text, self.values))}'"


FilterSpec = Union[Where, str, Mapping[str, Any], Sequence[Union[Where, str]]]


def parse_where(text: str) -> Where:
    """A clause from text: ``year<=1998``, ``genres=Comedy|Drama`` (one of), ``genres in Comedy|Drama``."""
    if not isinstance(text, str):
        raise TypeError(f"a filter clause must be a str, got {type(text).__name__}")
    found = _IN_CLAUSE.match(text)
    if found:
        field, op, value = found.group(1), "=", found.group(2)
    else:
        found = _CLAUSE.match(text)
        if not found:
            raise InputError(f"bad filter {text!r}: write FIELD OP VALUE with OP one of {' '.join(OPERATORS)}, "
                             "e.g. 'year<=1998' or 'genres=Comedy|Drama'")
        field, op, value = found.group(1), found.group(2).replace("==", "="), found.group(3)
    if value[:1] in ("<", ">", "=", "!"):
        raise InputError(f"bad filter {text!r}: the value starts with an operator")
    values = tuple(v.strip() for v in value.split("|"))
    if not all(values):
        raise InputError(f"bad filter {text!r}: an empty value (write one value, or several as A|B)")
    try:
        return Where(field, op, values)
    except InputError as exc:
        raise InputError(f"bad filter {text!r}: {str(exc).split(': ', 1)[1]}") from None


def parse_filter(spec: FilterSpec) -> tuple[Where, ...]:
    """Every clause of a filter given in any of the API's forms (module docstring)."""
    if isinstance(spec, Where):
        return (spec,)
    if isinstance(spec, str):
        return (parse_where(spec),)
    if isinstance(spec, Mapping):
        return tuple(clause for field, value in spec.items() for clause in _dict_clauses(field, value))
    if isinstance(spec, Sequence) and not isinstance(spec, (bytes, bytearray)):
        return tuple(clause for part in spec for clause in parse_filter(part))
    raise TypeError(f"filter must be a Where, a str such as 'year<=1998', a list of those or a dict, "
                    f"got {type(spec).__name__}")


def _dict_clauses(field: Any, value: Any) -> Iterable[Where]:
    if not isinstance(field, str):
        raise TypeError(f"filter fields must be str, got {type(field).__name__}")
    if isinstance(value, Mapping):  # {"<=": 1998, ">": 1990}
        return [Where(field, str(op).replace("==", "="), _values(field, bound)) for op, bound in value.items()]
    return [Where(field, "=", _values(field, value))]


def _values(field: str, value: Any) -> tuple[str | float, ...]:
    values = tuple(value) if isinstance(value, (list, tuple, set, frozenset)) else (value,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise TypeError(f"filter values of {field!r} must be str or numbers, got {type(v).__name__}")
    return values


def _number(value: Any) -> float | None:
    """A finite number from a number or a numeric text, else None (booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    number = _number(value)
    if number is not None and not isinstance(value, str):
        return str(int(number)) if number.is_integer() else str(number)
    return str(value)


def _key(value: Any) -> str:
    """What equality compares: a number's canonical text (1998, "1998", 1998.0 alike), else folded text."""
    number = _number(value)
    if number is not None:
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value).casefold()


class _Column:
    """One field over all items: each value (a list gives one per element) with the label that holds it."""

    def __init__(self, owners: list[int], values: list[Any], count: int) -> None:
        self.count = count
        self.by_key: dict[str, list[int]] = {}
        for owner, value in zip(owners, values):
            self.by_key.setdefault(_key(value), []).append(owner)
        numbers = [(_number(v), owner) for owner, v in zip(owners, values)]
        numbers = [(n, owner) for n, owner in numbers if n is not None]
        self.numbers = np.asarray([n for n, _ in numbers], dtype=np.float64)
        self.number_owners = np.asarray([owner for _, owner in numbers], dtype=np.int64)

    def mask(self, clause: Where) -> np.ndarray:
        out = np.zeros(self.count, dtype=bool)
        if clause.op in EQUALITY:
            for value in clause.values:
                out[self.by_key.get(_key(value), [])] = True
            return ~out if clause.op == "!=" else out
        bound = _number(clause.values[0])
        holds = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[clause.op]
        out[self.number_owners[holds(self.numbers, bound)]] = True
        return out


def _elements(value: Any) -> list[Any]:
    """A field's values as a filter sees them: a list's elements; text such as "Comedy|Drama" (MovieLens's
    own file, a CSV column) split at "|", which a clause cannot match whole anyway ("|" means one of)."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and "|" in value:
        return [part.strip() for part in value.split("|") if part.strip()]
    return [value]


class ItemColumns:
    """Masks of the items a filter keeps; a field's column is read from the items the first time it is named.

    Threads may share it: a column two threads build at once is built twice, and both are the same.
    """

    def __init__(self, items: ItemTable) -> None:
        self.items = items
        self._columns: dict[str, _Column] = {}
        self._fields: tuple[str, ...] | None = None
        self._lock = threading.Lock()

    def mask(self, spec: FilterSpec) -> np.ndarray:
        """True for each item (by label) every clause holds for."""
        clauses = parse_filter(spec)
        keep = np.ones(len(self.items), dtype=bool)
        for clause in clauses:
            keep &= self._column(clause).mask(clause)
        return keep

    def _column(self, clause: Where) -> _Column:
        column = self._columns.get(clause.field)
        if column is not None:
            return column
        with self._lock:
            if self._fields is None:
                self._fields = self.items.columns()
        if clause.field not in self._fields:
            raise InputError(f"bad filter {clause}: no item has the field {clause.field!r}; "
                             f"the fields are {', '.join(self._fields)}")
        owners: list[int] = []
        values: list[Any] = []
        for label, record in enumerate(self.items.scan()):
            value = record.get(clause.field)
            for element in _elements(value):
                if element is not None and not isinstance(element, (dict, list)):
                    owners.append(label)
                    values.append(element)
        column = self._columns[clause.field] = _Column(owners, values, len(self.items))
        return column
