"""What both clients share: request bodies (tensors as base64 float32), reading answers,
and the wait before a retry. Nothing here does I/O."""

from __future__ import annotations

import base64
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from ._version import __version__
from .errors import SimserveError, problem_from_response
from .models import (
    ArrayInput,
    FloatArray,
    IndexArray,
    Metric,
    Neighbours,
    Table,
    TableInfo,
    as_index,
    as_index_or_id,
)

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
        raise ValueError(f"{field}: cannot send an array of dtype {array.dtype} as float32")
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


def index_pairs(pairs: Iterable[Iterable[Any]]) -> list[list[int]]:
    """`pairs` (lists, tuples or integer arrays) as lists of ints; anything but a Python or
    numpy integer raises ValueError naming it (``pairs[0][1]: expected an integer, ...``)."""
    return [
        [as_index(i, f"pairs[{r}][{c}]") for c, i in enumerate(_row(row, f"pairs[{r}]"))]
        for r, row in enumerate(_row(pairs, "pairs"))
    ]


def exclusions(exclude: Iterable[Iterable[Any]]) -> list[list[int | str]]:
    """`exclude`: per user, item indices (Python or numpy integers) or item ids (strings)."""
    return [
        [as_index_or_id(i, f"exclude[{r}][{c}]") for c, i in enumerate(_row(row, f"exclude[{r}]"))]
        for r, row in enumerate(_row(exclude, "exclude"))
    ]


def _row(value: Any, where: str) -> Iterable[Any]:
    """A list argument or one of its rows: not a string, which would iterate as characters."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{where}: expected a list, found the string {value!r}")
    if not isinstance(value, Iterable):
        raise ValueError(f"{where}: expected a list, found {value!r} ({type(value).__name__})")
    return value


def top_k_field(top_k: Any) -> int | None:
    """`top_k` as sent: None, or a Python or numpy integer (``2.9`` is refused, not cut)."""
    return None if top_k is None else as_index(top_k, "top_k")


def threshold_field(threshold: Any) -> float | None:
    """`threshold` as sent: None, or a finite real number (not a bool or a string)."""
    if threshold is None:
        return None
    if not isinstance(threshold, (bool, np.bool_, str, bytes)):
        try:
            value = float(threshold)
        except OverflowError:  # an int past the float range
            value = math.inf
        except (TypeError, ValueError):
            pass
        else:
            if math.isfinite(value):
                return value
            raise ValueError(f"threshold: expected a finite number, found {threshold!r}")
    raise ValueError(
        f"threshold: expected a number, found {threshold!r} ({type(threshold).__name__})"
    )


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
        "top_k": top_k_field(top_k),
        "threshold": threshold_field(threshold),
        "exclude_self": True if exclude_self else None,
    }
    return Call("POST", "/similarity/matrix", json_body(fields), read_matrix_result)


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
        "pairs": None if pairs is None else index_pairs(pairs),
        "top_k": top_k_field(top_k),
        "threshold": threshold_field(threshold),
        "exclude": None if exclude is None else exclusions(exclude),
        "item_ids": None if item_ids is None else [str(i) for i in item_ids],
    }
    return Call("POST", "/similarity/user-item", json_body(fields), read_user_item_result)


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


def closed(call: Call[Any]) -> str:
    """The message of a ClientClosedError."""
    return f"{call.method} {call.path}: the client is closed"


# Retries.

MAX_RETRY_WAIT = 30.0
"""The clients' default `max_retry_wait`, in seconds."""


def check_retry_settings(retries: int, max_retry_wait: float) -> None:
    """Refuses a negative `retries`, and a `max_retry_wait` that is not a finite number of
    seconds, 0 or more."""
    if retries < 0:
        raise ValueError("retries must be 0 or more")
    try:
        cap = float(max_retry_wait)
    except (TypeError, ValueError):
        cap = math.nan
    if isinstance(max_retry_wait, bool) or not 0.0 <= cap < math.inf:
        raise ValueError(
            f"max_retry_wait must be a finite number of seconds, 0 or more, "
            f"found {max_retry_wait!r}"
        )


def retry_delay(
    attempt: int, retry_after: float | None, cap: float = MAX_RETRY_WAIT
) -> float | None:
    """Seconds to wait before retry number `attempt` (0 for the first): exponential backoff
    from 0.25 s, never shorter than the server's Retry-After, plus up to 10 % jitter so that
    clients refused together do not come back together; never longer than `cap`. None when
    the server's Retry-After alone is longer than `cap`: the error is raised at once."""
    if retry_after is not None and retry_after > cap:
        return None
    backoff = 0.25 * 2.0 ** min(attempt, 16)
    delay = max(backoff, retry_after or 0.0) * (1.0 + 0.1 * random.random())
    return min(delay, cap)


