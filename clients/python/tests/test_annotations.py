"""The `Neighbours` annotations the README and the docstrings show are also valid at run time,
not only under mypy: evaluated as ``cast(...)``, ``typing.get_type_hints`` or a plain
subscript evaluate them, on every Python the package supports (before 3.13, `typing` does
not apply type parameters' defaults itself). Needs no server."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simserve_client import models
from simserve_client.models import (
    AnyIds,
    AnyIndices,
    AnyScores,
    DenseNeighbours,
    FloatArray,
    IdRows,
    IndexArray,
    Neighbours,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def shown_forms() -> list[str]:
    """Every `Neighbours` annotation written in the README or `Neighbours`' docstring
    (``Neighbours`` alone, ``Neighbours[IndexArray, FloatArray]``, ...)."""
    text = README.read_text() + (Neighbours.__doc__ or "")
    forms = sorted(set(re.findall(r"`(Neighbours(?:\[[^`\]]*\])?)`", text)))
    assert "Neighbours[IndexArray, FloatArray]" in forms, forms
    assert "Neighbours" in forms, forms
    return forms


FORMS = [
    *shown_forms(),
    "Neighbours[IndexArray]",
    "Neighbours[IndexArray, FloatArray, IdRows]",
    "Neighbours[IndexArray | list[IndexArray], FloatArray | list[FloatArray], IdRows]",
]


def near() -> Neighbours[IndexArray, FloatArray]:
    return Neighbours(np.array([[3, 1]], dtype=np.int64), np.array([[0.9, 0.5]], np.float32))


@pytest.mark.parametrize("form", FORMS)
def test_annotations_evaluate_at_run_time(form: str) -> None:
    namespace = vars(models)
    evaluated = eval(form, namespace)

    def annotated(neighbours: Any) -> Any:
        return neighbours

    annotated.__annotations__ = {"neighbours": form, "return": form}
    hints = typing.get_type_hints(annotated, namespace)
    assert hints == {"neighbours": evaluated, "return": evaluated}
    if form != "Neighbours":
        assert typing.get_origin(evaluated) is Neighbours
        assert len(typing.get_args(evaluated)) == 3, "the parameters left out are defaulted"


def test_parameters_left_out_take_their_defaults() -> None:
    assert Neighbours[IndexArray, FloatArray] == DenseNeighbours
    assert typing.get_args(Neighbours[IndexArray]) == (IndexArray, AnyScores, AnyIds)
    assert typing.get_args(Neighbours[IndexArray, FloatArray, IdRows]) == (
        IndexArray,
        FloatArray,
        IdRows,
    )
    value: object = near()
    assert typing.cast(Neighbours[IndexArray, FloatArray], value) is value
    assert typing.cast(Neighbours[IndexArray], value) is value
    assert typing.cast(Neighbours, value) is value
    made = Neighbours[IndexArray, FloatArray](near().indices, near().scores)
    assert isinstance(made, Neighbours) and made.indices.tolist() == [[3, 1]]
    assert typing.get_args(Neighbours[AnyIndices, AnyScores, AnyIds]) == models._DEFAULTS
    with pytest.raises(TypeError, match="Too many"):
        Neighbours[IndexArray, FloatArray, IdRows, IdRows]  # type: ignore[misc]
