"""The chaos test's app: ``Counter`` (its own replicas) with an idempotent method and a
``not_retriable`` one that records every execution id in a file per process (under
``$CHAOS_DIR``), so a call run twice shows up; main serves both over HTTP on the
``chaos`` listener, each call under the deadline the client names.

``GET /add?n=N&deadline=S`` → ``N+1``; ``GET /record?id=ID&deadline=S`` → ``ok``;
504 past the deadline, 503 on a failed remote call (body: ``retriable`` when the method
did not run, ``unknown`` when it may have).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio

import pyweaver as weaver


class Counter(Protocol):
    async def add(self, n: int) -> int: ...

    @weaver.not_retriable
    async def record(self, execution_id: str) -> None: ...


class CounterImpl(weaver.Implements[Counter]):
    async def add(self, n: int) -> int:
        return n + 1

    async def record(self, execution_id: str) -> None:
        path = Path(os.environ["CHAOS_DIR"]) / f"executions-{os.getpid()}.log"
        with path.open("a") as log:
            log.write(execution_id + "\n")


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def make_asgi_app(counter: Counter) -> Callable[..., Awaitable[None]]:
    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        status, body = 404, "not found"
        try:
            with anyio.fail_after(float(query.get("deadline", "5"))):
                if scope["path"] == "/add":
                    status, body = 200, str(await counter.add(int(query["n"])))
                elif scope["path"] == "/record":
                    await counter.record(query["id"])
                    status, body = 200, "ok"
        except TimeoutError:
            status, body = 504, "deadline"
        except weaver.RetriableError:
            status, body = 503, "retriable"
        except weaver.RemoteCallError:
            status, body = 503, "unknown"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    return app


async def main() -> None:
    root = await weaver.init()
    counter = await weaver.get(Counter, root)
    listener = await root.listener("chaos")
    await weaver.serve_asgi(listener, make_asgi_app(counter))


if __name__ == "__main__":
    anyio.run(main)
