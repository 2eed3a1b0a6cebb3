"""Components shared by the runtime and weavertest tests (importable by the child
processes of weavertest's multi mode as ``components``)."""

from __future__ import annotations

import os
from typing import Protocol

import attrs

import pyweaver as weaver


class Counter(Protocol):
    async def add(self, n: int) -> int: ...

    @weaver.not_retriable
    async def add_once(self, n: int) -> int: ...

    async def calls(self) -> int: ...


class Greeter(Protocol):
    async def greet(self, name: str) -> str: ...

    async def whoami(self) -> str: ...

    async def fail(self, kind: str) -> None: ...

    async def echo_metadata(self) -> dict[str, str]: ...

    async def counter_total(self) -> int: ...


class Clock(Protocol):
    async def now(self) -> float: ...


class Shape(weaver.AutoMarshal):
    name: str
    sides: int
    tags: list[str] = attrs.field(factory=list)


class OutOfStock(weaver.AutoMarshal, Exception):
    item: str
    wanted: int


class Shapes(Protocol):
    async def grow(self, shape: Shape) -> Shape: ...

    async def maybe(self, shape: Shape | None) -> Shape | None: ...


@attrs.frozen
class GreeterConfig:
    greeting: str = "Hello"
    punctuation: str = "!"


class CounterImpl(weaver.Implements[Counter]):
    async def init(self) -> None:
        self.total = 0
        self.count = 0

    async def add(self, n: int) -> int:
        self.count += 1
        self.total += n
        return self.total

    async def add_once(self, n: int) -> int:
        self.count += 1
        self.total += n
        return self.total

    async def calls(self) -> int:
        return self.count


class GreeterImpl(weaver.Implements[Greeter], weaver.WithConfig[GreeterConfig]):
    counter: weaver.Ref[Counter]
    clock: weaver.Ref[Clock]

    async def greet(self, name: str) -> str:
        await self.counter.get().add(1)
        return f"{self.config.greeting}, {name}{self.config.punctuation}"

    async def whoami(self) -> str:
        return f"{os.getpid()}/{self.weaver_info.replica_id}"

    async def fail(self, kind: str) -> None:
        if kind == "value":
            raise ValueError("bad value")
        if kind == "stock":
            raise OutOfStock("apples", 3)
        raise KeyError(kind)

    async def echo_metadata(self) -> dict[str, str]:
        return dict(weaver.metadata.get())

    async def counter_total(self) -> int:
        return await self.counter.get().add(0)


class ClockImpl(weaver.Implements[Clock]):
    async def now(self) -> float:
        return 1.0


class ShapesImpl(weaver.Implements[Shapes]):
    async def grow(self, shape: Shape) -> Shape:
        return Shape(shape.name, shape.sides + 1, [*shape.tags, "grown"])

    async def maybe(self, shape: Shape | None) -> Shape | None:
        return shape