STALE_CONNECTION_WINDOW = 0.1
"""Seconds after a request was fully sent within which a reused keep-alive connection that
fails before any answer is taken for one the server had closed as the request went out
(the keep-alive race), so the request is sent again. A later failure means the server may
have received the request and worked on it: sending it again would double that work."""


@dataclass
class ConnectionWatch:
    """What httpx's ``trace`` extension tells of one request: whether it opened a new
    connection, when the request was fully sent, when waiting for the answer failed, and
    whether the head of an answer arrived. Together with the error they tell a kept-alive
    connection that the server closed just as the request went out."""

    opened: bool = False
    answered: bool = False
    sent_at: float | None = None
    """`time.monotonic()` when httpcore reported the request body fully sent."""
    failed_at: float | None = None
    """`time.monotonic()` when httpcore reported waiting for the answer's head failed."""

    def extensions(self) -> dict[str, Any]:
        """The request extensions for the blocking client."""
        return {"trace": self.event}

    def async_extensions(self) -> dict[str, Any]:
        """The request extensions for the asyncio client (its trace callback is awaited)."""
        return {"trace": self.async_event}

    def event(self, name: str, info: dict[str, Any]) -> None:
        """The trace callback: httpcore's event names, ``connection.connect_tcp.started``,
        ``http11.send_request_body.complete``, ``http11.receive_response_headers.failed``..."""
        if name.startswith("connection.connect_"):
            self.opened = True
        elif name.endswith(".send_request_body.complete"):
            self.sent_at = time.monotonic()
        elif name.endswith(".receive_response_headers.complete"):
            self.answered = True
        elif name.endswith(".receive_response_headers.failed") and self.failed_at is None:
            self.failed_at = time.monotonic()

    async def async_event(self, name: str, info: dict[str, Any]) -> None:
        """`event`, awaitable."""
        self.event(name, info)

    def closed_before_answer(
        self, err: httpx.TransportError, window: float = STALE_CONNECTION_WINDOW
    ) -> bool:
        """Whether `err` is a reused keep-alive connection found closed by the server before
        any answer, while the request was being sent or within `window` seconds after:
        worth one retry on a fresh connection, since the server cannot have worked on the
        request (and no request has side effects). A new connection that fails, a timeout,
        an answer cut short, or a connection that failed later than `window` is not."""
        if self.opened or self.answered:
            return False
        if self.sent_at is not None:
            failed_at = time.monotonic() if self.failed_at is None else self.failed_at
            if failed_at - self.sent_at > window:
                return False
        if isinstance(err, httpx.RemoteProtocolError):
            # httpcore's words for end of stream before a response's head
            return "without sending a response" in str(err)
        return isinstance(err, (httpx.ReadError, httpx.WriteError))


# Answers.

UNREADABLE = (
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    RecursionError,
    TypeError,
    ValueError,
)
"""What reading an answer that is not what the API says may raise."""


def read_answer(call: Call[T], response: httpx.Response) -> T:
    """What a successful answer holds; raises ProblemError (or OverloadedError) for an error
    answer, and SimserveError for an answer this package cannot read."""
    if response.status_code >= 400:
        raise problem_from_response(response)
    try:
        return call.read(json.loads(response.content))
    except UNREADABLE as err:
        raise SimserveError(
            f"unexpected {response.status_code} answer to {call.method} {call.path}: "
            f"{type(err).__name__}: {err}; body starts {response.text[:200]!r}"
        ) from err


def unreadable(call: Call[Any], err: httpx.RequestError) -> SimserveError:
    """The error for an answer httpx could not decode (a bad ``content-encoding``)."""
    return SimserveError(f"unreadable answer to {call.method} {call.path}: {err}")


def _object(body: Any, what: str = "the answer") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"{what}: expected a JSON object, found {type(body).__name__}")
    return body


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    ):
        raise ValueError(f"shape: expected a list of sizes, found {value!r}")
    return tuple(value)


def decode_floats(value: Any) -> FloatArray:
    """A float tensor of an answer: a base64 tensor object, or (tolerated) JSON numbers."""
    if isinstance(value, dict):
        if value.get("dtype") != "float32":
            raise ValueError(f"unexpected tensor dtype in answer: {value.get('dtype')!r}")
        data = value["data"]
        if not isinstance(data, str):
            raise TypeError(f"tensor data: expected base64 text, found {type(data).__name__}")
        raw = base64.b64decode(data, validate=True)
        shape = _shape(value["shape"])
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    if not isinstance(value, list):
        raise TypeError(f"expected numbers or a tensor object, found {type(value).__name__}")
    numbers = np.asarray(value)
    if numbers.size and numbers.dtype.kind not in "iuf":
        raise TypeError(f"expected numbers, found an array of {numbers.dtype}")
    with np.errstate(over="ignore"):
        array: FloatArray = numbers.astype(np.float32)
    return array


