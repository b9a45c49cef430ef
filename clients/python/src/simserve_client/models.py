"""What the clients take and give besides arrays: table references, neighbours, table info."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

Metric: TypeAlias = Literal["cosine", "dot", "euclidean", "manhattan"]
"""cosine and dot are similarities (greater is nearer); euclidean and manhattan distances."""

FloatArray: TypeAlias = npt.NDArray[np.float32]
IndexArray: TypeAlias = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Table:
    """A table loaded on the server (``--tables``), usable wherever an array is.

    ``Table("items")`` is every row; ``rows=[3, 7]`` picks rows by position and
    ``ids=["u3", "u7"]`` by id (from the table's ``NAME.ids.txt``). Give at most one of the two.
    """

    name: str
    rows: Iterable[int] | None = None
    ids: Iterable[str] | None = None

    def __post_init__(self) -> None:
        if self.rows is not None and self.ids is not None:
            raise ValueError("Table: give rows or ids, not both")
        if self.rows is not None:
            object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))
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
class Neighbours:
    """Top-k or above-threshold neighbours per row, nearest first (ties to the lower index).

    When every row holds the same number of entries, `indices` and `scores` are arrays of
    shape ``(rows, k)`` (``(sets, rows, k)`` for batched input). When rows differ in length
    (threshold, exclusions), they are lists with one 1-D array per row (for batched input, a
    list per set of such lists). `ids` holds the item ids of the listed items when the server
    knows them (user-item with ``item_ids``, or items from a table with ids), laid out like
    `indices`. `tables` maps each table the answer read to the version it read.
    """

    indices: IndexArray | list[IndexArray] | list[list[IndexArray]]
    scores: FloatArray | list[FloatArray] | list[list[FloatArray]]
    ids: list[list[str]] | None = None
    metric: str = "cosine"
    tables: dict[str, str] = field(default_factory=dict)

    @property
    def ragged(self) -> bool:
        """True when rows differ in length, so `indices` and `scores` are lists of arrays."""
        return isinstance(self.indices, list)


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
        """Reads one entry of ``GET /tables``; fields this package does not know are left out."""
        error = body.get("last_error")
        return cls(
            name=str(body["name"]),
            rows=int(body["rows"]),
            dim=int(body["dim"]),
            dtype=str(body["dtype"]),
            stored_dtype=str(body["stored_dtype"]),
            ids=bool(body["ids"]),
            version=str(body["version"]),
            source=str(body["source"]),
            loaded_at=str(body["loaded_at"]),
            bytes=int(body["bytes"]),
            last_error=None if error is None else str(error),
        )
