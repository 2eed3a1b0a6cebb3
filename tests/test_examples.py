"""Every example, in every mode it claims: its components through weavertest (local,
rpc, multi) and its HTTP front end; `test_single.py` runs them as scripts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

import pyweaver as weaver
from pyweaver import weavertest
from pyweaver._runtime._appload import load_app
from pyweaver._runtime._component import isolated_registrations

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).parent.parent / "examples"
MODES = list(weavertest.MODES)


@pytest.fixture
def example(request: pytest.FixtureRequest) -> Iterator[tuple[ModuleType, str]]:
    """Import examples/<name>/app.py in a registration table of its own."""
    path = str(EXAMPLES / request.param / "app.py")
    with isolated_registrations():
        sys.modules.pop("app", None)
        module = load_app(path)
        try:
            yield module, path
        finally:
            sys.modules.pop("app", None)


@pytest.mark.parametrize("example", ["hello"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
async def test_hello(example: tuple[ModuleType, str], mode: str) -> None:
    app_module, path = example
    async with weavertest.Runner(mode, app=path) as app:
        reverser = await app.get(app_module.Reverser)
        assert await reverser.reverse("abc") == "cba"
        asgi = weaver.instrument_handler("hello", app_module.make_asgi_app(reverser))
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://hello") as client:
            response = await client.get("/hello", params={"name": "World"})
            assert (response.status_code, response.text) == (200, "Hello, dlroW!\n")
            assert (await client.get("/hello")).status_code == 400


@pytest.mark.parametrize("example", ["collatz"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
async def test_collatz(example: tuple[ModuleType, str], mode: str) -> None:
    app_module, path = example
    async with weavertest.Runner(mode, app=path) as app:
        odd = await app.get(app_module.Odd)
        even = await app.get(app_module.Even)
        steps = await app_module.sequence(27, odd, even)
        assert len(steps) == 112 and steps[0] == 27 and steps[-1] == 1
        assert max(steps) == 9232
        with pytest.raises(ValueError, match="positive"):
            await app_module.sequence(0, odd, even)


@pytest.mark.parametrize("example", ["factors"], indirect=True)
@pytest.mark.parametrize("mode", MODES)
async def test_factors(example: tuple[ModuleType, str], mode: str) -> None:
    app_module, path = example
    config = '["app.Factorer"]\ncache_size = 2\n'
    async with weavertest.Runner(mode, config=config, app=path) as app:
        factorer = await app.get(app_module.Factorer)
        assert await factorer.factors(12) == [1, 2, 3, 4, 6, 12]
        assert await factorer.factors(7) == [1, 7]
        if mode == "local":
            assert await factorer.factors(12) == [1, 2, 3, 4, 6, 12]
            info = await factorer.cache_info()
            assert (info.size, info.hits, info.misses) == (2, 1, 2)
            with pytest.raises(ValueError, match="positive"):
                await factorer.factors(0)
        else:
            with pytest.raises(weaver.RemoteException) as raised:
                await factorer.factors(0)
            assert raised.value.type_name == "builtins.ValueError"
