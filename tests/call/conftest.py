"""Fixtures for the call-protocol tests: backends (asyncio, asyncio+uvloop, trio) and
server addresses on every transport."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short directory for Unix sockets (their paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="pwcall-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


TRANSPORTS = ["mem", "tcp", "unix", "tcp-streams"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, anyio_backend: tuple[str, dict[str, Any]]) -> str:
    name = str(request.param)
    backend, options = anyio_backend
    if name == "tcp-streams" and backend == "trio":
        pytest.skip("trio always uses the streams driver")
    if options.get("use_uvloop") and name == "mem":
        pytest.skip("the in-memory link does not touch the event loop's transports")
    return name


@pytest.fixture
def server_address(transport: str, short_tmp: str) -> str:
    if transport.startswith("tcp"):
        return "tcp://127.0.0.1:0"
    if transport == "unix":
        return f"unix://{os.path.join(short_tmp, 's.sock')}"
    return "mem://"


@pytest.fixture
def driver(transport: str) -> str:
    return "streams" if transport == "tcp-streams" else "auto"