def _indices(value: Any) -> IndexArray:
    """Indices of an answer: nested lists of non-negative ints."""
    if not isinstance(value, list):
        raise TypeError(f"indices: expected a list, found {type(value).__name__}")
    numbers = np.asarray(value)
    if numbers.size and numbers.dtype.kind not in "iu":
        raise TypeError(f"indices: expected integers, found an array of {numbers.dtype}")
    indices: IndexArray = numbers.astype(np.int64)
    if numbers.size and indices.min() < 0:
        raise ValueError("indices: found a negative index")
    return indices


def read_scores(body: Any) -> FloatArray:
    """``{"scores": ...}``: one score per pair."""
    return decode_floats(_object(body)["scores"])


def read_result(body: Any, ids_field: str) -> FloatArray | Neighbours:
    """A matrix (or pair scores) as an array; top-k / threshold answers as `Neighbours`,
    with their ids from `ids_field`."""
    body = _object(body)
    if "indices" in body:
        return read_neighbours(body, ids_field)
    if "matrix" in body:
        return decode_floats(body["matrix"])
    return read_scores(body)


def read_matrix_result(body: Any) -> FloatArray | Neighbours:
    """An answer of ``/similarity/matrix``: neighbours list their rows' ids in ``ids``."""
    return read_result(body, "ids")


def read_user_item_result(body: Any) -> FloatArray | Neighbours:
    """An answer of ``/similarity/user-item``: neighbours list their items' ids in ``items``."""
    return read_result(body, "items")


def read_neighbours(body: Any, ids_field: str = "items") -> Neighbours:
    """``indices`` and ``scores`` (and ids, from `ids_field`: ``items`` for user-item,
    ``ids`` for matrix): arrays when the answer has a ``shape``, else lists with one array
    per row (per set, lists of those)."""
    body = _object(body)
    indices: Any
    scores: Any
    if "shape" in body:
        shape = _shape(body["shape"])
        indices = _indices(body["indices"]).reshape(shape)
        scores = decode_floats(body["scores"]).reshape(shape)
    else:
        indices, scores = _ragged(body["indices"], body["scores"], depth=0)
    listed = body.get(ids_field)
    ids = None if listed is None else _ids(listed, indices, ids_field)
    metric = body.get("metric", "cosine")
    if not isinstance(metric, str):
        raise TypeError(f"metric: expected a string, found {type(metric).__name__}")
    return Neighbours(indices, scores, ids, metric, _table_versions(body))


def _ragged(indices: Any, scores: Any, depth: int) -> tuple[Any, Any]:
    """Pairs up nested index lists with their scores down to one row each. A row is a list
    of ints (possibly empty); its scores a base64 tensor or a list of numbers. Rows may be
    grouped in sets, no deeper."""
    if not isinstance(indices, list):
        raise TypeError(f"indices: expected a list, found {type(indices).__name__}")
    if depth == 2 or not indices or not isinstance(indices[0], list):
        row = _indices(indices)
        if row.ndim != 1:
            raise ValueError("indices: nested deeper than sets of rows")
        return row, decode_floats(scores).reshape(row.shape)
    if not isinstance(scores, list):
        raise TypeError(f"scores: expected a list, found {type(scores).__name__}")
    rows = [_ragged(i, s, depth + 1) for i, s in zip(indices, scores, strict=True)]
    return [r[0] for r in rows], [r[1] for r in rows]


def _ids(value: Any, layout: Any, where: str) -> Any:
    """The ids of an answer, checked to be laid out like its indices (`layout`: an array
    or nested lists of 1-D arrays): one list of strings per row."""
    if not isinstance(value, list) or len(value) != len(layout):
        raise ValueError(f"{where}: not laid out like indices")
    if isinstance(layout, np.ndarray) and layout.ndim == 1:
        if not all(isinstance(i, str) for i in value):
            raise TypeError(f"{where}: expected strings")
        return list(value)
    return [_ids(v, layout[n], f"{where}[{n}]") for n, v in enumerate(value)]


def _table_versions(body: dict[str, Any]) -> dict[str, str]:
    """``tables``: the version of each table an answer read."""
    tables = _object(body.get("tables", {}), "tables")
    if not all(isinstance(version, str) for version in tables.values()):
        raise TypeError("tables: expected a version string per table")
    return dict(tables)


def read_tables(body: Any) -> list[TableInfo]:
    """``{"tables": [...]}`` of ``GET /tables``."""
    entries = _object(body)["tables"]
    if not isinstance(entries, list):
        raise TypeError(f"tables: expected a list, found {type(entries).__name__}")
    return [TableInfo.from_json(entry) for entry in entries]
