"""The package's version and the server API it speaks (kept equal to the server's)."""

__version__ = "0.1.0"
"""This package's version: the simserve release it was made with (Cargo.toml `version`)."""

SERVER_API_VERSION = "0.1.0"
"""The simserve API this package speaks (openapi.yaml `info.version`)."""
