"""Session fixtures: real simserve binaries ($SIMSERVE_BIN, else target/release/simserve)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import Server

from simserve_client import Client

API_KEY = "test-key-1"


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """Defaults but a queue deep enough for the 50 concurrent requests of the async tests."""
    with Server("--max-queue", "64") as running:
        yield running


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c


@pytest.fixture(scope="session")
def auth_server() -> Iterator[Server]:
    with Server("--api-keys", f"{API_KEY},another-key") as running:
        yield running


@pytest.fixture(scope="session")
def saturable() -> Iterator[Server]:
    """One permit, no queue: one request held (tests/servers.py HeldRequest) fills it."""
    with Server("--compute-permits", "1", "--max-queue", "0", "--body-timeout", "120s") as running:
        yield running
