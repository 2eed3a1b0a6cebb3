"""collatz: a very chatty app (one component call per step of the sequence).

Main computes the Collatz sequence of ``x`` by calling ``Odd.do`` (3x+1) on odd numbers
and ``Even.do`` (x/2) on even ones, until it reaches 1. ``GET /?x=27`` on the
``collatz`` listener returns the sequence. Chatty apps are where colocation pays: run
it in one process, or with ``pyweaver multi deploy`` with and without the ``colocate``
line of weaver.toml, and compare (``make bench`` does it for you).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio

import pyweaver as weaver


class Odd(Protocol):
    async def do(self, x: int) -> int: ...


class Even(Protocol):
    async def do(self, x: int) -> int: ...


class OddImpl(weaver.Implements[Odd]):
    async def do(self, x: int) -> int:
        return 3 * x + 1


class EvenImpl(weaver.Implements[Even]):
    async def do(self, x: int) -> int:
        return x // 2


async def sequence(x: int, odd: Odd, even: Even) -> list[int]:
    """The Collatz sequence from ``x`` down to 1, one component call per step."""
    if x < 1:
        raise ValueError(f"x must be positive, got {x}")
    steps = [x]
    while x != 1:
        x = await (odd.do(x) if x % 2 else even.do(x))
        steps.append(x)
    return steps


def make_asgi_app(odd: Odd, even: Even) -> Callable[..., Awaitable[None]]:
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
            status, body = 200, (" ".join(map(str, await sequence(x, odd, even))) + "\n").encode()
        except ValueError as exc:
            status, body = 400, f"bad x: {exc}\n".encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def main() -> None:
    root = await weaver.init()
    odd = await weaver.get(Odd, root)
    even = await weaver.get(Even, root)
    listener = await root.listener(
        "collatz", weaver.ListenerOptions(local_address="localhost:12346")
    )
    root.logger.info("collatz listener available", address=str(listener))
    await weaver.serve_asgi(
        listener, weaver.instrument_handler("collatz", make_asgi_app(odd, even))
    )


if __name__ == "__main__":
    anyio.run(main)
