"""A small app that keeps its processes busy, for ``pyweaver multi profile`` tests: main
calls ``Hasher.spin`` (two replicas, in other processes) in a loop, for at most
``BUSY_SECONDS`` (default 60), then exits."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Protocol

import anyio

import pyweaver as weaver


class Hasher(Protocol):
    async def spin(self, rounds: int) -> str: ...


def burn(rounds: int) -> str:
    digest = b"pyweaver"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


class HasherImpl(weaver.Implements[Hasher]):
    async def spin(self, rounds: int) -> str:
        return burn(rounds)


async def main() -> None:
    root = await weaver.init()
    hasher = await weaver.get(Hasher, root)
    deadline = time.monotonic() + float(os.environ.get("BUSY_SECONDS", "60"))
    print("busy: started", flush=True)
    while time.monotonic() < deadline:
        async with anyio.create_task_group() as tasks:
            for _ in range(4):
                tasks.start_soon(hasher.spin, 20_000)


if __name__ == "__main__":
    anyio.run(main)
