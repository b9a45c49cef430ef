#!/usr/bin/env python3
"""Writes tests/fixtures/reference.json: requests and their expected answers.

The expected values come from numpy (float64) and scikit-learn, independently of simserve's
code, for inputs that are float32 (what simserve computes in). Each expected value carries its
tolerance from the accuracy contract:

    cosine     2e-5
    dot        2e-5 * |x| * |y|
    distances  2e-5 * (|x| + |y|)

Run it after changing the cases:  python3 scripts/make_fixtures.py
(needs numpy and scikit-learn; `cargo test` only reads the committed JSON).
"""

import base64
import json
import pathlib

import numpy as np
from sklearn.metrics.pairwise import (
    cosine_similarity,
    euclidean_distances,
    manhattan_distances,
    paired_euclidean_distances,
    paired_manhattan_distances,
)

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "reference.json"
REL = 2e-5
SIMILARITIES = ("cosine", "dot")


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def compact(x, digits):
    """Nested lists of floats printed with `digits` significant digits."""
    arr = np.asarray(x, dtype=np.float64)
    flat = [float(f"{v:.{digits}g}") for v in arr.ravel()]
    return np.array(flat).reshape(arr.shape).tolist()


def as_json(x):
    """Nested lists of numbers that parse back to exactly these float32 values."""
    return compact(np.asarray(x, dtype=np.float32), 9)


