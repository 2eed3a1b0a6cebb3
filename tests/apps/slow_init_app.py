"""A single-process app whose component's ``init`` waits for a file to exist (the test
creates it), then serves until SIGTERM: ``pyweaver single status`` must show it
``starting`` until ``init`` returns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import anyio

import pyweaver as weaver


class Slow(Protocol):
    async def ping(self) -> str: ...


class SlowImpl(weaver.Implements[Slow]):
    async def init(self) -> None:
        gate = Path(os.environ["SLOW_INIT_GATE"])
        while not gate.exists():
            await anyio.sleep(0.05)

    async def ping(self) -> str:
        return "pong"


async def main() -> None:
    root = await weaver.init()
    slow = await weaver.get(Slow, root)
    print(await slow.ping(), flush=True)
    await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main)
