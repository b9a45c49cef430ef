"""The package's version follows the server's, and it says which server API it speaks."""

from __future__ import annotations

import re
from importlib.metadata import version

from servers import REPO

import simserve_client


def cargo_version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    found = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    assert found, "Cargo.toml [package] has no version"
    return found.group(1)


def openapi_version() -> str:
    text = (REPO / "openapi.yaml").read_text()
    info = text.split("\ninfo:\n", 1)[1]
    found = re.search(r"^  version:\s*['\"]?([^'\"\s]+)", info, re.MULTILINE)
    assert found, "openapi.yaml info has no version"
    return found.group(1)


def test_package_version_is_the_servers() -> None:
    assert cargo_version() == simserve_client.__version__
    assert cargo_version() == version("simserve-client")


def test_server_api_version_is_openapi_info_version() -> None:
    assert openapi_version() == simserve_client.SERVER_API_VERSION
