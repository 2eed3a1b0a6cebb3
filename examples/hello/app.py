"""hello: the smallest pyweaver app with a network listener.

A ``Reverser`` component reverses strings; main serves ``GET /hello?name=NAME`` on the
``hello`` listener and answers ``Hello, <reversed NAME>!``. Run it in one process::

    python examples/hello/app.py                     # listener on localhost:12345
    pyweaver single deploy examples/hello/weaver.toml
    pyweaver multi deploy examples/hello/weaver.toml # Reverser in its own processes

and try ``curl 'localhost:12345/hello?name=World'``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio

import pyweaver as weaver


class Reverser(Protocol):
    async def reverse(self, s: str) -> str: ...


class ReverserImpl(weaver.Implements[Reverser]):
    async def init(self) -> None:
        self.logger.info("reverser ready", pid=os.getpid())

    async def reverse(self, s: str) -> str:
        return s[::-1]


def make_asgi_app(reverser: Reverser) -> Callable[..., Awaitable[None]]:
    """A plain ASGI app: GET /hello?name=... -> Hello, <reversed name>!"""

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/hello":
            status, body = 404, b"not found\n"
        else:
            query = parse_qs(scope.get("query_string", b"").decode())
            name = query.get("name", [""])[0]
            if not name:
                status, body = 400, b"missing ?name=\n"
            else:
                status, body = 200, f"Hello, {await reverser.reverse(name)}!\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def main() -> None:
    root = await weaver.init()
    listener = await root.listener("hello", weaver.ListenerOptions(local_address="localhost:12345"))
    reverser = await weaver.get(Reverser, root)
    root.logger.info("hello listener available", address=str(listener))
    await weaver.serve_asgi(listener, weaver.instrument_handler("hello", make_asgi_app(reverser)))


if __name__ == "__main__":
    anyio.run(main)
