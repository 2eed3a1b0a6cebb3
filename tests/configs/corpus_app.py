"""The tiny app the bad-config corpus is checked against: Cache (with a config class)
and Front (with a listener field), and a main that returns at once."""

from __future__ import annotations

from typing import Protocol

import anyio
import attrs

import pyweaver as weaver


@attrs.frozen
class CacheConfig:
    size: int = 10
    label: str = "cache"


class Cache(Protocol):
    async def get(self, key: str) -> str: ...


class Front(Protocol):
    async def hello(self) -> str: ...


class CacheImpl(weaver.Implements[Cache], weaver.WithConfig[CacheConfig]):
    async def get(self, key: str) -> str:  # type: ignore[override]
        return f"{self.config.label}:{key}"


class FrontImpl(weaver.Implements[Front]):
    cache: weaver.Ref[Cache]
    web: weaver.Listener

    async def hello(self) -> str:
        return await self.cache.get().get("hello")


async def main() -> None:
    await weaver.init()


if __name__ == "__main__":
    anyio.run(main)
