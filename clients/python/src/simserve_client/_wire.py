"""What both clients share: request bodies (tensors as base64 float32), reading answers,
and the wait before a retry. Nothing here does I/O."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from ._version import __version__
from .errors import SimserveError, problem_from_response
from .models import ArrayInput, FloatArray, IndexArray, Metric, Neighbours, Table, TableInfo

T = TypeVar("T")

USER_AGENT = f"simserve-client/{__version__}"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer's JSON body."""

    method: str
    path: str
    body: bytes | None
    read: Callable[[Any], T]


# Requests.


def encode_tensor(value: ArrayInput, field: str) -> dict[str, Any]:
    """A request field: a `Table` reference, or ``{"dtype": "float32", "shape", "data"}``."""
    if isinstance(value, Table):
        return value.to_json()
    array = as_float32(value, field)
    return {
        "dtype": "float32",
        "shape": list(array.shape),
        "data": base64.b64encode(array.astype("<f4", copy=False).tobytes()).decode("ascii"),
    }


def as_float32(value: Any, field: str) -> FloatArray:
    """`value` as a C-ordered float32 array. Nested lists must be rectangular: a ragged one
    raises ValueError naming the first row that differs (``a[1]: ...``), as the server would."""
    try:
        array = np.asarray(value)
    except ValueError as err:
        raise ValueError(f"{ragged_detail(value, field)} (arrays must be rectangular)") from err
    if array.dtype == object:
        raise ValueError(f"{ragged_detail(value, field)} (arrays must be rectangular)")
    if array.dtype.kind not in "biuf" and not np.can_cast(array.dtype, np.float32, "same_kind"):
        raise TypeError(f"{field}: cannot send an array of dtype {array.dtype} as float32")
    # Values beyond float32 become infinities, which the server refuses naming the index.
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(array, dtype=np.float32)


def ragged_detail(value: Any, field: str) -> str:
    """Where nested lists stop being rectangular: ``a[1]: row has 1 values, expected 2``."""
    level: list[tuple[str, Any]] = [(field, value)]
    while level:
        lengths = [len(v) if _is_sequence(v) else None for _, v in level]
        expected = lengths[0]
        for (path, _), length in zip(level, lengths, strict=True):
            if length != expected:
                if length is None or expected is None:
                    return f"{path}: mixes numbers and lists"
                if any(_is_sequence(item) for item in dict(level)[path]):
                    return f"{path}: has {length} rows, expected {expected}"
                return f"{path}: row has {length} values, expected {expected}"
        if expected is None:
            break
        level = [(f"{path}[{i}]", v[i]) for path, v in level for i in range(len(v))]
    return f"{field}: not a rectangular array of numbers"


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def index_lists(rows: Iterable[Iterable[Any]]) -> list[list[int]]:
    """Index pairs or exclusion lists (lists, tuples or integer arrays) as lists of ints."""
    return [[int(i) for i in row] for row in rows]


def json_body(fields: dict[str, Any]) -> bytes:
    """The request body: `fields` without those that are None, asking for base64 answers."""
    kept = {name: value for name, value in fields.items() if value is not None}
    kept["response_encoding"] = "base64"
    return json.dumps(kept, separators=(",", ":"), allow_nan=False).encode()


def pairwise_call(
    a: ArrayInput | None,
    b: ArrayInput | None,
    pairs: ArrayInput | None,
    metric: Metric,
) -> Call[FloatArray]:
    """``POST /similarity/pairwise``."""
    fields: dict[str, Any]
    if pairs is not None:
        if a is not None or b is not None:
            raise ValueError("pairwise: give a and b, or pairs, not both")
        fields = {"pairs": encode_tensor(pairs, "pairs")}
    elif a is None or b is None:
        raise ValueError("pairwise: give both a and b, or pairs")
    else:
        fields = {"a": encode_tensor(a, "a"), "b": encode_tensor(b, "b")}
    fields["metric"] = metric
    return Call("POST", "/similarity/pairwise", json_body(fields), read_scores)


def matrix_call(
    a: ArrayInput,
    b: ArrayInput | None,
    metric: Metric,
    top_k: int | None,
    threshold: float | None,
    exclude_self: bool,
) -> Call[FloatArray | Neighbours]:
    """``POST /similarity/matrix``."""
    fields = {
        "a": encode_tensor(a, "a"),
        "b": None if b is None else encode_tensor(b, "b"),
        "metric": metric,
        "top_k": None if top_k is None else int(top_k),
        "threshold": None if threshold is None else float(threshold),
        "exclude_self": True if exclude_self else None,
    }
    return Call("POST", "/similarity/matrix", json_body(fields), read_result)


