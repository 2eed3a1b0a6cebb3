"""An app for the fault tests of the multi deployer (``tests/multi/test_hung_replica.py``):
main keeps ``HUNG_CALLERS`` (default 4) callers busy calling ``Worker.pid`` (2 replicas)
with no deadline of their own, and prints one line per call, ``ok <pid> <seconds>`` or
``fail <seconds> <error>``. ``Crasher`` dies while it starts, every time (a crash loop);
main asks for it once and prints ``crasher <error>``."""

from __future__ import annotations

import os
import sys
import time
from typing import Protocol

import anyio

import pyweaver as weaver


class Worker(Protocol):
    async def pid(self) -> int: ...


class WorkerImpl(weaver.Implements[Worker]):
    async def pid(self) -> int:
        await anyio.sleep(0.01)
        return os.getpid()


class Crasher(Protocol):
    async def hello(self) -> str: ...


class CrasherImpl(weaver.Implements[Crasher]):
    async def init(self) -> None:
        print("crasher: cannot start", file=sys.stderr, flush=True)
        os._exit(3)

    async def hello(self) -> str:
        return "hello"


async def caller(worker: Worker) -> None:
    while True:
        started = time.monotonic()
        try:
            pid = await worker.pid()
        except weaver.RemoteCallError as exc:
            print(f"fail {time.monotonic() - started:.3f} {exc}", flush=True)
            await anyio.sleep(0.05)
        else:
            print(f"ok {pid} {time.monotonic() - started:.3f}", flush=True)
            await anyio.sleep(0.02)


async def crash(root: weaver.Instance) -> None:
    try:
        crasher = await weaver.get(Crasher, root)
        print(f"crasher {await crasher.hello()}", flush=True)
    except Exception as exc:
        print(f"crasher {type(exc).__name__}", flush=True)


async def main() -> None:
    root = await weaver.init()
    worker = await weaver.get(Worker, root)
    async with anyio.create_task_group() as group:
        for _ in range(int(os.environ.get("HUNG_CALLERS", "4"))):
            group.start_soon(caller, worker)
        if os.environ.get("HUNG_CRASHER"):
            group.start_soon(crash, root)


if __name__ == "__main__":
    anyio.run(main)
