"""A good app for `pyweaver check` and the single-process tests: Store and Front (a
Ref cycle, a config section, a listener) plus a main that serves HTTP and logs from a
shutdown hook."""

from __future__ import annotations

import os
from typing import Protocol

import anyio
import attrs

import pyweaver as weaver


class Store(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...


class Front(Protocol):
    async def lookup(self, key: str) -> str: ...


@attrs.frozen
class StoreConfig:
    size: int = 100


class StoreImpl(weaver.Implements[Store], weaver.WithConfig[StoreConfig]):
    front: weaver.Ref[Front]

    async def init(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:  # type: ignore[override]
        return self.data.get(key)

    async def put(self, key: str, value: str) -> None:
        if len(self.data) < self.config.size:
            self.data[key] = value

    async def shutdown(self) -> None:
        print(f"store shutdown pid={os.getpid()}", flush=True)


class FrontImpl(weaver.Implements[Front]):
    store: weaver.Ref[Store]
    web: weaver.Listener

    async def lookup(self, key: str) -> str:
        return await self.store.get().get(key) or "<missing>"


async def main() -> None:
    root = await weaver.init()
    store = await weaver.get(Store, root)
    await store.put("a", "1")
    front = await weaver.get(Front, root)
    print(f"lookup a={await front.lookup('a')} size={store!r}", flush=True)
    if os.environ.get("GOOD_APP_WAIT"):
        print("waiting for a signal", flush=True)
        await anyio.sleep(60)


if __name__ == "__main__":
    anyio.run(main, backend=os.environ.get("GOOD_APP_BACKEND", "asyncio"))
