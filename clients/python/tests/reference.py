"""numpy references in float64, and the README's accuracy bounds ("Semantics")."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
METRICS = ["cosine", "dot", "euclidean", "manhattan"]


def as64(x: Any) -> F64:
    """What the server computes from: the values rounded to float32, held in float64."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def matrix(metric: str, x: Any, y: Any) -> F64:
    """Every row of x against every row of y: (n, m)."""
    x, y = as64(x), as64(y)
    if metric == "cosine":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
        yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-6)
        full = np.clip(xn @ yn.T, -1.0, 1.0)
    elif metric == "dot":
        full = x @ y.T
    elif metric == "euclidean":
        full = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(axis=-1))
    else:
        full = np.abs(x[:, None, :] - y[None, :, :]).sum(axis=-1)
    return np.asarray(full, dtype=np.float64)


def pairwise(metric: str, x: Any, y: Any) -> F64:
    """Row i of x against row i of y (either may be one row)."""
    x, y = np.broadcast_arrays(as64(x), as64(y))
    return np.array([matrix(metric, x[i : i + 1], y[i : i + 1])[0, 0] for i in range(len(x))])


def tolerance(metric: str, x: Any, y: Any) -> F64:
    """The README's bound on |simserve - reference| for each (row of x, row of y)."""
    nx = np.linalg.norm(as64(x), axis=1)[:, None]
    ny = np.linalg.norm(as64(y), axis=1)[None, :]
    if metric == "cosine":
        bound = np.full((nx.shape[0], ny.shape[1]), 2e-5)
    elif metric == "dot":
        bound = 2e-5 * nx * ny
    else:
        bound = 2e-5 * (nx + ny)
    return np.asarray(bound, dtype=np.float64)


def assert_matrix(got: Any, metric: str, x: Any, y: Any) -> None:
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    want = matrix(metric, x, y)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= tolerance(metric, x, y)), np.abs(got - want).max()


def assert_pairwise(got: Any, metric: str, x: Any, y: Any) -> None:
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    x, y = np.broadcast_arrays(as64(x), as64(y))
    want = pairwise(metric, x, y)
    bound = np.array([tolerance(metric, x[i : i + 1], y[i : i + 1])[0, 0] for i in range(len(x))])
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= bound), np.abs(got - want).max()


def nearest_first(metric: str, scores: F64, candidates: npt.NDArray[np.int64]) -> list[int]:
    """`candidates` ordered nearest first by `scores` (of every column), ties to lower index."""
    key = -scores[candidates] if metric in ("cosine", "dot") else scores[candidates]
    return [int(i) for i in candidates[np.lexsort((candidates, key))]]


def neighbours(
    metric: str,
    x: Any,
    y: Any,
    top_k: int | None = None,
    threshold: float | None = None,
    exclude: list[list[int]] | None = None,
) -> list[list[int]]:
    """The indices of y each row of x should list, nearest first."""
    full = matrix(metric, x, y)
    rows = []
    for r, scores in enumerate(full):
        keep = np.ones(len(scores), dtype=bool)
        if exclude is not None:
            keep[exclude[r]] = False
        if threshold is not None:
            near = scores >= threshold if metric in ("cosine", "dot") else scores <= threshold
            keep &= near
        order = nearest_first(metric, scores, np.flatnonzero(keep))
        rows.append(order if top_k is None else order[:top_k])
    return rows


def assert_neighbours(
    got_indices: Any, got_scores: Any, want: list[list[int]], metric: str, x: Any, y: Any
) -> None:
    """Row by row: the listed indices are `want`'s, and their scores the reference's."""
    full, bound = matrix(metric, x, y), tolerance(metric, x, y)
    assert len(got_indices) == len(want) == len(got_scores)
    for r, (indices, scores) in enumerate(zip(got_indices, got_scores, strict=True)):
        assert [int(i) for i in indices] == want[r], (r, indices, want[r])
        assert np.asarray(scores).dtype == np.float32
        assert np.all(np.abs(scores - full[r, want[r]]) <= bound[r, want[r]]), r
