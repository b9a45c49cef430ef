"""The service simserve replaces, written the way a competent engineer would: FastAPI +
uvicorn + numpy (OpenBLAS) + orjson, for the requests the benchmark sends.

Run: uvicorn app:app --workers 2 --port 8090 (bench/run.py does this in a venv, twice: with
numpy's default BLAS threads and with OPENBLAS_NUM_THREADS=1, one per worker, since which
serves more depends on how many requests are in flight; its ratios are against the faster).
With PEER_TABLES=DIR, every NAME.npy in DIR is loaded at start and normalised once, and an
embedding field may name it as simserve's --tables does: {"table": "NAME"} (bench/tables.py).
"""

import base64
import glob
import os

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

app = FastAPI()

# name -> rows normalised once at start: requests that name a table normalise only their own rows.
TABLES = {}


def tensor(value):
    if isinstance(value, dict):
        dtype = "<f4" if value["dtype"] == "float32" else "<f8"
        raw = np.frombuffer(base64.b64decode(value["data"]), dtype=dtype)
        return raw.reshape(value["shape"]).astype(np.float32, copy=False)
    return np.asarray(value, dtype=np.float32)


def encode(x, encoding):
    if encoding == "base64":
        x = np.ascontiguousarray(x, dtype="<f4")
        return {"dtype": "float32", "shape": list(x.shape), "data": base64.b64encode(x.tobytes()).decode()}
    return x


def normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def cosine_matrix(a, b):
    return np.clip(normalize(a) @ normalize(b).T, -1.0, 1.0)


def normalized(value):
    """A field's rows normalised: a preloaded table as it is, the request's own rows now."""
    if isinstance(value, dict) and "table" in value:
        return TABLES[value["table"]]
    return normalize(tensor(value))


def top_k(scores, k, exclude=None):
    if exclude is not None:
        for row, items in enumerate(exclude):
            scores[row, items] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(picked, order, axis=1)


def respond(body):
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def pairwise(body):
    req = orjson.loads(body)
    a, b = tensor(req["a"]), tensor(req["b"])
    scores = np.clip(np.einsum("ij,ij->i", normalize(a), normalize(b)), -1.0, 1.0)
    return {"metric": "cosine", "shape": [len(scores)], "scores": encode(scores, req.get("response_encoding"))}


def matrix(body):
    req = orjson.loads(body)
    a = tensor(req["a"])
    b = tensor(req["b"]) if "b" in req else a
    k = req.get("top_k")
    if k is None:
        m = cosine_matrix(a, b)
        return {"metric": "cosine", "shape": list(m.shape), "matrix": encode(m, req.get("response_encoding"))}
    bn = normalize(b)
    indices, scores = [], []
    for start in range(0, len(a), 256):  # blocks keep memory bounded
        block = np.clip(normalize(a[start:start + 256]) @ bn.T, -1.0, 1.0)
        i, s = top_k(block, k)
        indices.append(i)
        scores.append(s)
    indices, scores = np.concatenate(indices), np.concatenate(scores)
    return {"metric": "cosine", "shape": list(indices.shape), "indices": indices,
            "scores": encode(scores, req.get("response_encoding"))}


def user_item(body):
    req = orjson.loads(body)
    scores = np.clip(normalized(req["users"]) @ normalized(req["items"]).T, -1.0, 1.0)
    indices, picked = top_k(scores, req["top_k"], req.get("exclude"))
    return {"metric": "cosine", "shape": list(indices.shape), "indices": indices,
            "scores": encode(picked, req.get("response_encoding"))}


if os.environ.get("PEER_TABLES"):
    for path in sorted(glob.glob(os.path.join(os.environ["PEER_TABLES"], "*.npy"))):
        TABLES[os.path.basename(path)[:-len(".npy")]] = normalize(np.load(path).astype(np.float32, copy=False))


@app.post("/similarity/pairwise")
async def pairwise_route(request: Request):
    return respond(await run_in_threadpool(pairwise, await request.body()))


@app.post("/similarity/matrix")
async def matrix_route(request: Request):
    return respond(await run_in_threadpool(matrix, await request.body()))


@app.post("/similarity/user-item")
async def user_item_route(request: Request):
    return respond(await run_in_threadpool(user_item, await request.body()))


def v2_matrix(body, length):
    """The Open Inference Protocol's binary form of the matrix, as a Triton-style Python server
    (a Python backend, or a FastAPI server speaking the protocol) answers it: inputs viewed
    from the body with numpy, the output's bytes after the JSON."""
    head = orjson.loads(body[:length])
    offset = length
    tensors = {}
    for spec in head["inputs"]:
        size = spec["parameters"]["binary_data_size"]
        dtype = np.dtype({"FP32": "<f4", "FP64": "<f8"}[spec["datatype"]])
        values = np.frombuffer(body, dtype, count=size // dtype.itemsize, offset=offset)
        tensors[spec["name"]] = values.reshape(spec["shape"]).astype(np.float32, copy=False)
        offset += size
    a = tensors["a"]
    m = np.ascontiguousarray(cosine_matrix(a, tensors.get("b", a)), dtype="<f4")
    out = orjson.dumps({"model_name": "matrix", "outputs": [
        {"name": "matrix", "datatype": "FP32", "shape": list(m.shape),
         "parameters": {"binary_data_size": m.nbytes}}]})
    return Response(out + m.tobytes(), media_type="application/octet-stream",
                    headers={"inference-header-content-length": str(len(out))})


@app.post("/v2/models/matrix/infer")
async def v2_matrix_route(request: Request):
    body = await request.body()
    length = int(request.headers.get("inference-header-content-length", len(body)))
    return await run_in_threadpool(v2_matrix, body, length)


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}