def user_item_call(
    users: ArrayInput,
    items: ArrayInput,
    pairs: Iterable[Iterable[Any]] | None,
    top_k: int | None,
    threshold: float | None,
    exclude: Iterable[Iterable[Any]] | None,
    item_ids: Sequence[str] | None,
    metric: Metric,
) -> Call[FloatArray | Neighbours]:
    """``POST /similarity/user-item``."""
    fields = {
        "users": encode_tensor(users, "users"),
        "items": encode_tensor(items, "items"),
        "metric": metric,
        "pairs": None if pairs is None else index_lists(pairs),
        "top_k": None if top_k is None else int(top_k),
        "threshold": None if threshold is None else float(threshold),
        "exclude": None if exclude is None else index_lists(exclude),
        "item_ids": None if item_ids is None else [str(i) for i in item_ids],
    }
    return Call("POST", "/similarity/user-item", json_body(fields), read_result)


def tables_call() -> Call[list[TableInfo]]:
    """``GET /tables``."""
    return Call("GET", "/tables", None, read_tables)


def table_call(name: str) -> Call[TableInfo]:
    """``GET /tables/{name}``."""
    return Call("GET", f"/tables/{quote(name, safe='')}", None, TableInfo.from_json)


def headers(api_key: str | None) -> dict[str, str]:
    """Headers sent with every request."""
    sent = {"user-agent": USER_AGENT, "accept": "application/json"}
    if api_key is not None:
        sent["authorization"] = f"Bearer {api_key}"
    return sent


def request_headers(call: Call[Any]) -> dict[str, str]:
    """Headers of this request alone."""
    return {"content-type": "application/json"} if call.body is not None else {}


def failure(call: Call[Any], base_url: str, err: Exception) -> str:
    """The message of a SimserveConnectionError: which request, and what went wrong."""
    what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return f"{call.method} {base_url.rstrip('/')}{call.path} failed: {what}"


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first): exponential backoff
    from 0.25 s, never shorter than the server's Retry-After, plus up to 10 % jitter so that
    clients refused together do not come back together."""
    delay = max(0.25 * 2.0**attempt, retry_after or 0.0)
    return delay * (1.0 + 0.1 * random.random())


# Answers.


def read_answer(call: Call[T], response: httpx.Response) -> T:
    """What a successful answer holds; raises ProblemError (or OverloadedError) for an error
    answer, and SimserveError for an answer this package cannot read."""
    if response.status_code >= 400:
        raise problem_from_response(response)
    try:
        return call.read(json.loads(response.content))
    except (KeyError, TypeError, ValueError) as err:
        raise SimserveError(
            f"unexpected {response.status_code} answer to {call.method} {call.path}: "
            f"{type(err).__name__}: {err}; body starts {response.text[:200]!r}"
        ) from err


def decode_floats(value: Any) -> FloatArray:
    """A float tensor of an answer: a base64 tensor object, or (tolerated) JSON numbers."""
    if isinstance(value, dict):
        if value.get("dtype") != "float32":
            raise SimserveError(f"unexpected tensor dtype in answer: {value.get('dtype')!r}")
        raw = base64.b64decode(value["data"])
        shape = tuple(int(n) for n in value["shape"])
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    array: FloatArray = np.asarray(value, dtype=np.float32)
    return array


def read_scores(body: Any) -> FloatArray:
    """``{"scores": ...}``: one score per pair."""
    return decode_floats(body["scores"])


def read_result(body: Any) -> FloatArray | Neighbours:
    """A matrix (or pair scores) as an array; top-k / threshold answers as `Neighbours`."""
    if "indices" in body:
        return read_neighbours(body)
    if "matrix" in body:
        return decode_floats(body["matrix"])
    return read_scores(body)


def read_neighbours(body: Any) -> Neighbours:
    """``indices`` and ``scores`` (and ``items`` ids): arrays when the answer has a
    ``shape``, else lists with one array per row."""
    ids = body.get("items")
    tables = {str(k): str(v) for k, v in body.get("tables", {}).items()}
    if "shape" in body:
        shape = body["shape"]
        indices: Any = np.asarray(body["indices"], dtype=np.int64).reshape(shape)
        scores: Any = decode_floats(body["scores"]).reshape(shape)
    else:
        indices, scores = _ragged(body["indices"], body["scores"])
    return Neighbours(indices, scores, ids, str(body.get("metric", "cosine")), tables)


def _ragged(indices: Any, scores: Any) -> tuple[Any, Any]:
    """Pairs up nested index lists with their scores down to one row each. A row is a list
    of ints (possibly empty); its scores a base64 tensor or a list of numbers."""
    if not indices or not isinstance(indices[0], list):
        row: IndexArray = np.asarray(indices, dtype=np.int64)
        return row, decode_floats(scores).reshape(row.shape)
    rows = [_ragged(i, s) for i, s in zip(indices, scores, strict=True)]
    return [r[0] for r in rows], [r[1] for r in rows]


def read_tables(body: Any) -> list[TableInfo]:
    """``{"tables": [...]}`` of ``GET /tables``."""
    return [TableInfo.from_json(entry) for entry in body["tables"]]
