"""What the clients take and give besides arrays: table references, neighbours, table info."""

from __future__ import annotations

import operator
import sys
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from typing_extensions import TypeVar
elif sys.version_info >= (3, 13):
    from typing import TypeVar  # takes `default` (PEP 696)
else:

    def TypeVar(
        name: str, *, bound: Any = None, covariant: bool = False, default: Any = None
    ) -> Any:
        """`typing.TypeVar` before Python 3.13, which takes no `default` (PEP 696):
        `Neighbours` fills in its parameters' defaults itself. This keeps the package's
        dependencies numpy and httpx (no typing_extensions at run time)."""
        return typing.TypeVar(name, bound=bound, covariant=covariant)


Metric: TypeAlias = Literal["cosine", "dot", "euclidean", "manhattan"]
"""cosine and dot are similarities (greater is nearer); euclidean and manhattan distances."""

FloatArray: TypeAlias = npt.NDArray[np.float32]
IndexArray: TypeAlias = npt.NDArray[np.int64]
IdRows: TypeAlias = list[list[str]]
"""Ids per row: one list of strings per row of `Neighbours.indices`."""

AnyIndices: TypeAlias = IndexArray | list[IndexArray] | list[list[IndexArray]]
AnyScores: TypeAlias = FloatArray | list[FloatArray] | list[list[FloatArray]]
AnyIds: TypeAlias = IdRows | list[IdRows]

IndicesT = TypeVar("IndicesT", bound=AnyIndices, default=AnyIndices, covariant=True)
ScoresT = TypeVar("ScoresT", bound=AnyScores, default=AnyScores, covariant=True)
IdsT = TypeVar("IdsT", bound=AnyIds, default=AnyIds, covariant=True)
_DEFAULTS = (AnyIndices, AnyScores, AnyIds)
"""The defaults of `Neighbours`' type parameters, in order."""


def as_index(value: Any, where: str) -> int:
    """`value` as an int index: a Python or numpy integer. Anything else, bools and floats
    included (``2.0`` too, as the server refuses it), raises ValueError naming `where`."""
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    return _refuse(where, "an integer", value)


def as_index_or_id(value: Any, where: str) -> int | str:
    """An `exclude` entry: an item index (as `as_index`) or an item id (a string)."""
    if isinstance(value, str):
        return str(value)
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    return _refuse(where, "an integer index or a string id", value)


def _refuse(where: str, expected: str, value: Any) -> typing.NoReturn:
    raise ValueError(f"{where}: expected {expected}, found {value!r} ({type(value).__name__})")


@dataclass(frozen=True)
class Table:
    """A table loaded on the server (``--tables``), usable wherever an array is.

    ``Table("items")`` is every row; ``rows=[3, 7]`` picks rows by position and
    ``ids=["u3", "u7"]`` by id (from the table's ``NAME.ids.txt``). Give at most one of the two.
    Rows must be integers (Python or numpy): anything else raises ValueError naming its index.
    """

    name: str
    rows: Iterable[int] | None = None
    ids: Iterable[str] | None = None

    def __post_init__(self) -> None:
        if self.rows is not None and self.ids is not None:
            raise ValueError("Table: give rows or ids, not both")
        if self.rows is not None:
            rows = tuple(as_index(r, f"Table rows[{i}]") for i, r in enumerate(self.rows))
            object.__setattr__(self, "rows", rows)
        if self.ids is not None:
            if isinstance(self.ids, str):
                raise TypeError("Table: ids must be a sequence of strings, not one string")
            object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))

    def to_json(self) -> dict[str, Any]:
        """The request field: ``{"table": name}`` plus ``rows`` or ``ids`` when given."""
        reference: dict[str, Any] = {"table": self.name}
        if self.rows is not None:
            reference["rows"] = list(self.rows)
        if self.ids is not None:
            reference["ids"] = list(self.ids)
        return reference


ArrayInput: TypeAlias = npt.ArrayLike | Sequence[Any] | Table
"""An array of any real dtype, nested lists of numbers, or a `Table` reference.
(``Sequence[Any]`` admits nested literals that mix ints and floats, which type checkers
would not take for an ``ArrayLike``.)"""