def as_b64(x, dtype="float32"):
    arr = np.ascontiguousarray(np.asarray(x, dtype="<f4" if dtype == "float32" else "<f8"))
    return {"dtype": dtype, "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode()}


def keras_normalize(x):
    """tf.math.l2_normalize(x, axis=-1, epsilon=1e-12) in float64."""
    sq = np.sum(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(np.maximum(sq, 1e-12))


def tolerance(metric, shape, na, nb):
    """The accuracy contract for scores of rows with norms na and nb (broadcast)."""
    if metric == "cosine":
        tol = np.full(shape, REL)
    elif metric == "dot":
        tol = REL * na * nb
    else:
        tol = REL * (na + nb)
    return np.maximum(tol, 1e-30)


def dense_reference(metric, a, b):
    """(scores, tolerances) of every row of a against every row of b, in float64."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    na = np.linalg.norm(a, axis=1)[:, None]
    nb = np.linalg.norm(b, axis=1)[None, :]
    if metric == "cosine":
        scores = np.clip(keras_normalize(a) @ keras_normalize(b).T, -1.0, 1.0)
        big = (na >= 1e-6) & (nb >= 1e-6)
        sk = cosine_similarity(a, b)
        assert np.allclose(scores[big[:, 0]][:, big[0]], sk[big[:, 0]][:, big[0]], atol=1e-12)
    elif metric == "dot":
        scores = a @ b.T
    elif metric == "euclidean":
        scores = euclidean_distances(a, b)
    else:
        scores = manhattan_distances(a, b)
    return scores, tolerance(metric, scores.shape, na, nb)


def paired_reference(metric, a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if len(a) == 1:
        a = np.repeat(a, len(b), axis=0)
    if len(b) == 1:
        b = np.repeat(b, len(a), axis=0)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    if metric == "cosine":
        scores = np.clip(np.sum(keras_normalize(a) * keras_normalize(b), axis=1), -1, 1)
    elif metric == "dot":
        scores = np.einsum("ij,ij->i", a, b)
    elif metric == "euclidean":
        scores = paired_euclidean_distances(a, b)
    else:
        scores = paired_manhattan_distances(a, b)
    return scores, tolerance(metric, scores.shape, na, nb)


cases = []


def pick_threshold(reference, quantile):
    """A threshold near `quantile` of the scores, in the middle of a wide gap between them,
    so float32 rounding cannot move a score across it."""
    values = np.sort(reference.ravel())
    at = int(quantile * (len(values) - 1))
    lo, hi = max(at - 40, 0), min(at + 40, len(values) - 1)
    gaps = np.diff(values[lo:hi + 1])
    best = lo + int(np.argmax(gaps))
    return round(float((values[best] + values[best + 1]) / 2), 6)


def dense_case(name, path, request, field, scores, tol, shape=None):
    cases.append({
        "name": name,
        "path": path,
        "request": request,
        "expect": {
            "kind": "dense",
            "field": field,
            "shape": list(shape if shape is not None else scores.shape),
            "values": compact(scores.ravel(), 12),
            "tol": compact(tol.ravel(), 3),
        },
    })


def neighbours_case(name, path, request, reference, tol, k=None, threshold=None, exclude=None,
                    exclude_self=False, item_ids=None):
    """reference: (sets, n, m) float64 scores; the test derives the expected selection."""
    metric = request.get("metric", "cosine")
    if threshold is not None:
        gap = np.min(np.abs(reference - threshold))
        assert gap > 1e-3, f"{name}: threshold too close to a score ({gap})"
    cases.append({
        "name": name,
        "path": path,
        "request": request,
        "expect": {
            "kind": "neighbours",
            "similarity": metric in SIMILARITIES,
            "reference_shape": list(reference.shape),
            "reference": compact(reference.ravel(), 12),
            "tol": compact(tol.ravel(), 3),
            "k": k,
            "threshold": threshold,
            "exclude": exclude,
            "exclude_self": exclude_self,
            "item_ids": item_ids,
        },
    })


def main():
    rng = np.random.default_rng(20261128)
    metrics = ["cosine", "dot", "euclidean", "manhattan"]

    # --- pairwise -------------------------------------------------------------------------
    pairs = f32(rng, 10, 2, 128)  # the Keras Lambda-layer example: (batch, 2, dim)
    s, t = paired_reference("cosine", pairs[:, 0], pairs[:, 1])
    dense_case("pairwise: keras lambda pairs (10, 2, 128)", "/similarity/pairwise",
               {"pairs": as_json(pairs)}, "scores", s, t)
    for metric in metrics:
        a, b = f32(rng, 16, 64), f32(rng, 16, 64, scale=3.0)
        s, t = paired_reference(metric, a, b)
        dense_case(f"pairwise: {metric} 16x64", "/similarity/pairwise",
                   {"a": as_json(a), "b": as_json(b), "metric": metric}, "scores", s, t)
    a, b = f32(rng, 1, 32), f32(rng, 8, 32)
    s, t = paired_reference("cosine", a, b)
    dense_case("pairwise: one row of a against every row of b", "/similarity/pairwise",
               {"a": as_json(a), "b": as_json(b)}, "scores", s, t)
    s, t = paired_reference("euclidean", b, a)
    dense_case("pairwise: one row of b against every row of a", "/similarity/pairwise",
               {"a": as_json(b), "b": as_json(a), "metric": "euclidean"}, "scores", s, t)
    a, b = f32(rng, 6, 24), f32(rng, 6, 24)
    s, t = paired_reference("dot", a, b)
    dense_case("pairwise: base64 float32 and float64 inputs", "/similarity/pairwise",
               {"a": as_b64(a), "b": as_b64(b, "float64"), "metric": "dot"}, "scores", s, t)
    dense_case("pairwise: base64 response", "/similarity/pairwise",
               {"a": as_b64(a), "b": as_json(b), "metric": "dot", "response_encoding": "base64"},
               "scores", s, t)

    # Edge cases: zero vectors, d = 1, identical and near-identical rows, magnitudes.
    zero = np.zeros((1, 8), np.float32)
    x = f32(rng, 3, 8)
    for metric in metrics:
        a = np.concatenate([zero, x, zero])
        b = np.concatenate([x[:1], zero, x[1:2], zero, x[2:]])
        s, t = paired_reference(metric, a, b)
        dense_case(f"pairwise: zero vectors, {metric}", "/similarity/pairwise",
                   {"a": as_json(a), "b": as_json(b), "metric": metric}, "scores", s, t)
    a, b = f32(rng, 9, 1), f32(rng, 9, 1)
    for metric in metrics:
        s, t = paired_reference(metric, a, b)
        dense_case(f"pairwise: dimension 1, {metric}", "/similarity/pairwise",
                   {"a": as_json(a), "b": as_json(b), "metric": metric}, "scores", s, t)
    base = f32(rng, 5, 256, scale=10.0)
    near = (base * np.float32(1 + 1e-4)).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        s, t = paired_reference(metric, base, near)
        dense_case(f"pairwise: near-identical rows, {metric}", "/similarity/pairwise",
                   {"a": as_json(base), "b": as_json(near), "metric": metric}, "scores", s, t)
    huge, tiny = f32(rng, 4, 16, scale=1e18), f32(rng, 4, 16, scale=1e-9)
    for name, a in (("huge", huge), ("tiny", tiny)):
        b = f32(rng, 4, 16) * a.std()
        s, t = paired_reference("cosine", a, b.astype(np.float32))
        dense_case(f"pairwise: {name} magnitudes, cosine", "/similarity/pairwise",
                   {"a": as_json(a), "b": as_json(b.astype(np.float32))}, "scores", s, t)

    # --- matrix ---------------------------------------------------------------------------
    for metric in metrics:
        a, b = f32(rng, 20, 16), f32(rng, 30, 16)
        s, t = dense_reference(metric, a, b)
        dense_case(f"matrix: {metric} 20x16 against 30x16", "/similarity/matrix",
                   {"a": as_json(a), "b": as_json(b), "metric": metric}, "matrix", s, t)
    a = f32(rng, 12, 8)
    a[5] = a[2]  # duplicate rows
    a[7] = 0.0  # a zero row
    for metric in metrics:
        s, t = dense_reference(metric, a, a)
        dense_case(f"matrix: {metric} of a with itself", "/similarity/matrix",
                   {"a": as_json(a), "metric": metric}, "matrix", s, t)
    sets = f32(rng, 5, 10, 128)  # the custom-layer example: (5, 10, 128) -> (5, 10, 10)
    s = np.stack([dense_reference("cosine", x, x)[0] for x in sets])
    dense_case("matrix: batched sets (5, 10, 128) give (5, 10, 10)", "/similarity/matrix",
               {"a": as_json(sets)}, "matrix", s, np.full(s.shape, REL))
    sets_b = f32(rng, 5, 7, 128)
    parts = [dense_reference("manhattan", x, y) for x, y in zip(sets, sets_b)]
    s, t = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
    dense_case("matrix: batched a against batched b, base64 both ways", "/similarity/matrix",
               {"a": as_b64(sets), "b": as_b64(sets_b), "metric": "manhattan",
                "response_encoding": "base64"}, "matrix", s, t)

    a, b = f32(rng, 24, 16), f32(rng, 120, 16)
    for metric in metrics:
        s, t = dense_reference(metric, a, b)
        neighbours_case(f"matrix: top_k 5, {metric}", "/similarity/matrix",
                        {"a": as_json(a), "b": as_json(b), "metric": metric, "top_k": 5},
                        s[None], t[None], k=5)
    s, t = dense_reference("cosine", b[:50], b[:50])
    neighbours_case("matrix: top_k 3 of a with itself, excluding self", "/similarity/matrix",
                    {"a": as_json(b[:50]), "top_k": 3, "exclude_self": True},
                    s[None], t[None], k=3, exclude_self=True)
    neighbours_case("matrix: top_k larger than the candidates", "/similarity/matrix",
                    {"a": as_json(b[:6]), "top_k": 50},
                    dense_reference("cosine", b[:6], b[:6])[0][None],
                    dense_reference("cosine", b[:6], b[:6])[1][None], k=50)
    sa, ta = dense_reference("cosine", a, a)
    th = pick_threshold(sa, 0.85)
    neighbours_case("matrix: cosine threshold of a with itself", "/similarity/matrix",
                    {"a": as_json(a), "threshold": th}, sa[None], ta[None], threshold=th)
    s, t = dense_reference("euclidean", a, b)
    th = pick_threshold(s, 0.02)
    neighbours_case("matrix: euclidean threshold with top_k, base64 out", "/similarity/matrix",
                    {"a": as_json(a), "b": as_b64(b), "metric": "euclidean", "threshold": th,
                     "top_k": 4, "response_encoding": "base64"},
                    s[None], t[None], k=4, threshold=th)
    parts = [dense_reference("dot", x, x) for x in sets]
    s, t = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
    neighbours_case("matrix: batched top_k excluding self", "/similarity/matrix",
                    {"a": as_json(sets), "metric": "dot", "top_k": 2, "exclude_self": True},
                    s, t, k=2, exclude_self=True)

    # --- user-item ------------------------------------------------------------------------
    users, items = f32(rng, 60, 64), f32(rng, 200, 64)
    full, full_tol = dense_reference("cosine", users, items)
    pair_list = [[1, 10], [2, 20], [3, 30]] + rng.integers(0, [60, 200], size=(20, 2)).tolist()
    idx = np.array(pair_list)
    dense_case("user-item: keras collaborative-filtering pairs", "/similarity/user-item",
               {"users": as_json(users), "items": as_json(items), "pairs": pair_list}, "scores",
               full[idx[:, 0], idx[:, 1]], full_tol[idx[:, 0], idx[:, 1]])
    s, t = dense_reference("dot", users[:10], items[:50])
    dense_case("user-item: full matrix", "/similarity/user-item",
               {"users": as_json(users[:10]), "items": as_json(items[:50]), "metric": "dot"},
               "matrix", s, t)
    exclude = [sorted(set(rng.integers(0, 200, size=int(rng.integers(0, 30))).tolist()))
               for _ in range(60)]
    ids = [f"item-{i:04d}" for i in range(200)]
    neighbours_case("user-item: top_k 10 leaving out seen items, with ids", "/similarity/user-item",
                    {"users": as_json(users), "items": as_b64(items), "top_k": 10,
                     "exclude": exclude, "item_ids": ids},
                    full[None], full_tol[None], k=10, exclude=exclude, item_ids=ids)
    s, t = dense_reference("manhattan", users[:8], items)
    th = pick_threshold(s, 0.05)
    neighbours_case("user-item: manhattan threshold", "/similarity/user-item",
                    {"users": as_json(users[:8]), "items": as_json(items), "metric": "manhattan",
                     "threshold": th},
                    s[None], t[None], threshold=th)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "scripts/make_fixtures.py", "cases": cases}) + "\n")
    print(f"wrote {len(cases)} cases to {OUT.relative_to(OUT.parent.parent.parent)}")


if __name__ == "__main__":
    main()
