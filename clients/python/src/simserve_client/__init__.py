"""simserve-client: numpy arrays in, numpy arrays out, problems as exceptions.

>>> from simserve_client import Client
>>> with Client("http://localhost:8080") as client:          # doctest: +SKIP
...     scores = client.pairwise(pairs=embeddings)           # (batch, 2, dim) -> (batch,)

`Client` blocks; `AsyncClient` has the same methods for asyncio. Arrays travel as base64
float32 both ways. `__version__` follows the simserve release; `SERVER_API_VERSION` is the
server API (openapi.yaml ``info.version``) this package speaks.
"""

from ._version import SERVER_API_VERSION, __version__
from .async_client import AsyncClient
from .client import Client
from .errors import (
    ClientClosedError,
    OverloadedError,
    ProblemError,
    SimserveConnectionError,
    SimserveError,
)
from .models import ArrayInput, Metric, Neighbours, Table, TableInfo

__all__ = [
    "SERVER_API_VERSION",
    "ArrayInput",
    "AsyncClient",
    "Client",
    "ClientClosedError",
    "Metric",
    "Neighbours",
    "OverloadedError",
    "ProblemError",
    "SimserveConnectionError",
    "SimserveError",
    "Table",
    "TableInfo",
    "__version__",
]
