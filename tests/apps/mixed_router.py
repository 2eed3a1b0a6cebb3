"""A bad app for `pyweaver check`: a router whose methods return different key types."""

from typing import Protocol

import pyweaver as weaver


class Ledger(Protocol):
    async def balance(self, account: int) -> int: ...
    async def post(self, account: str, amount: int) -> None: ...


class LedgerRouter:
    def balance(self, account: int) -> int:
        return account

    def post(self, account: str, amount: int) -> str:
        return account


class LedgerImpl(weaver.Implements[Ledger], weaver.WithRouter[LedgerRouter]):
    async def balance(self, account: int) -> int:
        return 0

    async def post(self, account: str, amount: int) -> None:
        pass
