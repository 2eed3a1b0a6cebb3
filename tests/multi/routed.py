"""A routed component for the multi-mode tests (imported by the weavelet processes as
``tests.multi.routed``)."""

from __future__ import annotations

import os
from typing import Protocol

import pyweaver as weaver


class Store(Protocol):
    async def owner(self, key: str) -> int: ...

    async def pid(self) -> int: ...


class StoreRouter:
    def owner(self, key: str) -> str:
        return key


class StoreImpl(weaver.Implements[Store], weaver.WithRouter[StoreRouter]):
    async def owner(self, key: str) -> int:
        return os.getpid()

    async def pid(self) -> int:
        return os.getpid()