@dataclass
class Neighbours(Generic[IndicesT, ScoresT, IdsT]):
    """Top-k or above-threshold neighbours per row, nearest first (ties to the lower index).

    When every row holds the same number of entries, `indices` and `scores` are arrays of
    shape ``(rows, k)`` (``(sets, rows, k)`` for batched input). When rows differ in length
    (threshold, exclusions), they are lists with one 1-D array per row (for batched input, a
    list per set of such lists). `ids` holds the ids of the listed rows when the server knows
    them (user-item with ``item_ids`` or items from a table with ids; matrix when `b`, or `a`
    against itself, comes from a table with ids), laid out like `indices`: a list of ids per
    row (for batched input, a list per set of such lists). `tables` maps each table the
    answer read to the version it read.

    The type parameters say what type checkers know of the layout: ``Neighbours`` alone
    admits every one. The clients' methods narrow it where the call decides it: `top_k`
    without `threshold` (and, for user-item, without `exclude`) always gives arrays, typed
    ``Neighbours[IndexArray, FloatArray]``; user-item neighbours are never batched, so their
    `indices` are an array or a list of arrays, and their `ids` one list per row.
    """

    indices: IndicesT
    scores: ScoresT
    ids: IdsT | None = None
    metric: str = "cosine"
    tables: dict[str, str] = field(default_factory=dict)

    if not TYPE_CHECKING and sys.version_info < (3, 13):

        def __class_getitem__(cls, params):
            """``Neighbours[IndexArray, FloatArray]`` at run time before Python 3.13, whose
            `typing` does not apply type parameters' defaults: fills in the missing ones, so
            the subscript means there what it means to type checkers and to Python 3.13."""
            if not isinstance(params, tuple):
                params = (params,)
            return super().__class_getitem__(params + _DEFAULTS[len(params) :])

    @property
    def ragged(self) -> bool:
        """True when rows differ in length, so `indices` and `scores` are lists of arrays."""
        return isinstance(self.indices, list)


DenseNeighbours: TypeAlias = Neighbours[IndexArray, FloatArray, AnyIds]
"""Neighbours whose rows all hold the same number of entries: `indices` and `scores` are
arrays (what `top_k` without `threshold` gives)."""

UserItemNeighbours: TypeAlias = Neighbours[
    IndexArray | list[IndexArray], FloatArray | list[FloatArray], IdRows
]
"""User-item neighbours (never batched): arrays, or one array per row when rows differ."""

DenseUserItemNeighbours: TypeAlias = Neighbours[IndexArray, FloatArray, IdRows]
"""User-item neighbours from `top_k` without `threshold` or `exclude`: arrays."""


@dataclass(frozen=True)
class TableInfo:
    """One table the server has loaded (``GET /tables``)."""

    name: str
    rows: int
    dim: int
    dtype: str
    """What the server computes with: always ``"float32"``."""
    stored_dtype: str
    """The dtype of the ``.npy`` file: float32, float64, float16 or bfloat16."""
    ids: bool
    """Whether the table has ids (``NAME.ids.txt``), so ``Table(name, ids=...)`` works."""
    version: str
    source: str
    loaded_at: str
    """When it was loaded, as the server wrote it (RFC 3339)."""
    bytes: int
    last_error: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TableInfo:
        """Reads one entry of ``GET /tables``; fields this package does not know are left out.
        A field of the wrong JSON type raises TypeError (ValueError for a negative count)."""
        if not isinstance(body, dict):
            raise TypeError(f"a table entry is a JSON object, found {type(body).__name__}")
        error = body.get("last_error")
        return cls(
            name=_json(body, "name", str),
            rows=_count(body, "rows"),
            dim=_count(body, "dim"),
            dtype=_json(body, "dtype", str),
            stored_dtype=_json(body, "stored_dtype", str),
            ids=_json(body, "ids", bool),
            version=_json(body, "version", str),
            source=_json(body, "source", str),
            loaded_at=_json(body, "loaded_at", str),
            bytes=_count(body, "bytes"),
            last_error=None if error is None else _json(body, "last_error", str),
        )


J = typing.TypeVar("J")


def _json(body: dict[str, Any], name: str, kind: type[J]) -> J:
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{name}: expected {kind.__name__}, found {value!r}")
    return value


def _count(body: dict[str, Any], name: str) -> int:
    value = _json(body, name, int)
    if value < 0:
        raise ValueError(f"{name}: expected a count, found {value}")
    return value
