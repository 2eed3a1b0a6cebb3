"""A tiny app for ``pyweaver multi deploy`` tests: main asks ``Adder`` (another
process) for 2 + 3, prints it, then exits with ``CHAIN_EXIT`` (default 0) or, with
``CHAIN_SERVE=1``, keeps running until stopped. ``CHAIN_CRASH=1`` makes every Adder
weavelet die while it builds Adder (a crash loop). ``CHAIN_BACKEND`` picks the anyio
backend (default asyncio)."""

from __future__ import annotations

import os
import sys
from typing import Protocol

import anyio

import pyweaver as weaver


class Adder(Protocol):
    async def add(self, a: int, b: int) -> int: ...

    async def pid(self) -> int: ...


class AdderImpl(weaver.Implements[Adder]):
    async def init(self) -> None:
        if os.environ.get("CHAIN_CRASH"):
            print("adder: cannot start, CHAIN_CRASH is set", file=sys.stderr, flush=True)
            os._exit(3)
        self.logger.info("adder ready", pid=os.getpid())

    async def shutdown(self) -> None:
        self.logger.info("adder shutdown", pid=os.getpid())

    async def add(self, a: int, b: int) -> int:
        return a + b

    async def pid(self) -> int:
        return os.getpid()


async def main() -> None:
    root = await weaver.init()
    adder = await weaver.get(Adder, root)
    total = await adder.add(2, 3)
    print(f"total={total}", flush=True)
    root.logger.info("main done", total=total)
    if os.environ.get("CHAIN_SERVE"):
        await anyio.sleep_forever()
    sys.exit(int(os.environ.get("CHAIN_EXIT", "0")))


if __name__ == "__main__":
    anyio.run(main, backend=os.environ.get("CHAIN_BACKEND", "asyncio"))
