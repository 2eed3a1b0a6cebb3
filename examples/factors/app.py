"""factors: routing and per-replica caching.

``Factorer.factors(x)`` returns the factors of ``x``. Each replica keeps an LRU cache
of answers; a router sends every call for the same ``x`` to the same replica, so the
caches do not all fill with the same entries. ``GET /?x=N`` on the ``factors``
listener answers. The cache size comes from weaver.toml's ``["app.Factorer"]`` section.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio
import attrs

import pyweaver as weaver


class Factorer(Protocol):
    async def factors(self, x: int) -> list[int]: ...

    async def cache_info(self) -> CacheInfo: ...


class CacheInfo(weaver.AutoMarshal):
    replica: str
    size: int
    hits: int
    misses: int


@attrs.frozen
class FactorerConfig:
    cache_size: int = 1000


class FactorerRouter:
    def factors(self, x: int) -> int:
        return x


class FactorerImpl(
    weaver.Implements[Factorer],
    weaver.WithConfig[FactorerConfig],
    weaver.WithRouter[FactorerRouter],
):
    async def init(self) -> None:
        self.cache: OrderedDict[int, list[int]] = OrderedDict()
        self.hits = self.misses = 0

    async def factors(self, x: int) -> list[int]:
        if x < 1:
            raise ValueError(f"x must be positive, got {x}")
        cached = self.cache.get(x)
        if cached is not None:
            self.hits += 1
            self.cache.move_to_end(x)
            return cached
        self.misses += 1
        result = [d for d in range(1, x + 1) if x % d == 0]
        self.cache[x] = result
        if len(self.cache) > self.config.cache_size:
            self.cache.popitem(last=False)
        return result

    async def cache_info(self) -> CacheInfo:
        return CacheInfo(self.weaver_info.replica_id, len(self.cache), self.hits, self.misses)


def make_asgi_app(factorer: Factorer) -> Callable[..., Awaitable[None]]:
    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        try:
            x = int(query.get("x", [""])[0])
            status, body = 200, (" ".join(map(str, await factorer.factors(x))) + "\n").encode()
        except (ValueError, weaver.RemoteException) as exc:
            status, body = 400, f"bad x: {exc}\n".encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def main() -> None:
    root = await weaver.init()
    factorer = await weaver.get(Factorer, root)
    listener = await root.listener(
        "factors", weaver.ListenerOptions(local_address="localhost:12347")
    )
    root.logger.info("factors listener available", address=str(listener))
    await weaver.serve_asgi(listener, weaver.instrument_handler("factors", make_asgi_app(factorer)))


if __name__ == "__main__":
    anyio.run(main)
